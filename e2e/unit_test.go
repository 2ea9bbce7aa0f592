package e2e

// End-to-end tests of graceshim unit and graceshim lint: units generated
// and converted by the real binary, started and stopped by the real
// systemd user manager with real nginx and curl.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// graceshimCmd runs the built graceshim with args and returns stdout,
// stderr and the exit code.
func graceshimCmd(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	return graceshimCmdEnv(t, nil, args...)
}

// graceshimCmdEnv is graceshimCmd with the environment env (nil: this
// process's), bounded by a hang guard.
func graceshimCmdEnv(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	return graceshimCmdIn(t, env, nil, args...)
}

// graceshimCmdIn is graceshimCmdEnv with stdin (nil: none) on a pipe.
func graceshimCmdIn(t *testing.T, env []string, stdin io.Reader, args ...string) (string, string, int) {
	t.Helper()
	bin := needGraceshim(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	cmd.Stdin = stdin
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("graceshim %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errb.String(), code
}

// mustUnit runs graceshim unit with args and fails unless it exits 0.
func mustUnit(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := graceshimCmd(t, append([]string{"unit"}, args...)...)
	if code != 0 {
		t.Fatalf("graceshim unit %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

// siteOutsideTmp makes t.TempDir (and so the nginx site) live under /var/lib:
// a hardened unit has PrivateTmp=yes and would not see /tmp.
func siteOutsideTmp(t *testing.T) {
	dir, err := os.MkdirTemp("/var/lib", "graceshim-e2e-")
	if err != nil {
		t.Fatalf("cannot make a dir under /var/lib: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	t.Setenv("TMPDIR", dir)
}

// copyFile copies the executable src to dst and returns dst.
func copyFile(t *testing.T, src, dst string) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}

// drainUnit starts the unit, puts downloads in flight, stops it and checks
// that every download completed and systemd saw a clean stop.
func drainUnit(t *testing.T, u *userSystemd, name string, site *nginxSite) {
	t.Helper()
	u.Start(t, name)
	if !waitFor(30*time.Second, 50*time.Millisecond, func() bool { c, err := site.Get("/small"); return err == nil && c == 200 }) {
		t.Fatalf("nginx does not answer on %d\n%s\n%s", site.Port, u.Status(t, name), u.UnitLog(t, name))
	}
	dl := startDownloads(t, site.URL, 8)
	took := u.Stop(t, name)
	dl.RequireComplete(t, site.FileSize, site.SHA256)
	if r := u.Show(t, name, "Result"); r != "success" {
		t.Errorf("Result=%s after stop, want success\n%s", r, u.UnitLog(t, name))
	}
	t.Logf("%s: stop took %s with 8 downloads in flight", name, took.Round(time.Millisecond))
}

// TestE2EUnitNginx generates an nginx unit for each band and option set,
// then starts and stops it under the real user manager with downloads in
// flight: Result=success and no download lost.
func TestE2EUnitNginx(t *testing.T) {
	tests := []struct {
		name  string
		flags []string
		site  nginxOpts
	}{
		{"foreground-252", []string{"--systemd-version=252"}, nginxOpts{}},
		{"foreground-219", []string{"--systemd-version=219", "--drain-timeout=1m", "--kill-timeout=5s"}, nginxOpts{}},
		{"daemon-pidfile", []string{"--systemd-version=252"}, nginxOpts{Daemon: true}},
		{"hardened", []string{"--systemd-version=252", "--hardening"}, nginxOpts{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bin := needGraceshim(t)
			if strings.Contains(tc.name, "hardened") {
				siteOutsideTmp(t) // before the first t.TempDir, which fixes the test's temp root
			}
			u := userManager(t)
			site := newNginxSite(t, tc.site)
			if strings.Contains(tc.name, "hardened") {
				// PrivateTmp=yes hides the binary the harness built in /tmp.
				bin = copyFile(t, bin, filepath.Join(site.Dir, "graceshim"))
			}
			flags := append([]string{"--graceshim", bin}, tc.flags...)
			if tc.site.Daemon {
				flags = append(flags, "--pidfile="+site.PIDFile)
			}
			unit := mustUnit(t, append(flags, "--", needCmd(t, "nginx"), "-c", site.Conf)...)
			name := unitName("unit-" + tc.name)
			u.InstallUnit(t, name, unit)
			drainUnit(t, u, name, site)
		})
	}
}

// debianStyle is a unit in the shape of Debian's nginx.service (the stop
// dance with start-stop-daemon), pointed at a test site.
func debianStyle(site *nginxSite) string {
	return `[Unit]
Description=A high performance web server and a reverse proxy server
After=network-online.target

[Service]
Type=forking
PIDFile=` + site.PIDFile + `
ExecStartPre=/usr/sbin/nginx -t -q -c ` + site.Conf + ` -g 'master_process on;'
ExecStart=/usr/sbin/nginx -c ` + site.Conf + ` -g 'master_process on;'
ExecReload=/usr/sbin/nginx -c ` + site.Conf + ` -g 'master_process on;' -s reload
ExecStop=-/sbin/start-stop-daemon --quiet --stop --retry QUIT/5 --pidfile ` + site.PIDFile + `
TimeoutStopSec=5
KillMode=mixed
LimitNOFILE=4096

[Install]
WantedBy=multi-user.target
`
}

// TestE2EUnitFromDebian converts a Debian-style unit, as a whole unit and
// as a drop-in next to the original, and drains downloads through it.
func TestE2EUnitFromDebian(t *testing.T) {
	for _, dropin := range []bool{false, true} {
		kind := "unit"
		if dropin {
			kind = "dropin"
		}
		t.Run(kind, func(t *testing.T) {
			bin := needGraceshim(t)
			needCmd(t, "start-stop-daemon")
			u := userManager(t)
			site := newNginxSite(t, nginxOpts{Daemon: true})
			orig := filepath.Join(t.TempDir(), "nginx.service")
			if err := os.WriteFile(orig, []byte(debianStyle(site)), 0o644); err != nil {
				t.Fatal(err)
			}
			args := []string{"--graceshim", bin, "--systemd-version=252", "--from", orig}
			if dropin {
				args = append(args, "--dropin")
			}
			conv := mustUnit(t, args...)
			name := unitName("from-" + kind)
			content := conv
			if dropin {
				dir := filepath.Join(u.unitDir, name+".d")
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { os.RemoveAll(dir) })
				if err := os.WriteFile(filepath.Join(dir, "graceshim.conf"), []byte(conv), 0o644); err != nil {
					t.Fatal(err)
				}
				content = debianStyle(site)
			}
			u.InstallUnit(t, name, content)
			drainUnit(t, u, name, site)
			if dropin {
				if got := u.Show(t, name, "Type"); got != "notify" {
					t.Errorf("Type=%s with the drop-in, want notify", got)
				}
			}
		})
	}
}

// argvCases are arguments that systemd's parser, specifiers and variables
// would each change unless written right.
var argvCases = []string{
	"two words", `"dq"`, "'sq'", "$HOME", "${X}", "$$", "100%", "%n", "%%", `back\slash`, `\`,
	";", `\;`, "", "tab\there", "ünï", "-", "--", "a=b", "#hash", " lead", "trail ", "`id`", "$(id)", "*", "~", "'", `"`,
	"daemon off; error_log stderr;",
}

// TestE2EUnitArgv: a unit written by graceshim unit runs graceshim with a
// child that writes its argv; the real systemd must hand every argument
// over byte for byte.
func TestE2EUnitArgv(t *testing.T) {
	bin := needGraceshim(t)
	u := userManager(t)
	out := filepath.Join(t.TempDir(), "argv")
	script := `printf '%s\n' "$@" > "$0.tmp" && mv "$0.tmp" "$0" && exec sleep 600`
	args := append([]string{"--graceshim", bin, "--systemd-version=252", "--ready=exec", "--", "/bin/sh", "-c", script, out}, argvCases...)
	unit := mustUnit(t, args...)
	name := unitName("argv")
	u.InstallUnit(t, name, unit)
	u.Start(t, name)
	if !waitFor(30*time.Second, 20*time.Millisecond, func() bool { _, err := os.Stat(out); return err == nil }) {
		t.Fatalf("the child wrote no argv\n%s\n%s", u.Status(t, name), u.UnitLog(t, name))
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join(argvCases, "\n") + "\n"
	if string(got) != want {
		gl, wl := strings.Split(string(got), "\n"), strings.Split(want, "\n")
		for i := 0; i < len(gl) || i < len(wl); i++ {
			var g, w string
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if g != w {
				t.Errorf("argument %d: got %q, want %q", i, g, w)
			}
		}
		t.Logf("unit:\n%s", unit)
	}
	u.Stop(t, name)
	if r := u.Show(t, name, "Result"); r != "success" {
		t.Errorf("Result=%s after stopping the argv unit, want success (the child dies of TERM: SuccessExitStatus=143)\n%s", r, u.UnitLog(t, name))
	}
}

// TestE2EUnitBadInput: bad input gets a one-line error, the documented
// exit code, and changes nothing on disk.
func TestE2EUnitBadInput(t *testing.T) {
	dir := t.TempDir()
	// systemd refuses an unterminated section header and an empty file
	// (it loads that as masked); a line without '=' it only warns about.
	malformed := filepath.Join(dir, "bad.service")
	if err := os.WriteFile(malformed, []byte("[Service]\nExecStart=/usr/sbin/nginx\n[Install\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.service")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	existing := filepath.Join(dir, "existing.service")
	if err := os.WriteFile(existing, []byte("mine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// systemctl edit's override.conf: applied after graceshim.conf, its
	// ExecStart= would replace graceshim's.
	dropins := filepath.Join(dir, "nginx.service.d")
	if err := os.Mkdir(dropins, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dropins, "override.conf"), []byte("[Service]\nExecStart=\nExecStart=/usr/sbin/nginx -g 'daemon on;'\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	debianNginx := repoPath("testdata", "unitgen", "units", "debian-nginx.service")
	// A socket unit of the admin's where --socket would write its own.
	if err := os.WriteFile(filepath.Join(dir, "own.socket"), []byte("[Socket]\nListenStream=/run/own.sock\nSocketUser=www-data\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"no command", []string{"unit"}, exitUsage, "missing command"},
		{"socket unit of the admin's", []string{"unit", "--socket", "--force", "-o", filepath.Join(dir, "own"), "--", "/usr/bin/gunicorn", "-b", "unix:/run/own.sock", "app:app"}, exitUsage, "own.socket exists and graceshim did not write it"},
		{"drop-in undone by a later one", []string{"unit", "--from", debianNginx, "--dropin", "-o", filepath.Join(dropins, "graceshim.conf")}, exitWrite, "override.conf:2: ExecStart= is applied after"},
		{"unit undone by its drop-in", []string{"unit", "--from", debianNginx, "-o", filepath.Join(dir, "nginx.service")}, exitWrite, "override.conf:2: ExecStart= is applied after"},
		{"socket pair undone by a drop-in", []string{"unit", "--from", debianNginx, "--socket", "--root", repoPath("testdata", "unitgen", "socket", "root"), "-o", filepath.Join(dir, "nginx")}, exitWrite, "override.conf:2"},
		{"missing from", []string{"unit", "--from", filepath.Join(dir, "nope.service")}, exitUsage, "cannot read unit"},
		{"malformed from", []string{"unit", "--from", malformed}, exitUsage, "bad.service:3:"},
		{"newline argument", []string{"unit", "--", "/bin/echo", "a\nb"}, exitUsage, "newline"},
		{"unknown preset", []string{"unit", "--preset", "nope", "--", "/bin/true"}, exitUsage, "unknown preset"},
		{"relative graceshim", []string{"unit", "--graceshim", "graceshim", "--", "/bin/true"}, exitUsage, "absolute"},
		{"dropin without from", []string{"unit", "--dropin", "--", "/bin/true"}, exitUsage, "--from"},
		{"output exists", []string{"unit", "--systemd-version=252", "--output", existing, "--", "/bin/true"}, exitWrite, "--force"},
		{"output unwritable", []string{"unit", "--systemd-version=252", "--output", filepath.Join(dir, "no", "dir", "x.service"), "--", "/bin/true"}, exitWrite, "cannot write"},
		{"lint unreadable", []string{"lint", filepath.Join(dir, "nope.service")}, exitUsage, "cannot read unit"},
		{"lint malformed", []string{"lint", malformed}, exitUsage, "bad.service:3:"},
		{"lint empty", []string{"lint", empty}, exitUsage, "empty"},
		{"empty from", []string{"unit", "--from", empty}, exitUsage, "empty"},
		{"output to a device", []string{"unit", "--systemd-version=252", "--force", "--output", "/dev/full", "--", "/bin/true"}, exitWrite, "not a regular file"},
		{"lint format", []string{"lint", "--format", "xml", malformed}, exitUsage, "unknown --format"},
		// A socket unit or a per-connection service is not a server to
		// run: said for what it is, before --socket looks at its name.
		{"from a socket unit", []string{"unit", "--from", notServer("app.socket"), "-o", filepath.Join(dir, "app.service")}, exitUsage, "convert the service it starts, app.service"},
		{"from a socket unit with --socket", []string{"unit", "--from", notServer("app.socket"), "--socket", "-o", filepath.Join(dir, "app")}, exitUsage, "is a socket unit"},
		{"from an Accept=yes socket", []string{"unit", "--from", notServer("shell.socket"), "--socket", "-o", filepath.Join(dir, "shell")}, exitUsage, "Accept=yes"},
		// A service with a socket unit of its own: a second would bind
		// the same addresses; checked before the template refusal.
		{"socket-activated already", []string{"unit", "--from", repoPath("testdata", "unitgen", "activated", "web.service"), "--socket", "-o", filepath.Join(dir, "web")}, exitUsage, "convert it without --socket"},
		{"socket-activated template", []string{"unit", "--from", repoPath("testdata", "unitgen", "activated", "pool@.service"), "--socket"}, exitUsage, "pool@.socket beside it"},
		// A daemon that cannot take sockets is told so first, not sent
		// to write a unit per instance; one that can is.
		{"template that cannot take sockets", []string{"unit", "--from", repoPath("testdata", "unitgen", "units", "debian-apache2@.service"), "--socket"}, 7, "cannot take listening sockets"},
		{"template socket", []string{"unit", "--from", repoPath("testdata", "unitgen", "units", "unicorn-docs@.service"), "--socket", "--listen", "127.0.0.1:8080"}, exitUsage, "a unit per instance"},
		{"from a per-connection service", []string{"unit", "--from", notServer("shell@.service"), "--dropin", "-o", filepath.Join(dir, "x.conf")}, exitUsage, "once per connection"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := listDir(t, dir)
			_, errOut, code := graceshimCmd(t, tc.args...)
			if code != tc.code || !strings.Contains(errOut, tc.msg) {
				t.Errorf("graceshim %s: exit %d, stderr %q; want exit %d mentioning %q", strings.Join(tc.args, " "), code, errOut, tc.code, tc.msg)
			}
			if after := listDir(t, dir); after != before {
				t.Errorf("the directory changed:\n%s\nwas\n%s", after, before)
			}
		})
	}
	if b, _ := os.ReadFile(existing); string(b) != "mine\n" {
		t.Errorf("%s was changed: %q", existing, b)
	}
	// Standard output on a full device is a write error, not a verdict.
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("no /dev/full: %v", err)
	}
	defer full.Close()
	for _, args := range [][]string{
		{"unit", "--systemd-version=252", "--", "/bin/true"},
		{"unit", "--systemd-version=252", "--from", repoPath("testdata", "unitgen", "units", "debian-nginx.service")},
		{"lint", repoPath("testdata", "unitgen", "units", "debian-nginx.service")},
		{"lint", "--format", "json", repoPath("testdata", "unitgen", "units", "debian-nginx.service")},
		{"lint", repoPath("testdata", "unitgen", "units", "puma-docs.service")},
	} {
		var errb bytes.Buffer
		cmd := exec.Command(needGraceshim(t), args...)
		cmd.Stdout, cmd.Stderr = full, &errb
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != exitWrite || !strings.Contains(errb.String(), "no space left") {
			t.Errorf("graceshim %s >/dev/full: %v, stderr %q; want exit %d with the write error", strings.Join(args, " "), err, errb.String(), exitWrite)
		}
	}
}

// notServer is a unit of testdata/unitgen/notservers.
func notServer(name string) string {
	return repoPath("testdata", "unitgen", "notservers", name)
}

// listDir describes dir's files and contents, for "nothing changed".
func listDir(t *testing.T, dir string) string {
	var b strings.Builder
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			data, _ := os.ReadFile(p)
			b.WriteString(p + " " + strconv.Itoa(len(data)) + " " + string(data) + "\n")
		}
		return nil
	})
	return b.String()
}

// TestE2EUnitGraceshimPath: a graceshim that go run left in a go-build
// directory writes the package's /usr/bin/graceshim, not its own path
// that will be gone; --graceshim always wins, and a nginx unit reloads
// through the same path.
func TestE2EUnitGraceshimPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "go-build123", "b001", "exe")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tmpBuild := copyFile(t, needGraceshim(t), filepath.Join(dir, "graceshim"))
	var out, errb bytes.Buffer
	cmd := exec.Command(tmpBuild, "unit", "--systemd-version=252", "--", "/usr/sbin/nginx", "-g", "daemon off;")
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("graceshim unit from a go-build dir: %v\n%s", err, errb.String())
	}
	for _, want := range []string{"\nExecStart=/usr/bin/graceshim -- /usr/sbin/nginx", "\nExecReload=/usr/bin/graceshim reload $MAINPID\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("unit from a temporary build lacks %q:\n%s", want, out.String())
		}
	}
	if !strings.Contains(errb.String(), "the unit runs /usr/bin/graceshim (where the package installs graceshim: this graceshim, "+tmpBuild+", is a temporary build") {
		t.Errorf("stderr does not say which path was used: %q", errb.String())
	}
	unit := mustUnit(t, "--systemd-version=252", "--graceshim=/opt/gs/graceshim", "--", "/usr/sbin/nginx", "-g", "daemon off;")
	if !strings.Contains(unit, "\nExecStart=/opt/gs/graceshim -- ") || !strings.Contains(unit, "\nExecReload=/opt/gs/graceshim reload $MAINPID\n") {
		t.Errorf("--graceshim not used throughout:\n%s", unit)
	}
}

// TestE2EUnitOutput: --output writes the unit, --force replaces it and
// keeps the old one as .bak.
func TestE2EUnitOutput(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.service")
	// Without --graceshim the unit runs this graceshim, by its resolved
	// path, and says so.
	self, err := filepath.EvalSymlinks(needGraceshim(t))
	if err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := graceshimCmd(t, "unit", "--systemd-version=252", "--output", path, "--", "/no/such/daemon", "x"); code != 0 || out != "" ||
		!strings.Contains(errOut, "/no/such/daemon not found on this host") || !strings.Contains(errOut, "the unit runs "+self+" (this graceshim's own path") {
		t.Fatalf("unit --output: exit %d, stdout %q, stderr %q; want 0, nothing on stdout, a warning about the missing command, the path used", code, out, errOut)
	}
	first, err := os.ReadFile(path)
	if err != nil || !bytes.Contains(first, []byte("ExecStart="+self+" -- /no/such/daemon x\n")) {
		t.Fatalf("written unit (%v):\n%s", err, first)
	}
	if _, errOut, code := graceshimCmd(t, "unit", "--systemd-version=219", "--force", "--output", path, "--", "/no/such/daemon", "y"); code != 0 {
		t.Fatalf("unit --force: exit %d: %s", code, errOut)
	}
	second, _ := os.ReadFile(path)
	bak, err := os.ReadFile(path + ".bak")
	if err != nil || !bytes.Equal(bak, first) || !bytes.Contains(second, []byte("-- /no/such/daemon y\n")) {
		t.Errorf("after --force: unit\n%s\nbackup (%v)\n%s", second, err, bak)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("want app.service and app.service.bak, no temp files; have %v", entries)
	}
}

// TestE2EUnitLint runs lint on the shipped styles and the real Debian
// nginx.service: findings and exit 1, a clean generated unit exits 0, and
// the JSON form holds the documented fields.
func TestE2EUnitLint(t *testing.T) {
	units := repoPath("testdata", "unitgen", "units")
	root := repoPath("testdata", "unitgen", "root")
	tests := []struct {
		file      string
		directive string
	}{
		{"debian-nginx.service", "ExecStop"},
		{"nginxorg-nginx.service", "ExecStop"},
		{"fedora-nginx.service", "TimeoutStopSec"},
		{"tini-nginx.service", "KillMode"},
		{"dumbinit-gunicorn.service", "NotifyAccess"},
		{"graceshim-wrong.service", "KillMode"},
		{"nginx-stop-int.service", "ExecStop"},
		{"killmode-none.service", "KillMode"},
		{"debian-php-fpm.service", "ExecStart"},
		{"caddy.service", "TimeoutStopSec"},
		{"httpd-winch-5s.service", "TimeoutStopSec"},
		{"sh-exec-nginx.service", "KillSignal"},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			out, errOut, code := graceshimCmd(t, "lint", "--format", "json", "--root", root, filepath.Join(units, tc.file))
			if code != exitFindings {
				t.Fatalf("exit %d, want %d: %s", code, exitFindings, errOut)
			}
			var fs []map[string]any
			if err := json.Unmarshal([]byte(out), &fs); err != nil {
				t.Fatalf("lint --format json: %v\n%s", err, out)
			}
			found := false
			for _, f := range fs {
				for _, k := range []string{"file", "line", "directive", "severity", "problem", "fix"} {
					if _, ok := f[k]; !ok {
						t.Errorf("finding without %q: %v", k, f)
					}
				}
				found = found || f["directive"] == tc.directive
			}
			if !found {
				t.Errorf("no %s finding in %s", tc.directive, out)
			}
		})
	}
	t.Run("notes-only", func(t *testing.T) {
		// tini around gunicorn: TERM reaches every process, but TERM is
		// gunicorn's graceful stop; a note, and exit 0.
		out, errOut, code := graceshimCmd(t, "lint", filepath.Join(units, "tini-gunicorn.service"))
		if code != 0 || !strings.Contains(out, ": note: KillMode:") || !strings.Contains(out, "no stop problems found") {
			t.Errorf("lint tini-gunicorn.service: exit %d\n%s%s", code, out, errOut)
		}
	})
	t.Run("systemd-accepts", func(t *testing.T) {
		// A 10,000-character line, a comment inside a continuation and a
		// line without '=': read as systemd reads them, with a warning for
		// the last, as systemd gives.
		for _, f := range []string{"long-line.service", "comment-continuation.service"} {
			out, errOut, code := graceshimCmd(t, "lint", filepath.Join(units, f))
			if code == exitUsage || !strings.Contains(out, f) {
				t.Errorf("lint %s: exit %d\n%s%s", f, code, out, errOut)
			}
		}
		_, errOut, _ := graceshimCmd(t, "lint", filepath.Join(units, "comment-continuation.service"))
		if !strings.Contains(errOut, "comment-continuation.service:10: missing '=', line ignored") {
			t.Errorf("no warning for the line without '=': %q", errOut)
		}
	})
	t.Run("real-debian-nginx", func(t *testing.T) {
		const real = "/lib/systemd/system/nginx.service"
		if _, err := os.Stat(real); err != nil {
			t.Skipf("%s not installed (Debian package nginx-common)", real)
		}
		out, errOut, code := graceshimCmd(t, "lint", real)
		if code != exitFindings || !strings.Contains(out, real+":25: error: ExecStop: start-stop-daemon --retry QUIT/5") {
			t.Errorf("lint %s: exit %d\n%s%s", real, code, out, errOut)
		}
	})
	t.Run("generated-is-clean", func(t *testing.T) {
		// A generated unit's TimeoutStopSec covers graceshim's drain bound,
		// so it is clean for systemd with and without EXTEND_TIMEOUT_USEC.
		path := filepath.Join(t.TempDir(), "nginx.service")
		mustUnit(t, "--systemd-version=252", "--output", path, "--", "/usr/sbin/nginx", "-g", "daemon off;")
		for _, v := range []string{"252", "219"} {
			out, errOut, code := graceshimCmd(t, "lint", "--systemd-version="+v, path)
			if code != 0 {
				t.Errorf("lint of a generated unit for systemd %s: exit %d\n%s%s", v, code, out, errOut)
			}
		}
		// With no drain bound the unit relies on EXTEND_TIMEOUT_USEC, which
		// systemd 219 does not have.
		unbounded := filepath.Join(t.TempDir(), "nginx.service")
		mustUnit(t, "--systemd-version=252", "--drain-timeout=0", "--output", unbounded, "--", "/usr/sbin/nginx", "-g", "daemon off;")
		out, errOut, code := graceshimCmd(t, "lint", "--systemd-version=252", unbounded)
		if code != 0 {
			t.Errorf("lint of an unbounded unit for systemd 252: exit %d\n%s%s", code, out, errOut)
		}
		out, _, code = graceshimCmd(t, "lint", "--systemd-version=219", unbounded)
		if code != exitFindings || !strings.Contains(out, "TimeoutStopSec") {
			t.Errorf("lint of an unbounded 252 unit for systemd 219: exit %d, want a TimeoutStopSec finding\n%s", code, out)
		}
	})
	t.Run("unknown-kept", func(t *testing.T) {
		out, errOut, code := graceshimCmd(t, "unit", "--systemd-version=252", "--from", filepath.Join(units, "unknown-bits.service"))
		if code != 0 || !strings.Contains(errOut, "unknown directive FooTimeout=") || !strings.Contains(errOut, "unknown section [Frobnicate]") ||
			!strings.Contains(out, "FooTimeout=3s") || !strings.Contains(out, "[Frobnicate]\nSpeed=11") {
			t.Errorf("--from with unknown bits: exit %d\nstderr:\n%s\nstdout:\n%s", code, errOut, out)
		}
	})
}

