package unitgen

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/graceshim/graceshim/signals"
)

const (
	socketData   = testdata + "/socket"
	socketRoot   = socketData + "/root"
	socketGolden = socketData + "/golden"
)

// socketUnits are commands whose configuration or flags say where they
// listen, read under socketRoot; each gives NAME.service and NAME.socket.
var socketUnits = []struct {
	name   string
	argv   []string
	listen []string
}{
	// Debian's layout: includes, both families on 80 (127.0.0.1:80 is
	// left to the wildcard, as nginx does), a backlog, a unix socket and
	// a stream server.
	{"nginx-debian", []string{"/usr/sbin/nginx", "-g", "daemon off;"}, nil},
	{"nginx-nolisten", []string{"/usr/sbin/nginx", "-c", "/etc/nginx/nolisten.conf"}, nil},
	{"nginx-listen-matches", []string{"/usr/sbin/nginx", "-c", "/etc/nginx/nolisten.conf"}, []string{"0.0.0.0:80"}},
	{"haproxy-fd", []string{"/usr/sbin/haproxy", "-Ws", "-f", "/etc/haproxy/fd.cfg"}, []string{"0.0.0.0:80", "[::]:443"}},
	{"gunicorn-conf", []string{"/usr/bin/gunicorn", "-c", "/srv/app/gunicorn.conf.py", "app:app"}, nil},
	{"gunicorn-flags", []string{"/usr/bin/gunicorn", "--bind", "0.0.0.0:8000", "--bind=[::1]:8001", "-b", "unix:/run/gunicorn.sock", "--backlog", "8192", "app:app"}, nil},
	{"gunicorn-default", []string{"/usr/bin/gunicorn", "app:app"}, nil},
	// An interface's address: FreeBind=yes, so the socket binds at boot
	// before the interface is up.
	{"gunicorn-freebind", []string{"/usr/bin/gunicorn", "-b", "10.1.2.3:8000", "app:app"}, nil},
	{"puma-conf", []string{"/usr/bin/puma", "-C", "/srv/app/config/puma.rb"}, nil},
	{"puma-flags", []string{"/usr/bin/puma", "-b", "tcp://127.0.0.1:9292?backlog=8192", "-p", "3001"}, nil},
	{"uwsgi", []string{"/usr/bin/uwsgi", "--master", "--socket", "127.0.0.1:3031", "--socket=/run/uwsgi/app.sock", "--listen", "128", "--wsgi-file", "/srv/app/app.py"}, nil},
	{"uwsgi-http", []string{"/usr/bin/uwsgi", "--http-socket", "127.0.0.1:9090", "--protocol=http", "--wsgi-file", "/srv/app/app.py"}, nil},
	{"uwsgi-ini", []string{"/usr/bin/uwsgi", "--ini", "/etc/uwsgi/app.ini"}, nil},
	{"uwsgi-yaml-listen", []string{"/usr/bin/uwsgi", "--yaml", "/etc/uwsgi/app.yaml"}, []string{"127.0.0.1:3031"}},
	{"unicorn-listen", []string{"/usr/bin/unicorn", "-c", "/srv/app/config/unicorn.rb"}, []string{"127.0.0.1:8080"}},
	{"generic-listen", []string{"/usr/local/bin/appserver", "--port", "7000"}, []string{"127.0.0.1:7000"}},
}

