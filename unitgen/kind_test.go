package unitgen

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/graceshim/graceshim/signals"
)

// readNotServer parses a unit of testdata/unitgen/notservers under its
// path, so that the socket beside a template can be found.
func readNotServer(t *testing.T, name string) *Unit {
	t.Helper()
	return readUnitAt(t, filepath.Join(testdata, "notservers", name))
}

// TestNotAServer: a socket unit, a timer and a per-connection service
// given to unit --from or lint are told apart from a server, with what
// to do instead, rather than "no ExecStart=" or a unit that waits for a
// listener sshd -i never opens.
func TestNotAServer(t *testing.T) {
	tests := []struct {
		file string
		want []string // in CheckServer's message
		// lint's one note: its directive and line.
		directive string
		line      int
	}{
		{"shell.socket", []string{"Accept=yes", "one shell@.service per connection", "no drain"}, "Accept", 10},
		{"shell@.service", []string{"shell@.service:11:", "StandardInput=socket", "once per connection"}, "StandardInput", 11},
		{"varlink@.service", []string{"varlink.socket has Accept=yes", "one instance per connection"}, "Service", 1},
		{"app.socket", []string{"app.socket is a socket unit", "convert the service it starts, app.service", "--from " + filepath.Join(testdata, "notservers", "app.service")}, "Socket", 8},
		// Service=logd@%i.service: the file to convert is the template.
		{"log@.socket", []string{"the service it starts, logd@.service"}, "Socket", 8},
		{"cleanup.timer", []string{"is a timer unit, not a service"}, "", 0},
		// The job cleanup.timer runs, in the style of Debian's
		// phpsessionclean.service.
		{"cleanup.service", []string{"cleanup.service:6: Type=oneshot: a job that runs to completion"}, "Type", 6},
		{"legacy-daemon.service", []string{"Type=oneshot", "write a unit for the daemon itself"}, "Type", 5},
		// Debian's postgresql.service: ExecStart=/bin/true starts no
		// daemon; its instances, db@.service beside it, are the servers.
		{"db.service", []string{"Type=oneshot", "runs nothing itself (ExecStart=/bin/true)", "db@.service", "systemctl cat db@INSTANCE"}, "Type", 9},
		// A container run by podman or docker: the server is the
		// container's, outside graceshim's process tree.
		{"web-container.service", []string{"web-container.service:17:", "podman run", "container", "--stop-signal"}, "ExecStart", 17},
		{"app-docker.service", []string{"app-docker.service:14:", "docker run", "container", "--stop-signal"}, "ExecStart", 14},
		// systemctl edit's override.conf, given alone.
		{filepath.Join("web.service.d", "override.conf"), []string{"is a drop-in of web.service", "systemctl cat web.service"}, "drop-in", 1},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			u := readNotServer(t, tt.file)
			err := CheckServer(u)
			var ns *NotAServerError
			if !errors.As(err, &ns) {
				t.Fatalf("CheckServer: %v, want a NotAServerError", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("CheckServer: %q\nwant it to say %q", err, w)
				}
			}
			for _, dropin := range []bool{false, true} {
				if _, cerr := Convert(u, Options{SystemdVersion: 252}, dropin); !errors.As(cerr, &ns) {
					t.Errorf("Convert(dropin=%v): %v, want the NotAServerError", dropin, cerr)
				}
			}
			fs := Lint(u, LintOptions{SystemdVersion: 252})
			if tt.directive == "" {
				if len(fs) != 0 {
					t.Errorf("Lint: %v, want nothing", fs)
				}
				return
			}
			if len(fs) != 1 || fs[0].Severity != SeverityNote || fs[0].Directive != tt.directive || fs[0].Line != tt.line {
				t.Fatalf("Lint: %+v\nwant one note on %s at line %d", fs, tt.directive, tt.line)
			}
		})
	}
}

// TestServersPass: every unit of a server in the test styles passes
// CheckServer, the templates among them too (no socket beside them says
// Accept=yes).
func TestServersPass(t *testing.T) {
	for _, in := range convertInputs {
		u := readTestUnit(t, in)
		if err := CheckServer(u); err != nil {
			t.Errorf("%s: %v", in, err)
		}
	}
}

// readActivated parses a unit of testdata/unitgen/activated under its
// path, so that the socket beside it can be found.
func readActivated(t *testing.T, name string) *Unit {
	t.Helper()
	return readUnitAt(t, filepath.Join(testdata, "activated", name))
}

