package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/graceshim/graceshim/signals"
	"github.com/graceshim/graceshim/unitgen/haproxyconf"
)

// fakeInherited makes inherited sockets with the given addresses ("tcp
// 127.0.0.1:80", "tcp6only [::]:80", "udp 0.0.0.0:53", "unix /run/x");
// the file is a pipe, read only for its number in messages.
func fakeInherited(t *testing.T, specs ...string) []inherited {
	t.Helper()
	var out []inherited
	for _, spec := range specs {
		kind, addr, _ := strings.Cut(spec, " ")
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		w.Close()
		t.Cleanup(func() { r.Close() })
		s := inherited{file: r, fd: 3 + len(out)}
		switch kind {
		case "unix":
			s.addr = sockAddr{stream: true, unix: addr}
		default:
			s.addr = sockAddr{stream: kind != "udp", ap: netip.MustParseAddrPort(addr), v6only: kind == "tcp6only"}
		}
		out = append(out, s)
	}
	return out
}

// listenerFile listens on a loopback port and returns the listener and
// its socket as a file of its own, both closed when the test ends.
func listenerFile(t *testing.T) (net.Listener, *os.File) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return ln, f
}

func TestParseNginxListens(t *testing.T) {
	dump := `# configuration file /etc/nginx/nginx.conf:
user www-data;
events { worker_connections 768; }
http {
    upstream app { server 127.0.0.1:9000; }
    server {
        listen 127.0.0.1:8080 default_server; # a comment; listen 9.9.9.9:1;
        listen "[::1]:8081";
        location / { return 200 "listen 1.2.3.4:5;"; }
    }
    include /etc/nginx/sites-enabled/*;
}
stream {
    server { listen 5353 udp; proxy_pass 127.0.0.1:53; }
}

# configuration file /etc/nginx/sites-enabled/default:
server {
    root /var/www/html;
}
server {
    listen unix:/run/site.sock;
    listen 8443 ssl bind;
}
`
	got, err := parseNginxListens(context.Background(), dump, true)
	if err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for _, l := range got {
		for _, a := range l.addrs {
			s := a.String()
			if l.bind {
				s += " bind"
			}
			addrs = append(addrs, s)
		}
	}
	// In the order nginx reads them: the included sites come where the
	// include is, before the stream block.
	want := []string{"127.0.0.1:8080", "[::1]:8081", "0.0.0.0:80", "unix:/run/site.sock", "0.0.0.0:8443 bind", "0.0.0.0:5353 (udp)"}
	if strings.Join(addrs, ", ") != strings.Join(want, ", ") {
		t.Errorf("got listens %q\nwant %q", addrs, want)
	}
	// Not root: a server without listen is on *:8000.
	got, err = parseNginxListens(context.Background(), "http { server { } }", false)
	if err != nil || len(got) != 1 || got[0].addrs[0].String() != "0.0.0.0:8000" {
		t.Errorf("server without listen, not root: got %+v, %v; want 0.0.0.0:8000", got, err)
	}
}

// A listen in a snippet included inside a server block is that
// server's: nginx -T dumps the snippet as a file of its own, so only a
// walk through the includes sees where it belongs. Relative includes
// start from the main file's directory; a glob reads its files in
// sorted order.
func TestParseNginxListensIncludedInServer(t *testing.T) {
	dump := `# configuration file /etc/nginx/nginx.conf:
events {}
http {
  server {
    include snippets/listen-*.conf;
    location / { return 200 "ok\n"; }
  }
  server {
    include /etc/nginx/snippets/none-*.conf;
  }
}

# configuration file /etc/nginx/snippets/listen-b.conf:
listen 127.0.0.1:18444;

# configuration file /etc/nginx/snippets/listen-a.conf:
listen 127.0.0.1:18443;
`
	got, err := parseNginxListens(context.Background(), dump, true)
	if err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for _, l := range got {
		for _, a := range l.addrs {
			addrs = append(addrs, a.String())
		}
	}
	// The second server has no listen (its glob matches nothing): *:80.
	want := []string{"127.0.0.1:18443", "127.0.0.1:18444", "0.0.0.0:80"}
	if strings.Join(addrs, ", ") != strings.Join(want, ", ") {
		t.Errorf("listens = %q, want %q", addrs, want)
	}
}

// nginx opens a quote only at the start of a word (ngx_conf_read_token):
// "return 200 don't-panic;" is valid (nginx -t: successful) and must not
// be read as an unterminated quote.
func TestParseNginxListensApostropheInWord(t *testing.T) {
	dump := `# configuration file /etc/nginx/nginx.conf:
events {}
http {
  server { listen 127.0.0.1:18449; location / { return 200 don't-panic; } }
}
`
	got, err := parseNginxListens(context.Background(), dump, true)
	if err != nil {
		t.Fatalf("parseNginxListens: %v (nginx -t accepts this config)", err)
	}
	if len(got) != 1 || got[0].addrs[0].String() != "127.0.0.1:18449" {
		t.Errorf("listens = %+v, want 127.0.0.1:18449", got)
	}
}