// socketErrors are inputs --socket refuses; socket bool says a
// *SocketError (exit 7: the daemon cannot take the sockets as it is),
// otherwise a plain error (exit 2: unreadable input).
var socketErrors = []struct {
	name   string
	argv   []string
	listen []string
	socket bool
}{
	{"redis-cannot", []string{"/usr/bin/redis-server", "/etc/redis/redis.conf"}, nil, true},
	{"memcached-cannot", []string{"/usr/bin/memcached", "-p", "11211"}, nil, true},
	{"unicorn-no-listen", []string{"/usr/bin/unicorn", "-c", "/srv/app/config/unicorn.rb"}, nil, true},
	{"apache-cannot", []string{"/usr/sbin/apache2ctl", "-D", "FOREGROUND"}, nil, true},
	{"generic-no-listen", []string{"/usr/local/bin/appserver"}, nil, true},
	{"nginx-quic", []string{"/usr/sbin/nginx", "-c", "/etc/nginx/quic.conf"}, nil, true},
	{"nginx-hostname", []string{"/usr/sbin/nginx", "-c", "/etc/nginx/hostname.conf"}, nil, true},
	{"nginx-listen-mismatch", []string{"/usr/sbin/nginx", "-c", "/etc/nginx/nolisten.conf"}, []string{"0.0.0.0:8080"}, true},
	{"nginx-missing-config", []string{"/usr/sbin/nginx", "-c", "/etc/nginx/absent.conf"}, nil, false},
	{"haproxy-own-binds", []string{"/usr/sbin/haproxy", "-Ws", "-f", "/etc/haproxy/haproxy.cfg"}, nil, true},
	{"haproxy-fd-no-listen", []string{"/usr/sbin/haproxy", "-Ws", "-f", "/etc/haproxy/fd.cfg"}, nil, true},
	{"haproxy-fd-one-listen", []string{"/usr/sbin/haproxy", "-Ws", "-f", "/etc/haproxy/fd.cfg"}, []string{"0.0.0.0:80"}, true},
	{"haproxy-no-config", []string{"/usr/sbin/haproxy", "-Ws"}, nil, true},
	{"haproxy-no-bind", []string{"/usr/sbin/haproxy", "-Ws", "-f", "/etc/haproxy/debian.cfg"}, nil, true},
	{"gunicorn-listen-mismatch", []string{"/usr/bin/gunicorn", "-b", "127.0.0.1:8000", "app:app"}, []string{"127.0.0.1:9000"}, true},
	{"gunicorn-fd", []string{"/usr/bin/gunicorn", "-b", "fd://3", "app:app"}, nil, true},
	{"puma-ssl", []string{"/usr/bin/puma", "-b", "ssl://0.0.0.0:9293?key=k.pem&cert=c.pem"}, nil, true},
	{"uwsgi-http-router", []string{"/usr/bin/uwsgi", "--http", ":9090", "--wsgi-file", "app.py"}, nil, true},
	{"uwsgi-http-without-protocol", []string{"/usr/bin/uwsgi", "--http-socket", "127.0.0.1:9090", "--wsgi-file", "app.py"}, nil, true},
	{"uwsgi-mixed", []string{"/usr/bin/uwsgi", "--http-socket", "127.0.0.1:9090", "--socket", "/run/uwsgi.sock", "--protocol", "http"}, nil, true},
	{"uwsgi-yaml", []string{"/usr/bin/uwsgi", "--yaml", "/etc/uwsgi/app.yaml"}, nil, true},
	{"bad-listen", []string{"/usr/bin/gunicorn", "app:app"}, []string{"localhost:8000"}, false},
}

// socketPair generates the service and socket units for argv the way
// `graceshim unit --socket --output DIR/NAME` does.
func socketPair(argv, listen []string, name string, v int, graceshim string) (svc, sock []byte, err error) {
	o := Options{Argv: argv, SystemdVersion: v, Socket: name + ".socket", Graceshim: graceshim}
	o.setDefaults()
	ls, err := SocketListens(DaemonArgv(argv), o.Preset, SocketOptions{Root: socketRoot, Listen: listen})
	if err != nil {
		return nil, nil, err
	}
	if svc, err = Generate(o); err != nil {
		return nil, nil, err
	}
	sock, err = GenerateSocket(SocketUnitOptions{Service: name + ".service", Daemon: filepath.Base(argv[0]), Listens: ls, SystemdVersion: v, Wait: o.QueueWait()})
	return svc, sock, err
}

func TestSocketGolden(t *testing.T) {
	for _, tc := range socketUnits {
		for _, v := range bands {
			name := tc.name + "-" + itoa(v)
			t.Run(name, func(t *testing.T) {
				svc, sock, err := socketPair(tc.argv, tc.listen, tc.name, v, "")
				if err != nil {
					t.Fatal(err)
				}
				checkFile(t, filepath.Join(socketGolden, name+".service"), svc, name+".service differs from the golden file (go test -update rewrites it)")
				checkFile(t, filepath.Join(socketGolden, name+".socket"), sock, name+".socket differs from the golden file (go test -update rewrites it)")
			})
		}
	}
}