// TestE2EUnitReconvert converts a unit that already runs graceshim, as an
// operator does after changing a flag: the unit's own flags stay and set
// the timeouts, the command line's win, graceshim's reload is rewritten
// with the unit's path and not warned about, and converting the result
// again changes nothing.
func TestE2EUnitReconvert(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "web.service")
	const unitText = `[Unit]
Description=web

[Service]
Type=notify
ExecStart=/usr/local/bin/graceshim --drain-timeout=20m --health-listen=127.0.0.1:9000 -- /usr/sbin/nginx -g "daemon off;"
ExecReload=/usr/local/bin/graceshim reload $MAINPID
KillMode=mixed
TimeoutStopSec=5
SuccessExitStatus=143
`
	if err := os.WriteFile(path, []byte(unitText), 0o644); err != nil {
		t.Fatal(err)
	}
	const g = "/usr/bin/graceshim"
	lines := func(unit string, prefix string) []string {
		var out []string
		for _, l := range strings.Split(unit, "\n") {
			if strings.HasPrefix(l, prefix) {
				out = append(out, l)
			}
		}
		return out
	}
	out, errOut, code := graceshimCmd(t, "unit", "--systemd-version=252", "--graceshim="+g, "--from", path)
	if code != 0 {
		t.Fatalf("unit --from: exit %d: %s", code, errOut)
	}
	want := map[string][]string{
		"ExecStart=":         {"ExecStart=" + g + ` --drain-timeout=20m --health-listen=127.0.0.1:9000 -- /usr/sbin/nginx -g "daemon off;"`},
		"ExecReload=":        {"ExecReload=" + g + " reload $MAINPID"},
		"TimeoutStopSec=":    {"TimeoutStopSec=20min 25s"},
		"SuccessExitStatus=": {"SuccessExitStatus=143"},
	}
	for prefix, w := range want {
		if got := lines(out, prefix); strings.Join(got, "|") != strings.Join(w, "|") {
			t.Errorf("%s lines: got %q, want %q\n%s", prefix, got, w, out)
		}
	}
	if strings.Contains(errOut, "MAINPID") {
		t.Errorf("graceshim's own reload warned about as if $MAINPID were the daemon's:\n%s", errOut)
	}

	// The command line's flag wins and is written once.
	out2, errOut, code := graceshimCmd(t, "unit", "--systemd-version=252", "--graceshim="+g, "--drain-timeout=1m", "--from", path)
	if code != 0 {
		t.Fatalf("unit --drain-timeout=1m --from: exit %d: %s", code, errOut)
	}
	if got := lines(out2, "ExecStart="); len(got) != 1 || strings.Count(got[0], "--drain-timeout") != 1 || !strings.Contains(got[0], "--drain-timeout=1m ") {
		t.Errorf("ExecStart= with --drain-timeout=1m given: %q", got)
	}
	if got := lines(out2, "TimeoutStopSec="); len(got) != 1 || got[0] != "TimeoutStopSec=1min 25s" {
		t.Errorf("TimeoutStopSec= with --drain-timeout=1m given: %q", got)
	}

	// A fixed point: converting the converted unit changes no directive.
	again := filepath.Join(dir, "again.service")
	if err := os.WriteFile(again, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	out3, errOut, code := graceshimCmd(t, "unit", "--systemd-version=252", "--graceshim="+g, "--from", again)
	if code != 0 {
		t.Fatalf("converting again: exit %d: %s", code, errOut)
	}
	if a, b := lines(out, ""), lines(out3, ""); strings.Join(filterComments(a), "\n") != strings.Join(filterComments(b), "\n") {
		t.Errorf("converting the converted unit changed it:\n--- first\n%s\n--- again\n%s", out, out3)
	}
}