func TestParseNginxListensBad(t *testing.T) {
	for _, dump := range []string{
		"http { server { listen 127.0.0.1:99999; } }",
		`http { server { listen "127.0.0.1:80; } }`,
		"http { server { listen 80; } } }",
	} {
		if _, err := parseNginxListens(context.Background(), dump, true); err == nil {
			t.Errorf("parseNginxListens(%q) = nil error, want one", dump)
		}
	}
}

func TestMatchNginx(t *testing.T) {
	listen := func(t *testing.T, text string) nginxListen {
		l, err := parseListen(context.Background(), strings.Fields(text))
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	tests := []struct {
		name      string
		inherited []string
		stored    []bool // which inherited sockets graceshim stored itself
		reload    bool   // nginx holds the sockets already
		listens   []string
		keep      int
		drop      int
		errs      []string // substrings, one per error
		warns     int
	}{
		{name: "same", inherited: []string{"tcp 127.0.0.1:8080"}, listens: []string{"127.0.0.1:8080"}, keep: 1},
		{name: "two of two", inherited: []string{"tcp 127.0.0.1:8080", "tcp6only [::]:8443"}, listens: []string{"[::]:8443 ssl", "127.0.0.1:8080"}, keep: 2},
		{name: "wildcard serves a specific address", inherited: []string{"tcp 0.0.0.0:80"}, listens: []string{"80", "127.0.0.1:80"}, keep: 1},
		{name: "bind makes a socket of its own", inherited: []string{"tcp 0.0.0.0:80"}, listens: []string{"80", "127.0.0.1:80 bind"}, keep: 1,
			errs: []string{`"listen 127.0.0.1:80 bind" cannot be bound beside the inherited socket 0.0.0.0:80`}},
		{name: "socket on no directive", inherited: []string{"tcp 127.0.0.1:8080"}, listens: []string{"127.0.0.1:8081"}, warns: 1,
			errs: []string{"the inherited socket 127.0.0.1:8080 (fd"}},
		{name: "specific beside an inherited wildcard", inherited: []string{"tcp 0.0.0.0:8080"}, listens: []string{"127.0.0.1:8080"},
			errs: []string{"cannot be bound beside", "is on no listen directive"}},
		{name: "IPv4 beside a dual-stack IPv6 socket", inherited: []string{"tcp [::]:80"}, listens: []string{"80"},
			errs: []string{`"listen 80" cannot be bound beside the inherited socket [::]:80`, "is on no listen directive"}},
		// systemd-socket-activate -l 80 with "listen 80; listen [::]:80;".
		{name: "dual-stack socket for two listens", inherited: []string{"tcp [::]:80"}, listens: []string{"80", "[::]:80"}, keep: 1,
			errs: []string{`"listen 80" cannot be bound beside the inherited socket [::]:80 (fd 3): the inherited socket takes IPv4 too (dual-stack); hold one socket per family: BindIPv6Only=ipv6-only with ListenStream=0.0.0.0:80 and ListenStream=[::]:80`}},
		{name: "IPv4 beside an IPv6-only socket", inherited: []string{"tcp6only [::]:80"}, listens: []string{"80", "[::]:80"}, keep: 1, warns: 1},
		{name: "extra directive", inherited: []string{"tcp 127.0.0.1:8080"}, listens: []string{"127.0.0.1:8080", "127.0.0.1:9090"}, keep: 1, warns: 1},
		{name: "stale stored socket dropped", inherited: []string{"tcp 127.0.0.1:8080", "tcp 127.0.0.1:8081"}, stored: []bool{false, true}, listens: []string{"127.0.0.1:8080"}, keep: 1, drop: 1},
		// A restart after a listen moved within its port: graceshim's
		// own stored wildcard is dropped, nothing is in the way.
		{name: "stored wildcard dropped for an address of its port", inherited: []string{"tcp 0.0.0.0:80"}, stored: []bool{true}, listens: []string{"127.0.0.1:80"}, drop: 1, warns: 1},
		// At a reload nginx still holds the stored wildcard when it binds.
		{name: "stored wildcard conflicts at a reload", inherited: []string{"tcp 0.0.0.0:80"}, stored: []bool{true}, reload: true, listens: []string{"127.0.0.1:80"}, drop: 1,
			errs: []string{`"listen 127.0.0.1:80" cannot be bound beside the inherited socket 0.0.0.0:80`}},
		{name: "stored socket dropped at a reload", inherited: []string{"tcp 127.0.0.1:8080", "tcp 127.0.0.1:8081"}, stored: []bool{true, true}, reload: true, listens: []string{"127.0.0.1:8081"}, keep: 1, drop: 1},
		{name: "stored wildcard still in use conflicts", inherited: []string{"tcp 0.0.0.0:80"}, stored: []bool{true}, listens: []string{"80", "127.0.0.1:80 bind"}, keep: 1,
			errs: []string{`"listen 127.0.0.1:80 bind" cannot be bound beside the inherited socket 0.0.0.0:80`}},
		{name: "udp is not tcp", inherited: []string{"tcp 0.0.0.0:53"}, listens: []string{"53 udp"},
			errs: []string{"is on no listen directive"}, warns: 1},
		{name: "unix", inherited: []string{"unix /run/site.sock"}, listens: []string{"unix:/run/site.sock"}, keep: 1},
		// ipv6only=off makes nginx's IPv6 wildcard take IPv4 too: it
		// cannot be bound beside an IPv4 wildcard of its port.
		{name: "dual-stack listen beside an IPv4 wildcard", inherited: []string{"tcp 0.0.0.0:80"}, listens: []string{"[::]:80 ipv6only=off"},
			errs: []string{`"listen [::]:80 ipv6only=off" cannot be bound beside the inherited socket 0.0.0.0:80`, "is on no listen directive"}},
		{name: "dual-stack listen on a dual-stack socket", inherited: []string{"tcp [::]:80"}, listens: []string{"[::]:80 ipv6only=off"}, keep: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			socks := fakeInherited(t, tt.inherited...)
			for i, s := range tt.stored {
				if s {
					socks[i].name = fdStoreName + "1"
				}
			}
			var listens []nginxListen
			for _, l := range tt.listens {
				listens = append(listens, listen(t, l))
			}
			keep, drop, errs, warns := matchNginx(socks, listens, tt.reload)
			if len(keep) != tt.keep || len(drop) != tt.drop || len(warns) != tt.warns || len(errs) != len(tt.errs) {
				t.Fatalf("kept %d, dropped %d, %d warnings, errors %q; want %d, %d, %d, %d errors\nwarnings: %q",
					len(keep), len(drop), len(warns), errs, tt.keep, tt.drop, tt.warns, len(tt.errs), warns)
			}
			for i, want := range tt.errs {
				if !strings.Contains(errs[i], want) {
					t.Errorf("error %d = %q, want it to contain %q", i, errs[i], want)
				}
			}
		})
	}
}