// TestSocketErrors keeps the message of every refusal in one golden file,
// and checks which kind each is.
func TestSocketErrors(t *testing.T) {
	var all strings.Builder
	for _, tc := range socketErrors {
		_, _, err := socketPair(tc.argv, tc.listen, tc.name, 252, "")
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		var se *SocketError
		if got := errors.As(err, &se); got != tc.socket {
			t.Errorf("%s: SocketError %v, want %v: %v", tc.name, got, tc.socket, err)
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: the message is not one line: %q", tc.name, err)
		}
		fmt.Fprintf(&all, "%s: %v\n", tc.name, err)
	}
	checkFile(t, filepath.Join(socketGolden, "errors.txt"), []byte(all.String()), "the messages differ from the golden file (go test -update rewrites it)")
}

// TestSocketConvertGolden converts shipped units with --socket: whole
// units and drop-ins, the socket read from the daemon's configuration
// under socketRoot (Debian's haproxy.service names it through
// Environment=CONFIG=, and binds its own sockets there: refused).
func TestSocketConvertGolden(t *testing.T) {
	for _, in := range []string{"debian-nginx.service", "gunicorn-docs.service", "fedora-nginx.service", "debian-haproxy.service"} {
		for _, dropin := range []bool{false, true} {
			kind, ext := "from", ".service"
			if dropin {
				kind, ext = "dropin", ".conf"
			}
			base := strings.TrimSuffix(in, ".service")
			name := kind + "-" + base
			t.Run(name, func(t *testing.T) {
				u := readTestUnit(t, in)
				res, sock, err := convertSocket(u, base, dropin, "")
				if in == "debian-haproxy.service" {
					var se *SocketError
					if !errors.As(err, &se) || !strings.Contains(err.Error(), `/etc/haproxy/haproxy.cfg:18 "bind :80" to "bind fd@3"`) {
						t.Fatalf("want HAProxy's own binds refused, line by line; got %v", err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				checkFile(t, filepath.Join(socketGolden, name+ext), res, name+ext+" differs from the golden file (go test -update rewrites it)")
				checkFile(t, filepath.Join(socketGolden, name+".socket"), sock, name+".socket differs from the golden file (go test -update rewrites it)")
			})
		}
	}
}

func convertSocket(u *Unit, name string, dropin bool, graceshim string) (unitData, sock []byte, err error) {
	res, err := Convert(u, Options{SystemdVersion: 252, Socket: name + ".socket", Graceshim: graceshim}, dropin)
	if err != nil {
		return nil, nil, err
	}
	daemon := ExpandUnitEnv(u, DaemonArgv(res.Options.Argv))
	ls, err := SocketListens(daemon, res.Options.Preset, SocketOptions{Root: socketRoot})
	if err != nil {
		return nil, nil, err
	}
	sock, err = GenerateSocket(SocketUnitOptions{Service: name + ".service", Daemon: filepath.Base(daemon[0]), Listens: ls, SystemdVersion: 252, Wait: res.Options.QueueWait()})
	return res.Unit, sock, err
}

// TestSocketVerify gives each generated pair, and the converted ones, to
// the real systemd-analyze verify under one name, so that it checks the
// socket against its service; complaints about the daemons' own paths
// (which this host may lack) do not name the units and are not ours.
func TestSocketVerify(t *testing.T) {
	needAnalyze(t)
	for _, tc := range socketUnits {
		if strings.HasPrefix(tc.name, "generic") {
			continue // its command does not exist; verify says so
		}
		t.Run(tc.name, func(t *testing.T) {
			if _, err := os.Stat(tc.argv[0]); err != nil {
				t.Skipf("%s not installed: verify checks ExecStart=", tc.argv[0])
			}
			svc, sock, err := socketPair(tc.argv, tc.listen, "x-"+tc.name, 252, selfPath(t))
			if err != nil {
				t.Fatal(err)
			}
			verifyPair(t, "x-"+tc.name, svc, sock, "")
		})
	}
	for _, in := range []string{"debian-nginx.service", "gunicorn-docs.service"} {
		for _, dropin := range []bool{false, true} {
			base := "x-" + strings.TrimSuffix(in, ".service")
			t.Run(fmt.Sprintf("%s-dropin=%v", base, dropin), func(t *testing.T) {
				u := readTestUnit(t, in)
				res, sock, err := convertSocket(u, base, dropin, selfPath(t))
				if err != nil {
					t.Fatal(err)
				}
				orig := ""
				if dropin {
					data, err := os.ReadFile(filepath.Join(testdata, "units", in))
					if err != nil {
						t.Fatal(err)
					}
					orig = string(data)
				}
				verifyPair(t, base, res, sock, orig)
			})
		}
	}
}

// verifyPair writes NAME.service (or orig with svc as its drop-in) and
// NAME.socket to one directory and verifies both.
func verifyPair(t *testing.T, name string, svc, sock []byte, orig string) {
	t.Helper()
	dir := t.TempDir()
	svcPath := filepath.Join(dir, name+".service")
	sockPath := filepath.Join(dir, name+".socket")
	write := func(p string, data []byte) {
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if orig != "" {
		write(svcPath, []byte(orig))
		if err := os.Mkdir(svcPath+".d", 0o755); err != nil {
			t.Fatal(err)
		}
		write(filepath.Join(svcPath+".d", "graceshim.conf"), svc)
	} else {
		write(svcPath, svc)
	}
	write(sockPath, sock)
	out, err := exec.Command("systemd-analyze", "verify", "--man=no", svcPath, sockPath).CombinedOutput()
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" && strings.Contains(l, name) {
			t.Errorf("systemd-analyze verify: %s\n--- service\n%s\n--- socket\n%s", l, svc, sock)
		}
	}
	if err != nil {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestSocketListenForms reads the address forms each daemon writes.
func TestSocketListenForms(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"80", "0.0.0.0:80"},
		{"*:8080", "0.0.0.0:8080"},
		{"localhost", "127.0.0.1:80"},
		{"127.0.0.1", "127.0.0.1:80"},
		{"[::]:443", "[::]:443"},
		{"[::1]", "[::1]:80"},
		{"10.1.2.3:81", "10.1.2.3:81"},
	} {
		got, err := hostPort(tc.in, 80)
		if err != nil || got != tc.want {
			t.Errorf("hostPort(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{":80", "0.0.0.0:80"},
		{"*:80", "0.0.0.0:80"},
		{":::443", "[::]:443"},
		{"ipv6@:::443", "[::]:443"},
		{"ipv4@127.0.0.1:8080", "127.0.0.1:8080"},
		{"unix@/run/haproxy.sock", "/run/haproxy.sock"},
		{"/run/h.sock", "/run/h.sock"},
	} {
		got, err := haproxyAddr(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("haproxyAddr(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"www.example.org:80", "[::1:80", "1.2.3.4:http", "1.2.3.4:0", ":70000"} {
		if got, err := hostPort(bad, 80); err == nil {
			t.Errorf("hostPort(%q) = %q, want an error", bad, got)
		}
	}
	for _, bad := range []string{":8000-8010", "abns@x", "sockpair@3"} {
		if got, err := haproxyAddr(bad); err == nil {
			t.Errorf("haproxyAddr(%q) = %q, want an error", bad, got)
		}
	}
}

// TestExpandUnitEnv reads $VAR and ${VAR} from Environment=.
func TestExpandUnitEnv(t *testing.T) {
	u := readTestUnit(t, "debian-haproxy.service")
	got := ExpandUnitEnv(u, []string{"/usr/sbin/haproxy", "-Ws", "-f", "$CONFIG", "-p", "${PIDFILE}", "$EXTRAOPTS", "$UNSET"})
	want := []string{"/usr/sbin/haproxy", "-Ws", "-f", "/etc/haproxy/haproxy.cfg", "-p", "/run/haproxy.pid", "-S /run/haproxy-master.sock", "$UNSET"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestSocketConvertTwice: a unit converted with --socket and converted
// again with --socket is the same unit (comments aside).
func TestSocketConvertTwice(t *testing.T) {
	u := readTestUnit(t, "gunicorn-docs.service")
	once, _, err := convertSocket(u, "gunicorn-docs", false, "")
	if err != nil {
		t.Fatal(err)
	}
	u2, _, err := Parse("once.service", once)
	if err != nil {
		t.Fatal(err)
	}
	twice, _, err := convertSocket(u2, "gunicorn-docs", false, "")
	if err != nil {
		t.Fatal(err)
	}
	strip := func(b []byte) string {
		var out []string
		for _, l := range strings.Split(string(b), "\n") {
			if !strings.HasPrefix(l, "#") {
				out = append(out, l)
			}
		}
		return strings.Join(out, "\n")
	}
	if strip(once) != strip(twice) {
		t.Errorf("converting again changed the unit:\n--- once\n%s\n--- twice\n%s", once, twice)
	}
	if n := strings.Count(string(twice), "Requires=gunicorn-docs.socket"); n != 1 {
		t.Errorf("Requires=gunicorn-docs.socket %d times", n)
	}
}

// debianHAProxyFD is Debian's haproxy.service pointed at fd.cfg, a
// configuration that binds fd@3 and fd@4.
func debianHAProxyFD(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testdata, "units", "debian-haproxy.service"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Replace(string(data), "CONFIG=/etc/haproxy/haproxy.cfg", "CONFIG=/etc/haproxy/fd.cfg", 1)
}

// TestSocketConvertHAProxyFD converts Debian's haproxy.service pointed at
// a configuration that binds fd@3 and fd@4: the addresses come from
// --listen, and the unit's own config test (haproxy -c), which systemd
// would run without the sockets, is dropped for graceshim reload's.
func TestSocketConvertHAProxyFD(t *testing.T) {
	text := debianHAProxyFD(t)
	for _, dropin := range []bool{false, true} {
		u, _, err := Parse("debian-haproxy.service", []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		res, err := Convert(u, Options{SystemdVersion: 252, Socket: "haproxy.socket"}, dropin)
		if err != nil {
			t.Fatal(err)
		}
		daemon := ExpandUnitEnv(u, DaemonArgv(res.Options.Argv))
		ls, err := SocketListens(daemon, res.Options.Preset, SocketOptions{Root: socketRoot, Listen: []string{"0.0.0.0:80", "[::]:443"}})
		if err != nil {
			t.Fatal(err)
		}
		sock, err := GenerateSocket(SocketUnitOptions{Service: "haproxy.service", Daemon: "haproxy", Listens: ls, SystemdVersion: 252, Wait: res.Options.QueueWait()})
		if err != nil {
			t.Fatal(err)
		}
		name, ext := "from-debian-haproxy-fd", ".service"
		if dropin {
			name, ext = "dropin-debian-haproxy-fd", ".conf"
		}
		for _, l := range strings.Split(string(res.Unit), "\n") {
			if strings.HasPrefix(l, "ExecReload=") && strings.Contains(l, " -c ") {
				t.Errorf("%s kept the config test systemd runs without the sockets: %s", name, l)
			}
		}
		checkFile(t, filepath.Join(socketGolden, name+ext), res.Unit, name+ext+" differs from the golden file (go test -update rewrites it)")
		checkFile(t, filepath.Join(socketGolden, name+".socket"), sock, name+".socket differs from the golden file (go test -update rewrites it)")
	}
}

// TestSocketConvertHAProxyStartPre: an ExecStartPre= haproxy -c, which
// systemd runs without the sockets and which fails on bind fd@3, is
// dropped from the converted unit; the unit's other ExecStartPre= stays.
func TestSocketConvertHAProxyStartPre(t *testing.T) {
	text := debianHAProxyFD(t)
	text = strings.Replace(text, "\nExecStart=", "\nExecStartPre=/usr/sbin/haproxy -Ws -f $CONFIG -c -q $EXTRAOPTS\nExecStartPre=/bin/mkdir -p /run/haproxy\nExecStart=", 1)
	u, _, err := Parse("haproxy.service", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Convert(u, Options{SystemdVersion: 252, Socket: "haproxy.socket"}, false)
	if err != nil {
		t.Fatal(err)
	}
	var pres []string
	for _, l := range strings.Split(string(res.Unit), "\n") {
		if strings.HasPrefix(l, "ExecStartPre=") {
			pres = append(pres, l)
		}
	}
	if len(pres) != 1 || pres[0] != "ExecStartPre=/bin/mkdir -p /run/haproxy" {
		t.Errorf("ExecStartPre= lines %q, want only the mkdir", pres)
	}
	// Without a socket unit the check is the unit's own and stays.
	res, err = Convert(u, Options{SystemdVersion: 252}, false)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(res.Unit), "\nExecStartPre=/usr/sbin/haproxy -Ws -f $CONFIG -c -q $EXTRAOPTS\n") {
		t.Errorf("without --socket the config check was dropped:\n%s", res.Unit)
	}
}

// TestSocketListenSpecifierPaths: a unit's ExecStart= may name a unix
// socket under a specifier's directory (gunicorn --bind
// unix:%t/app/app.sock, as units that pair it with RuntimeDirectory=
// write it); systemd expands it in ExecStart= and in ListenStream= alike
// (systemd.unit(5), "Specifiers"), so unit --from --socket keeps it. A
// command line given after -- has no specifiers: there it stays an
// error, as a relative path is.
func TestSocketListenSpecifierPaths(t *testing.T) {
	for _, tc := range []struct {
		preset string
		argv   string
		want   string
	}{
		{"gunicorn", "/usr/bin/gunicorn --bind unix:%t/app/app.sock app:app", "%t/app/app.sock"},
		{"puma", "/usr/bin/puma --bind unix://%t/puma.sock", "%t/puma.sock"},
		{"uwsgi", "/usr/bin/uwsgi --master --socket %t/uwsgi/app.sock --module app", "%t/uwsgi/app.sock"},
	} {
		p, err := signals.Lookup(tc.preset)
		if err != nil {
			t.Fatal(err)
		}
		argv := strings.Fields(tc.argv)
		ls, err := SocketListens(argv, p, SocketOptions{Root: socketRoot, Specifiers: true})
		if err != nil || len(ls) != 1 || ls[0].Addr != tc.want {
			t.Errorf("%s from a unit: %v, %v; want one socket %s", tc.argv, ls, err, tc.want)
		}
		if ls, err := SocketListens(argv, p, SocketOptions{Root: socketRoot}); err == nil {
			t.Errorf("%s from a command line: %v, want an error (%%t is no specifier there)", tc.argv, ls)
		}
	}
	p, _ := signals.Lookup("gunicorn")
	if ls, err := SocketListens([]string{"gunicorn", "--bind", "unix:app.sock", "app:app"}, p, SocketOptions{Root: socketRoot, Specifiers: true}); err == nil {
		t.Errorf("a relative path from a unit: %v, want an error", ls)
	}
}

// TestSocketUWSGIIniSection: unit --socket reads uWSGI's sockets from the
// ini section uWSGI reads (--ini FILE:SECTION, core/ini.c) and from the
// files its ini = or inherit = load, as the hook check does.
func TestSocketUWSGIIniSection(t *testing.T) {
	p, err := signals.Lookup("uwsgi")
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(testdata, "root")
	for _, tc := range []struct {
		argv, want string
	}{
		{"uwsgi --protocol=http --ini /etc/uwsgi/sections.ini:staging", "127.0.0.1:8001"},
		{"uwsgi --protocol=http --ini /etc/uwsgi/vassal.ini", "127.0.0.1:8000"},
	} {
		ls, err := SocketListens(strings.Fields(tc.argv), p, SocketOptions{Root: root})
		if err != nil || len(ls) != 1 || ls[0].Addr != tc.want {
			t.Errorf("%s: %v, %v; want one socket %s", tc.argv, ls, err, tc.want)
		}
	}
	// Without :staging uWSGI reads [uwsgi], which names no socket: the
	// staging section's http-socket is not where it listens.
	if ls, err := SocketListens(strings.Fields("uwsgi --protocol=http --ini /etc/uwsgi/sections.ini"), p, SocketOptions{Root: root}); err == nil || !strings.Contains(err.Error(), "no http-socket or socket") {
		t.Errorf("sections.ini without a section: %v, %v; want the error that it names no socket (its [uwsgi] section does not)", ls, err)
	}
}

// TestHAProxyFileBindsAsHAProxyReads: unit --socket reads bind lines with
// the supervisor's reader (haproxyconf), as haproxy 2.6 does: a '#' in
// quotes is no comment, a false .if block binds nothing, and an address
// from the environment is only known at run time. The config is in the
// style of Debian's haproxy.cfg with the conditional blocks of
// configuration.txt 2.4.
func TestHAProxyFileBindsAsHAProxyReads(t *testing.T) {
	cfg := `global
	log /dev/log local0

frontend web
.if defined(STAGING)
	bind :8080
.else
	bind "fd@3" name "web#1" backlog 2048 # systemd's first socket
.endif
	default_backend app
`
	binds, err := haproxyFileBinds("/etc/haproxy/haproxy.cfg", cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(binds) != 1 || binds[0].addr != "fd@3" || binds[0].backlog != 2048 || binds[0].rest != " name 'web#1' backlog 2048" || binds[0].from != "/etc/haproxy/haproxy.cfg:8" {
		t.Fatalf("binds %+v, want fd@3 from line 8 with backlog 2048 and its name kept", binds)
	}
	_, err = haproxyFileBinds("/etc/haproxy/haproxy.cfg", "frontend web\n\tbind \"${WEB_ADDR}\"\n")
	var se *SocketError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "haproxy.cfg:2") || !strings.Contains(err.Error(), "environment variable") {
		t.Fatalf("a bind from the environment: %v, want a socket error naming line 2 and the variable", err)
	}
}