// TestSocketActivatedAlready: unit --socket on a service that has a
// socket unit already would write a second one for the same addresses
// (or replace the unit's own, losing SocketUser= and SocketMode=); it is
// refused with the way to convert it, and the same units convert
// without --socket.
func TestSocketActivatedAlready(t *testing.T) {
	tests := []struct {
		file string
		want string // in the error; "" passes
	}{
		{"web.service", "web.service:6: Requires=web.socket: the service is socket-activated already"},
		{"pool@.service", "pool@.socket beside it activates it already"},
		{"api.service", "Sockets=api-http.socket api-admin.socket"},
		{"again.service", ""},
		// Another service's socket (dbus.socket) activates nothing here.
		{"notify.service", ""},
		{"shop.service", "Requires=shop-web.socket: the service is socket-activated already"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			u := readActivated(t, tt.file)
			err := CheckNoSocketYet(u)
			_, cerr := Convert(u, Options{SystemdVersion: 252, Socket: "x.socket"}, false)
			if tt.want == "" {
				if err != nil || cerr != nil {
					t.Fatalf("CheckNoSocketYet: %v; Convert: %v; want both to pass", err, cerr)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "convert it without --socket") {
				t.Errorf("CheckNoSocketYet: %v\nwant %q and the way out", err, tt.want)
			}
			if cerr == nil || cerr.Error() != err.Error() {
				t.Errorf("Convert with a socket: %v, want %v", cerr, err)
			}
			if _, err := Convert(u, Options{SystemdVersion: 252}, false); err != nil {
				t.Errorf("Convert without a socket: %v", err)
			}
		})
	}
	for _, in := range convertInputs {
		if err := CheckNoSocketYet(readTestUnit(t, in)); err != nil {
			t.Errorf("%s: %v", in, err)
		}
	}
}

// TestUnitPath: systemctl cat's output read through a pipe is named by
// the unit file it names (Unit.Path): the socket beside that file is
// found, and the way back to --from is systemctl cat again.
func TestUnitPath(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(testdata, "activated", "pool@.service"))
	if err != nil {
		t.Fatal(err)
	}
	u, _, err := Parse("/dev/fd/63", data)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckNoSocketYet(u); err != nil {
		t.Fatalf("a pipe has no socket beside it, got %v", err)
	}
	u.Path = filepath.Join(testdata, "activated", "pool@.service")
	err = CheckNoSocketYet(u)
	if err == nil || !strings.Contains(err.Error(), "pool@.socket beside it") || !strings.Contains(err.Error(), "--from <(systemctl cat pool@.service)") {
		t.Errorf("CheckNoSocketYet with Path: %v", err)
	}
}

// TestLintFromPipe: lint of systemctl cat's output through a pipe says
// to convert it the same way, not from the pipe's path.
func TestLintFromPipe(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(testdata, "units", "debian-nginx.service"))
	if err != nil {
		t.Fatal(err)
	}
	u, _, err := Parse("/dev/fd/63", data)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/lib/systemd/system/nginx.service"
	fs := Lint(u, LintOptions{SystemdVersion: 252, Root: filepath.Join(testdata, "root")})
	if len(fs) == 0 || !strings.Contains(fs[0].Fix, "graceshim unit --from <(systemctl cat nginx.service)") || fs[0].File != "/dev/fd/63" {
		t.Errorf("got %+v, want a fix converting systemctl cat's output, on /dev/fd/63", fs)
	}
}

// TestConvertDelegate: a unit that delegates its cgroup and keeps its
// processes across its stop (a container engine) is refused, since
// graceshim's KillMode=mixed would SIGKILL them at each stop (measured:
// under mixed, a child that ignores TERM is gone as soon as the main
// process exits); KillMode=process alone is replaced, with a warning.
func TestConvertDelegate(t *testing.T) {
	u := readUnitAt(t, filepath.Join(testdata, "delegate", "engine.service"))
	for _, dropin := range []bool{false, true} {
		_, err := Convert(u, Options{Graceshim: "/usr/bin/graceshim", SystemdVersion: 252}, dropin)
		if err == nil || !strings.Contains(err.Error(), "engine.service:13: KillMode=process with Delegate=yes") {
			t.Errorf("Convert(dropin=%v): %v, want the refusal", dropin, err)
		}
	}
	u = readUnitAt(t, filepath.Join(testdata, "delegate", "helper.service"))
	res, err := Convert(u, Options{Graceshim: "/usr/bin/graceshim", SystemdVersion: 252}, false)
	if err != nil {
		t.Fatal(err)
	}
	warned := false
	for _, w := range res.Warnings {
		warned = warned || strings.Contains(w.Msg, "KillMode=process replaced by mixed")
	}
	if !warned || !strings.Contains(string(res.Unit), "\nKillMode=mixed\n") {
		t.Errorf("warnings %v; want the KillMode=process warning and KillMode=mixed", res.Warnings)
	}
}