func TestHAProxyBinds(t *testing.T) {
	cfg := `global
    daemon
frontend web
    bind fd@3,fd@4 # comment bind fd@9
    bind :8080
    bind ipv6@:::8443 ssl crt /x.pem
    bind unix@/run/h.sock
    # bind fd@7
`
	var got []string
	for _, b := range haproxyBinds(cfg, nil, nil) {
		s := b.text
		if b.fd >= 0 {
			s += "=fd"
		} else if b.ok {
			s += "=" + b.addr.String()
		}
		got = append(got, s)
	}
	want := []string{"fd@3=fd", "fd@4=fd", ":8080=0.0.0.0:8080", "ipv6@:::8443=[::]:8443", "unix@/run/h.sock"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("got binds %q, want %q", got, want)
	}
}

func TestMatchHAProxy(t *testing.T) {
	tests := []struct {
		name      string
		inherited []string
		config    string
		errs      []string
		warns     int
	}{
		{name: "every fd bound", inherited: []string{"tcp 127.0.0.1:80", "tcp 127.0.0.1:443"}, config: "bind fd@3\nbind fd@4 ssl"},
		{name: "fd not bound", inherited: []string{"tcp 127.0.0.1:80", "tcp 127.0.0.1:443"}, config: "bind fd@3",
			errs: []string{`(fd 4) is bound nowhere in haproxy's config: add "bind fd@4"`}},
		{name: "no fd@ at all", inherited: []string{"tcp 127.0.0.1:80"}, config: "bind 127.0.0.1:80",
			errs: []string{"(fd 3) is bound nowhere", `"bind 127.0.0.1:80" takes the address of the inherited socket 127.0.0.1:80: bind fd@3 instead`}},
		{name: "fd beyond those passed", inherited: []string{"tcp 127.0.0.1:80"}, config: "bind fd@3\nbind fd@5",
			errs: []string{"binds fd@5, which is none of the 1 inherited sockets (fd@3 to fd@3)"}},
		{name: "another port of its own", inherited: []string{"tcp 127.0.0.1:80"}, config: "bind fd@3\nbind 127.0.0.1:9000", warns: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs, warns := matchHAProxy(fakeInherited(t, tt.inherited...), haproxyBinds(tt.config, nil, nil))
			if len(errs) != len(tt.errs) || len(warns) != tt.warns {
				t.Fatalf("errors %q, warnings %q; want %d errors, %d warnings", errs, warns, len(tt.errs), tt.warns)
			}
			for i, want := range tt.errs {
				if !strings.Contains(errs[i], want) {
					t.Errorf("error %d = %q, want it to contain %q", i, errs[i], want)
				}
			}
		})
	}
}