func filterComments(ls []string) []string {
	var out []string
	for _, l := range ls {
		if !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

// TestE2EUnitFromPipe: --from <(systemctl cat nginx), which graceshim
// advises where drop-ins change a unit, is a pipe: the pair --socket
// prints is named after the unit systemctl cat's first line names, not
// the pipe (Requires=63.socket for /dev/fd/63); output with no such line
// gets no name but --output's.
func TestE2EUnitFromPipe(t *testing.T) {
	data, err := os.ReadFile(repoPath("testdata", "unitgen", "units", "debian-nginx.service"))
	if err != nil {
		t.Fatal(err)
	}
	run := func(stdin string) (string, string, int) {
		// strings.Reader: exec gives it on a pipe, as <(...) is.
		return graceshimCmdIn(t, nil, strings.NewReader(stdin), "unit", "--systemd-version=252", "--from", "/dev/stdin", "--socket",
			"--root", repoPath("testdata", "unitgen", "socket", "root"))
	}
	out, errOut, code := run("# /lib/systemd/system/nginx.service\n" + string(data))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"# ==> nginx.service <==\n", "\nRequires=nginx.socket\n", "# ==> nginx.socket <==\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	_, errOut, code = run(string(data))
	if code != exitUsage || !strings.Contains(errOut, "cannot tell the unit's name from /dev/stdin") {
		t.Errorf("without systemctl cat's header: exit %d, %q; want exit %d asking for --output", code, errOut, exitUsage)
	}
}

// TestE2ELintNotAServer: lint on a socket unit, an Accept=yes socket and
// a drop-in given alone says what each is (a note, exit 0), and claims
// no verdict ("no stop problems found") it did not reach.
func TestE2ELintNotAServer(t *testing.T) {
	for _, tc := range []struct{ file, note string }{
		{notServer("app.socket"), "note: Socket: a socket unit has no stop of its own"},
		{notServer("shell.socket"), "note: Accept: Accept=yes"},
		{notServer(filepath.Join("web.service.d", "override.conf")), "note: drop-in: a drop-in of web.service"},
		{notServer("cleanup.service"), "note: Type: Type=oneshot: a job"},
	} {
		out, errOut, code := graceshimCmd(t, "lint", tc.file)
		if code != 0 || !strings.Contains(out, tc.note) || !strings.Contains(out, tc.file+": nothing for lint to judge (see the note)") || strings.Contains(out, "no stop problems found") {
			t.Errorf("lint %s: exit %d\n%s%s\nwant exit 0, %q and no verdict", tc.file, code, out, errOut, tc.note)
		}
	}
}