// TestLintDropinsBeside: lint of a unit with drop-ins beside it
// (NAME.service.d/*.conf) says it read the file only.
func TestLintDropinsBeside(t *testing.T) {
	dir := t.TempDir()
	data, err := os.ReadFile(filepath.Join(testdata, "units", "debian-nginx.service"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "nginx.service")
	u, _, err := Parse(path, data)
	if err != nil {
		t.Fatal(err)
	}
	note := func() bool {
		for _, f := range Lint(u, LintOptions{SystemdVersion: 252}) {
			if f.Directive == "drop-in" && strings.Contains(f.Problem, "override.conf") && strings.Contains(f.Fix, "systemctl cat nginx.service") {
				return true
			}
		}
		return false
	}
	if note() {
		t.Fatal("a note on drop-ins with none beside the unit")
	}
	if err := os.MkdirAll(filepath.Join(dir, "nginx.service.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nginx.service.d", "override.conf"), []byte("[Service]\\nTimeoutStopSec=30\\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if !note() {
		t.Errorf("no note on the drop-in beside the unit")
	}
}

// TestContainerRun: the container CLIs' commands that run a container,
// and the ones that do not (the engine's API service, a pull).
func TestContainerRun(t *testing.T) {
	for _, tc := range []struct {
		exec string
		want bool
	}{
		{"/usr/bin/podman run --rm --name web -p 8080:80 nginx", true},
		{"/usr/bin/docker container run --rm nginx", true},
		{"/usr/bin/podman start -a web", true},
		{"/usr/bin/docker compose -f /srv/app/compose.yaml up", true},
		{"/usr/local/bin/docker-compose -f /srv/app/docker-compose.yml up", true},
		{"/usr/bin/podman-compose up", true},
		{"/usr/bin/podman system service --time=0", false},
		{"/usr/bin/docker pull nginx", false},
		{"/usr/sbin/nginx -g 'daemon off;'", false},
	} {
		u, _, err := Parse("c.service", []byte("[Service]\nExecStart="+tc.exec+"\n"))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, got := containerRun(u); got != tc.want {
			t.Errorf("%s: runs a container %v, want %v", tc.exec, got, tc.want)
		}
	}
}

// TestApacheStarters: the commands distributions' units start Apache
// with get the httpd preset and its config test on the same words:
// openSUSE's start_apache2 (which execs the MPM binary with its
// arguments) and the binaries themselves, Fedora's httpd -DFOREGROUND,
// Arch's httpd -k start -DFOREGROUND.
func TestApacheStarters(t *testing.T) {
	for _, tc := range []struct{ argv, test string }{
		{"/usr/sbin/start_apache2 -DSYSTEMD -DFOREGROUND -k start", "/usr/sbin/start_apache2 -DSYSTEMD -DFOREGROUND -t"},
		{"/usr/sbin/httpd-prefork -f /etc/apache2/httpd.conf -DSSL -DFOREGROUND -k start", "/usr/sbin/httpd-prefork -f /etc/apache2/httpd.conf -DSSL -DFOREGROUND -t"},
		{"/usr/sbin/httpd2-worker -f /etc/apache2/httpd.conf -DFOREGROUND", "/usr/sbin/httpd2-worker -f /etc/apache2/httpd.conf -DFOREGROUND -t"},
		{"/usr/sbin/httpd-event -DFOREGROUND", "/usr/sbin/httpd-event -DFOREGROUND -t"},
		{"/usr/bin/httpd -k start -DFOREGROUND", "/usr/bin/httpd -DFOREGROUND -t"},
	} {
		argv := strings.Fields(tc.argv)
		p, ok := signals.ForCommand(DaemonArgv(argv)[0])
		if !ok || p.Name != "httpd" || !p.Runs(argv[0]) {
			t.Errorf("%s: preset %s (known %v), want httpd, run as it is", tc.argv, p.Name, ok)
			continue
		}
		if got := strings.Join(p.ConfigTest(argv), " "); got != tc.test {
			t.Errorf("%s: config test %q, want %q", tc.argv, got, tc.test)
		}
	}
}