func TestHAProxyConfigFiles(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"b.cfg", "a.cfg", "notes.txt"} {
		if err := os.WriteFile(dir+"/"+n, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got := haproxyConfigFiles([]string{"haproxy", "-Ws", "-f", "/etc/h.cfg", "-f", dir, "-p", "/run/h.pid", "--", "/x.cfg"})
	want := []string{"/etc/h.cfg", dir + "/a.cfg", dir + "/b.cfg", "/x.cfg"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("got %q, want %q", got, want)
	}
}

// socketAddr reads a real socket's address, type and IPV6_V6ONLY.
func TestSocketAddr(t *testing.T) {
	ln, f := listenerFile(t)
	got, err := socketAddr(int(f.Fd()))
	if err != nil || got.String() != ln.Addr().String() || !got.stream {
		t.Errorf("socketAddr = %v (stream %v), %v; want %s, a stream", got, got.stream, err, ln.Addr())
	}
	r, w, _ := os.Pipe()
	defer r.Close()
	defer w.Close()
	if _, err := socketAddr(int(r.Fd())); err == nil {
		t.Errorf("socketAddr of a pipe: no error")
	}
}

// A reload's config test becomes nginx -T, and its dump is judged against
// the sockets nginx took: a socket no listen names refuses the reload.
func TestSocketCheckNginxReload(t *testing.T) {
	socks := fakeInherited(t, "tcp 127.0.0.1:8080")
	c := &socketCheck{preset: signals.Preset{Name: "nginx", Sockets: signals.SocketsNginxEnv}, socks: socks}
	if got := strings.Join(c.testArgv([]string{"/usr/sbin/nginx", "-t", "-q", "-c", "/x.conf"}), " "); got != "/usr/sbin/nginx -T -q -c /x.conf" {
		t.Errorf("testArgv = %q, want nginx -T", got)
	}
	log := NewLogger(io.Discard, LevelInfo)
	dump := func(listen string) string {
		return "nginx: [warn] a warning before the dump\n# configuration file /x.conf:\nhttp { server { listen " + listen + "; } }\n"
	}
	if why := c.refuse(context.Background(), dump("127.0.0.1:8080"), false, log); why != "" {
		t.Errorf("same listen: refused: %s", why)
	}
	if why := c.refuse(context.Background(), dump("127.0.0.1:8081"), false, log); !strings.Contains(why, "the inherited socket 127.0.0.1:8080 (fd 3) is on no listen directive") {
		t.Errorf("another listen: refuse = %q, want the socket named", why)
	}
	if why := c.refuse(context.Background(), dump("127.0.0.1:8081"), true, log); why != "" {
		t.Errorf("a cut dump is not judged, got %q", why)
	}
	// After a restart the sockets are graceshim's stored ones: a reload
	// may drop one, and a later reload may then listen on an address
	// of the same port.
	stored := fakeInherited(t, "tcp 0.0.0.0:8090", "tcp 127.0.0.1:8091")
	for i := range stored {
		stored[i].name = fdStoreName + strconv.Itoa(i)
	}
	c = &socketCheck{preset: signals.Preset{Name: "nginx", Sockets: signals.SocketsNginxEnv}, socks: stored}
	if why := c.refuse(context.Background(), dump("127.0.0.1:8091"), false, log); why != "" {
		t.Errorf("a reload dropping a stored socket: refused: %s", why)
	}
	if why := c.refuse(context.Background(), dump("127.0.0.1:8090; listen 127.0.0.1:8091"), false, log); why != "" {
		t.Errorf("a later reload on the dropped socket's port: refused: %s", why)
	}
	var none *socketCheck
	if got := none.testArgv([]string{"nginx", "-t"}); strings.Join(got, " ") != "nginx -t" || none.refuse(context.Background(), "", false, log) != "" || none.testFiles() != nil {
		t.Errorf("a nil check changes something")
	}
}

func TestSocketCheckHAProxyReload(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "h.cfg")
	c := &socketCheck{preset: signals.Preset{Name: "haproxy", Sockets: signals.SocketsFDBind}, argv: []string{"haproxy", "-Ws", "-f", cfg}, socks: fakeInherited(t, "tcp 127.0.0.1:80")}
	log := NewLogger(io.Discard, LevelInfo)
	for _, tt := range []struct{ config, want string }{
		{"frontend f\n    bind fd@3\n", ""},
		{"frontend f\n    bind 127.0.0.1:80\n", "is bound nowhere in haproxy's config"},
	} {
		if err := os.WriteFile(cfg, []byte(tt.config), 0o644); err != nil {
			t.Fatal(err)
		}
		got := c.refuse(context.Background(), "", false, log)
		if tt.want == "" && got != "" || tt.want != "" && !strings.Contains(got, tt.want) {
			t.Errorf("config %q: refuse = %q, want %q", tt.config, got, tt.want)
		}
	}
}

// Sockets graceshim stored for nginx that reach a server of another
// preset (the unit's ExecStart= changed, the fd store outlived the
// restart) are closed and removed from the store, whatever way that
// preset takes sockets; a .socket unit's are left alone, and nginx keeps
// its own.
func TestDropForeignStored(t *testing.T) {
	recv, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(t.TempDir(), "notify"), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer recv.Close()
	t.Setenv("NOTIFY_SOCKET", recv.LocalAddr().String())
	for _, tt := range []struct {
		sockets signals.Sockets
		dropped bool
	}{
		{signals.SocketsNone, true},
		{signals.SocketsListenFDs, true},
		{signals.SocketsUnknown, true},
		{signals.SocketsFDBind, true},
		{signals.SocketsNginxEnv, false},
	} {
		t.Run(tt.sockets.String(), func(t *testing.T) {
			socks := fakeInherited(t, "tcp 127.0.0.1:8080", "tcp 127.0.0.1:8081")
			socks[1].name = fdStoreName + "12345"
			socks[0].name = "web.socket"
			var log strings.Builder
			opts := Options{Preset: signals.Preset{Name: "x", Sockets: tt.sockets}, Argv: []string{"x"}, Log: NewLogger(&log, LevelInfo)}
			got := dropForeignStored(socks, opts)
			if !tt.dropped {
				if len(got) != 2 {
					t.Fatalf("nginx kept %d sockets, want both", len(got))
				}
				return
			}
			if len(got) != 1 || got[0].name != "web.socket" {
				t.Fatalf("kept %v, want the .socket unit's alone", got)
			}
			if _, err := socks[1].file.Stat(); err == nil {
				t.Errorf("the dropped socket's file is still open")
			}
			if _, err := socks[0].file.Stat(); err != nil {
				t.Errorf("the .socket unit's file was closed: %v", err)
			}
			_ = recv.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 256)
			n, err := recv.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			if want := "FDSTOREREMOVE=1\nFDNAME=" + fdStoreName + "12345"; string(buf[:n]) != want {
				t.Errorf("sent %q, want %q", buf[:n], want)
			}
			if !strings.Contains(log.String(), "127.0.0.1:8081") {
				t.Errorf("the log does not name the dropped socket:\n%s", log.String())
			}
		})
	}
}

// The listens of real nginx -T dumps (Debian's nginx). nginx -T prints
// each file's text as it is, so a comment of the user's that starts
// like nginx's own file marker ("# configuration file for the API")
// must not be taken for one: it would cut the file there.
func TestParseNginxListensRealDump(t *testing.T) {
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		for _, p := range []string{"/usr/sbin/nginx", "/sbin/nginx"} {
			if _, err := os.Stat(p); err == nil {
				nginx = p
			}
		}
		if nginx == "" {
			t.Skip("needs nginx (Debian package nginx), not installed")
		}
	}
	for _, tt := range []struct {
		name  string
		files map[string]string // relative to the prefix; nginx.conf is the main one
		want  []string
	}{
		{"comment like a file marker", map[string]string{
			"nginx.conf": `events {}
http {
# configuration file for the API, see the wiki:
  server {
    listen 127.0.0.1:18451;
  }
}
`}, []string{"127.0.0.1:18451"}},
		{"included by a glob, with such a comment", map[string]string{
			"nginx.conf": "events {}\nhttp {\n  include conf.d/*.conf;\n  server { listen 127.0.0.1:18454; }\n}\n",
			"conf.d/a.conf": `# configuration file of site a:
server { listen 127.0.0.1:18452 default_server; }
`,
			"conf.d/b.conf": "server {\n  # configuration file\n  listen [::1]:18453 ipv6only=on;\n}\n",
		}, []string{"127.0.0.1:18452", "[::1]:18453 bind", "127.0.0.1:18454"}},
		{"file names with a space and colons, no final newline", map[string]string{
			"nginx.conf":               "events {}\nhttp {\n  include \"conf.d/my site:8080.conf\";\n  include 'conf.d/x:.conf';\n}",
			"conf.d/my site:8080.conf": "server { listen 127.0.0.1:18455; }",
			"conf.d/x:.conf":           "server { listen 127.0.0.1:18456; } # configuration file /x:",
		}, []string{"127.0.0.1:18455", "127.0.0.1:18456"}},
		{"a saved dump's marker as a comment", map[string]string{
			"nginx.conf": "events {}\nhttp {\n  include old.conf;\n  server { listen 127.0.0.1:18458; }\n}\n",
			"old.conf":   "# configuration file /etc/nginx/nginx.conf:\nserver { listen 127.0.0.1:18457; }\n",
		}, []string{"127.0.0.1:18457", "127.0.0.1:18458"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, text := range tt.files {
				p := filepath.Join(dir, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			cmd := exec.Command(nginx, "-T", "-q", "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "error.log"), "-g", "pid "+filepath.Join(dir, "nginx.pid")+";")
			dump, err := cmd.Output()
			if err != nil {
				t.Fatalf("nginx -T: %v", err)
			}
			got, err := parseNginxListens(context.Background(), string(dump), true)
			if err != nil {
				t.Fatalf("parseNginxListens: %v\ndump:\n%s", err, dump)
			}
			var addrs []string
			for _, l := range got {
				for _, a := range l.addrs {
					s := a.String()
					if l.bind {
						s += " bind"
					}
					addrs = append(addrs, s)
				}
			}
			if strings.Join(addrs, ", ") != strings.Join(tt.want, ", ") {
				t.Errorf("listens %q, want %q\ndump:\n%s", addrs, tt.want, dump)
			}
		})
	}
}

// HAProxy's own way to bind a passed socket, as its manual shows it
// (configuration.txt 2.3, "bind \"fd@${FD_APP1}\""): quoted words and
// environment variables, in double quotes and (for addresses) unquoted.
// The config is first proven valid by the real haproxy -c with the fds
// passed, then read: every fd@ must be found, by its number.
func TestHAProxyBindsQuotedAndEnv(t *testing.T) {
	cfg := `global
    log stdout local0
defaults
    mode http
    timeout connect 1s
    timeout client 1s
    timeout server 1s
frontend web
    bind "fd@${FD_WEB}" # passed by number in the environment
    bind 'fd@4'
    bind "fd@${FD_API-5}"
    bind "${LOCAL_ADDR}:${FREE_PORT}" name "a \"quoted\" name"
    http-request return status 200
`
	env := []string{"FD_WEB=3", "LOCAL_ADDR=127.0.0.1"}
	port := freePort(t) // haproxy -c binds nothing: the port is only read
	env = append(env, "FREE_PORT="+port)
	if haproxy, err := exec.LookPath("haproxy"); err == nil {
		path := filepath.Join(t.TempDir(), "haproxy.cfg")
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(haproxy, "-c", "-f", path)
		cmd.Env = append(os.Environ(), env...)
		for range 3 {
			_, f := listenerFile(t)
			cmd.ExtraFiles = append(cmd.ExtraFiles, f)
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("haproxy -c refuses the test's config: %v\n%s", err, out)
		}
	} else {
		t.Log("haproxy (Debian package haproxy) not installed: the config is not proven valid first")
	}
	var got []string
	for _, b := range haproxyBinds(cfg, env, nil) {
		s := b.text
		if b.fd >= 0 {
			s += "=fd" + strconv.Itoa(b.fd)
		} else if b.ok {
			s += "=" + b.addr.String()
		}
		got = append(got, s)
	}
	want := []string{"fd@3=fd3", "fd@4=fd4", "fd@5=fd5", fmt.Sprintf("127.0.0.1:%s=127.0.0.1:%s", port, port)}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("got binds %q, want %q", got, want)
	}
	errs, warns := matchHAProxy(fakeInherited(t, "tcp 127.0.0.1:80", "tcp 127.0.0.1:81", "tcp 127.0.0.1:82"), haproxyBinds(cfg, env, nil))
	if len(errs) != 0 || len(warns) != 1 {
		t.Errorf("errors %q, warnings %q; want none and one (the port haproxy binds itself)", errs, warns)
	}
}

// A connection passed as an inherited socket (a .socket unit with
// Accept=yes) is refused for the servers that pick sockets by config;
// a listening socket, a bound one not yet listening (HAProxy takes
// those) and a datagram socket pass.
func TestNotSocketsConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	bound, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(bound)
	if err := unix.Bind(bound, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	fdOf := func(c syscall.Conn) int {
		t.Helper()
		f, err := c.(interface{ File() (*os.File, error) }).File()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return int(f.Fd())
	}
	for _, tt := range []struct {
		name string
		fd   int
		ok   bool
	}{
		{"listening", fdOf(ln.(*net.TCPListener)), true},
		{"bound, not listening", bound, true},
		{"udp", fdOf(udp.(*net.UDPConn)), true},
		{"accepted connection", fdOf(conn.(*net.TCPConn)), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			addr, err := socketAddr(tt.fd)
			if err != nil {
				t.Fatal(err)
			}
			err = notSockets([]inherited{{fd: tt.fd, addr: addr}})
			if tt.ok && err != nil {
				t.Errorf("notSockets: %v, want nil", err)
			}
			if !tt.ok && (!errors.Is(err, ErrSockets) || !strings.Contains(err.Error(), "Accept=yes")) {
				t.Errorf("notSockets: %v, want an ErrSockets that names Accept=yes", err)
			}
		})
	}
}

// graceshim's reading of a bind line agrees with what the real haproxy
// binds: each case's config is run by haproxy 2.6 (-db, foreground) until
// its stats socket answers, when every listener is bound; then a
// connection to the case's port says whether haproxy listens there, and
// graceshim must say the same. Quoting, escapes and environment
// variables as configuration.txt 2.2 and 2.3 describe them, and the
// expansion haproxy applies to every address after that (env_expand in
// str2sa_range), which the manual does not mention.
func TestHAProxyBindsAgreeWithHAProxy(t *testing.T) {
	haproxy, err := exec.LookPath("haproxy")
	if err != nil {
		t.Skip("haproxy (Debian package haproxy) not installed")
	}
	tests := []struct {
		name, bind string // PORT is the case's free port, PORT1 it less its last digit
		env        []string
		global     string // lines of the global section
	}{
		{"plain", `bind 127.0.0.1:PORT`, nil, ""},
		{"comment glued to the word", `bind 127.0.0.1:PORT#comment`, nil, ""},
		{"double quotes", `bind "127.0.0.1:PORT"`, nil, ""},
		{"second address quoted", `bind 127.0.0.3:PORT,"127.0.0.1:PORT"`, nil, ""},
		{"variable in double quotes", `bind "$ADDR"`, []string{"ADDR=127.0.0.1:PORT"}, ""},
		{"braces and text", `bind "${HOST}:PORT"`, []string{"HOST=127.0.0.1"}, ""},
		{"default of an unset variable", `bind "${UNSET-127.0.0.1:PORT}"`, nil, ""},
		{"default not for an empty one", `bind "${EMPTY-127.0.0.1:PORT}"`, []string{"EMPTY="}, ""},
		{"unquoted braces", `bind ${ADDR}`, []string{"ADDR=127.0.0.1:PORT"}, ""},
		{"unquoted default is no default", `bind ${UNSET-127.0.0.1:PORT}`, nil, ""},
		{"single quotes still expanded", `bind '${ADDR}'`, []string{"ADDR=127.0.0.1:PORT"}, ""},
		{"escaped dollar still expanded", `bind "\$ADDR"`, []string{"ADDR=127.0.0.1:PORT"}, ""},
		{"escaped dollar outside quotes", `bind \$ADDR`, []string{"ADDR=127.0.0.1:PORT"}, ""},
		{"hex escape", `bind 127.0.0.1:PORT1\x3D`, nil, ""},
		{"value expanded twice", `bind "$OUTER"`, []string{"OUTER=$INNER", "INNER=127.0.0.1:PORT"}, ""},
		{"word expansion", `bind "${ARGS[*]}"`, []string{"ARGS=127.0.0.1:PORT name web"}, ""},
		{"unmatched quote", `bind "127.0.0.1:PORT`, nil, ""},
		{"setenv", `bind "$ADDR"`, nil, "setenv ADDR 127.0.0.1:PORT"},
		{"setenv over the environment", `bind "$ADDR"`, []string{"ADDR=127.0.0.3:PORT"}, "setenv ADDR 127.0.0.1:PORT"},
		{"presetenv under the environment", `bind "$ADDR"`, []string{"ADDR=127.0.0.1:PORT"}, "presetenv ADDR 127.0.0.3:PORT"},
		{"unsetenv", `bind "${ADDR-127.0.0.1:PORT}"`, []string{"ADDR=127.0.0.3:PORT"}, "unsetenv ADDR"},
		{"resetenv", `bind "${ADDR-127.0.0.1:PORT}"`, []string{"ADDR=127.0.0.3:PORT"}, "resetenv PATH"},
		{"false block skipped", ".if defined(UNSET)\nbind 127.0.0.1:PORT\n.endif", nil, ""},
		{"true block read", ".if defined(SET)\nbind 127.0.0.1:PORT\n.endif", []string{"SET="}, ""},
		{"else", ".if defined(UNSET)\nbind 127.0.0.3:PORT\n.else\nbind 127.0.0.1:PORT\n.endif", nil, ""},
		{"else after a taken branch", ".if 1\nbind 127.0.0.3:PORT\n.else\nbind 127.0.0.1:PORT\n.endif", nil, ""},
		{"elif", ".if 0\nbind 127.0.0.3:PORT\n.elif streq(\"$MODE\",fd)\nbind 127.0.0.1:PORT\n.endif", []string{"MODE=fd"}, ""},
		{"nested in a false block", ".if 0\n.if 1\nbind 127.0.0.1:PORT\n.endif\n.endif", nil, ""},
		{"negation and both", ".if !defined(UNSET) && defined(SET) || 0\nbind 127.0.0.1:PORT\n.endif", []string{"SET=1"}, ""},
		{"condition on a setenv", ".if strneq(\"$WHERE\",here)\nbind 127.0.0.1:PORT\n.endif", nil, "setenv WHERE there"},
		{"set by haproxy", ".if defined(HAPROXY_LOCALPEER)\nbind 127.0.0.1:PORT\n.endif", nil, ""},
		{"not yet set by haproxy", ".if defined(HAPROXY_MWORKER)\nbind 127.0.0.1:PORT\n.endif", nil, ""},
		{"a feature the build lacks", ".if feature(NO_SUCH_FEATURE)\nbind 127.0.0.1:PORT\n.endif", nil, ""},
		{"a version before", ".if version_before(2.0) || defined(UNSET)\nbind 127.0.0.1:PORT\n.endif", nil, ""},
		{"a version at least", ".if version_atleast(2.4)\nbind 127.0.0.1:PORT\n.endif", nil, ""},
		{"a build condition on a setenv", ".if version_atleast(2.4) && defined(LATER)\nbind 127.0.0.1:PORT\n.endif", nil, "setenv LATER 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			port := freePort(t)
			repl := strings.NewReplacer("PORT1", port[:len(port)-1], "PORT", port)
			bind := repl.Replace(tt.bind)
			if strings.Contains(bind, `\x3D`) {
				bind = strings.Replace(bind, `\x3D`, `\x3`+port[len(port)-1:], 1)
			}
			var env []string
			for _, e := range tt.env {
				env = append(env, repl.Replace(e))
			}
			dir := t.TempDir()
			stats := filepath.Join(dir, "stats")
			bind = strings.ReplaceAll(bind, "\n", "\n    ")
			cfg := fmt.Sprintf("global\n    stats socket %s\n    %s\ndefaults\n    mode tcp\n    timeout connect 1s\n    timeout client 1s\n    timeout server 1s\nfrontend f\n    %s\n    default_backend b\nbackend b\n    server s 127.0.0.1:9\n", stats, repl.Replace(tt.global), bind)
			path := filepath.Join(dir, "haproxy.cfg")
			if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(haproxy, "-db", "-f", path)
			cmd.Env = append(os.Environ(), env...)
			var out strings.Builder
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan struct{})
			go func() { cmd.Wait(); close(exited) }()
			defer func() { cmd.Process.Kill(); <-exited }()
			// haproxy binds every listener, the stats socket's too,
			// before it runs (src/haproxy.c, protocol_bind_all): an
			// answer there means the frontend's are bound as well.
			deadline := time.After(10 * time.Second)
			running := false
			for !running {
				select {
				case <-exited:
					t.Logf("haproxy refused the config: %s", out.String())
				case <-deadline:
					t.Fatalf("haproxy neither ran nor exited: %s", out.String())
				case <-time.After(20 * time.Millisecond):
					c, err := net.Dial("unix", stats)
					if err != nil {
						continue
					}
					io.WriteString(c, "show info\n")
					b, _ := io.ReadAll(c)
					c.Close()
					running = strings.Contains(string(b), "Pid:")
					continue
				}
				break
			}
			haproxyListens := false
			if running {
				c, err := net.Dial("tcp", "127.0.0.1:"+port)
				if err == nil {
					c.Close()
					haproxyListens = true
				}
			}
			graceshimBinds := false
			var read []string
			for _, b := range haproxyBinds(cfg, haproxyconf.Env([]string{haproxy, "-db", "-f", path}, append(os.Environ(), env...)), haproxyconf.CC(haproxy)) {
				read = append(read, b.text)
				if b.ok && strconv.Itoa(int(b.addr.ap.Port())) == port && b.addr.ap.Addr().String() == "127.0.0.1" {
					graceshimBinds = true
				}
			}
			if graceshimBinds != haproxyListens {
				t.Errorf("%s with %q: haproxy binds 127.0.0.1:%s: %v; graceshim reads %q", bind, env, port, haproxyListens, read)
			}
		})
	}
}

// A config written for both ways of running, with the passed socket under
// a condition and the port of its own otherwise, is not refused: only the
// branch haproxy reads is checked.
func TestMatchHAProxyConditional(t *testing.T) {
	cfg := "frontend web\n    .if defined(FD_WEB)\n        bind \"fd@${FD_WEB}\"\n    .else\n        bind 127.0.0.1:80\n    .endif\n"
	errs, warns := matchHAProxy(fakeInherited(t, "tcp 127.0.0.1:80"), haproxyBinds(cfg, []string{"FD_WEB=3"}, nil))
	if len(errs) != 0 || len(warns) != 0 {
		t.Errorf("with FD_WEB=3: errors %q, warnings %q; want none", errs, warns)
	}
	errs, _ = matchHAProxy(fakeInherited(t, "tcp 127.0.0.1:80"), haproxyBinds(cfg, nil, nil))
	if len(errs) != 2 {
		t.Errorf("without FD_WEB: errors %q; want the socket bound nowhere and the port taken", errs)
	}
}

// haproxy -C DIR reads relative config names in DIR, wherever -C is on
// the command line: proven with the real haproxy -c, then the same
// files must be read.
func TestHAProxyConfigFilesChangeDir(t *testing.T) {
	dir := t.TempDir()
	cfg := "defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 1s\n    timeout server 1s\nfrontend f\n    bind fd@3\n    default_backend b\nbackend b\n    server s 127.0.0.1:9\n"
	if err := os.MkdirAll(filepath.Join(dir, "conf.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	for n, text := range map[string]string{"h.cfg": cfg, "conf.d/x.cfg": "backend other\n    server s 127.0.0.1:9\n"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	argv := []string{"haproxy", "-Ws", "-f", "h.cfg", "-C", dir, "-f", "conf.d"}
	if haproxy, err := exec.LookPath("haproxy"); err == nil {
		_, f := listenerFile(t)
		cmd := exec.Command(haproxy, append([]string{"-c"}, argv[2:]...)...)
		cmd.ExtraFiles = []*os.File{f}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("haproxy -c %q: %v\n%s", argv[2:], err, out)
		}
	} else {
		t.Log("haproxy (Debian package haproxy) not installed: the command line is not proven first")
	}
	got := haproxyConfigFiles(argv)
	want := []string{filepath.Join(dir, "h.cfg"), filepath.Join(dir, "conf.d/x.cfg")}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("got %q, want %q", got, want)
	}
}
