package unitgen

import (
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParseMalformed(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"no equals", "[Service]\nExecStart=/bin/true\nnot an assignment\n", "x.service:3:"},
		{"before section", "ExecStart=/bin/true\n[Service]\n", "x.service:1:"},
		{"open header", "[Service\nExecStart=/bin/true\n", "x.service:1:"},
		{"garbage after header", "[Service] x\n", "x.service:1:"},
		{"binary", "[Service]\nExecStart=\x00\n", "NUL"},
	}
	for _, tc := range tests {
		_, _, err := Parse("x.service", []byte(tc.in))
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Parse error %v; want ErrMalformed mentioning %q", tc.name, err, tc.want)
		}
	}
}

func TestParseLinesAndContinuations(t *testing.T) {
	in := "# c\n[Unit]\nDescription=d\n\n[Service]\nExecStart=/bin/echo a \\\n  b\nUser=x\n[X-Mine]\nK=v\n[Odd]\nK=v\n"
	u, warns, err := Parse("x.service", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	d, _ := u.Get("Service", "ExecStart")
	if d.Line != 6 || d.Value != "/bin/echo a    b" {
		t.Errorf("ExecStart = %+v; want line 6, continuation joined by a space", d)
	}
	if d, _ := u.Get("Service", "User"); d.Line != 8 {
		t.Errorf("User at line %d; want 8", d.Line)
	}
	if len(warns) != 1 || warns[0].Line != 12 || !strings.Contains(warns[0].Msg, "[Odd]") {
		t.Errorf("warnings %v; want one for [Odd] at line 12 (X- sections are fine)", warns)
	}
}

func TestListReset(t *testing.T) {
	u, _, err := Parse("x", []byte("[Service]\nExecStop=/a\nExecStop=\nExecStop=/b\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := u.List("Service", "ExecStop"); len(got) != 1 || got[0].Value != "/b" {
		t.Errorf("List after reset = %+v; want only /b", got)
	}
}

func TestClassifySignalCmd(t *testing.T) {
	tests := []struct {
		cmd   string
		sends bool
		sig   syscall.Signal
		waits bool
		wait  time.Duration
	}{
		{"/sbin/start-stop-daemon --quiet --stop --retry QUIT/5 --pidfile /run/nginx.pid", true, syscall.SIGQUIT, true, 5 * time.Second},
		{"/sbin/start-stop-daemon --stop --pidfile /run/x.pid", true, syscall.SIGTERM, false, 0},
		{"/sbin/start-stop-daemon --stop --signal QUIT --retry 30 --pidfile /run/x.pid", true, syscall.SIGQUIT, true, 30 * time.Second},
		{`/bin/sh -c "/bin/kill -s TERM $(/bin/cat /var/run/nginx.pid)"`, true, syscall.SIGTERM, false, 0},
		{"/bin/kill -QUIT $MAINPID", true, syscall.SIGQUIT, false, 0},
		{"/bin/kill $MAINPID", true, syscall.SIGTERM, false, 0},
		{"/usr/sbin/nginx -s quit", true, syscall.SIGQUIT, false, 0},
		{"/usr/sbin/apachectl graceful-stop", true, syscall.SIGWINCH, false, 0},
		{"/usr/sbin/nginx -t", false, 0, false, 0},
		{"/usr/local/bin/deregister --from lb", false, 0, false, 0},
	}
	for _, tc := range tests {
		line, err := SplitExec(tc.cmd)
		if err != nil {
			t.Fatal(err)
		}
		got := classifySignalCmd(line.Argv())
		if got.Sends != tc.sends || got.Signal != tc.sig || got.Waits != tc.waits || got.Wait != tc.wait {
			t.Errorf("%s: %+v; want sends=%v sig=%v waits=%v wait=%s", tc.cmd, got, tc.sends, tc.sig, tc.waits, tc.wait)
		}
	}
}

func TestParseVersion(t *testing.T) {
	for in, want := range map[string]int{"systemd 252 (252.38-1~deb12u1)\n+PAM": 252, "systemd 219\n": 219} {
		if got, err := ParseVersion(in); err != nil || got != want {
			t.Errorf("ParseVersion(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	if _, err := ParseVersion("bash: systemctl: not found"); err == nil {
		t.Error("ParseVersion of junk: no error")
	}
}

func TestGenerateBadInput(t *testing.T) {
	for _, o := range []Options{
		{},
		{Argv: []string{"x"}, Graceshim: "graceshim"},
		{Argv: []string{"x"}, Env: []string{"NOEQUALS"}},
		{Argv: []string{"x"}, Env: []string{"1BAD=x"}},
		{Argv: []string{"x"}, Env: []string{"A=line\nbreak"}},
		{Argv: []string{"x"}, User: "two words"},
		{Argv: []string{"x"}, Description: "a\nb"},
	} {
		o.SystemdVersion = 252
		if out, err := Generate(o); err == nil {
			t.Errorf("Generate(%+v): no error, wrote\n%s", o, out)
		}
	}
}

func TestGenerateNotifyReload(t *testing.T) {
	for _, tt := range []struct {
		version    int
		wantType   string
		wantReload bool
	}{
		{219, "Type=notify\n", true},
		{252, "Type=notify\n", true},
		{253, "Type=notify-reload\n", false},
	} {
		out, err := Generate(Options{SystemdVersion: tt.version, Argv: []string{"/usr/sbin/nginx"}})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(out), tt.wantType) || strings.Contains(string(out), "ExecReload=") != tt.wantReload {
			t.Errorf("systemd %d: want %q and ExecReload= %v:\n%s", tt.version, tt.wantType, tt.wantReload, out)
		}
	}
}

// TestConvertReload: graceshim's HUP replaces a signal reload and fills in
// a missing one for a known daemon, but a reload command of the daemon's
// own stays the only reload, and an unknown daemon gets none.
func TestConvertReload(t *testing.T) {
	tests := []struct {
		name, service string
		wantHUP       bool
	}{
		{"signal reload", "[Service]\nExecStart=/usr/sbin/nginx -g 'daemon off;'\nExecReload=/bin/kill -HUP $MAINPID\n", true},
		{"no reload, known daemon", "[Service]\nExecStart=/usr/sbin/nginx -g 'daemon off;'\n", true},
		{"own reload command", "[Service]\nExecStart=/usr/bin/caddy run --config /etc/caddy/Caddyfile\nExecReload=/usr/bin/caddy reload --config /etc/caddy/Caddyfile\n", false},
		{"unknown daemon", "[Service]\nExecStart=/usr/local/bin/myserver --port 80\n", false},
	}
	for _, tt := range tests {
		u, _, err := Parse("x.service", []byte(tt.service))
		if err != nil {
			t.Fatal(err)
		}
		r, err := Convert(u, Options{SystemdVersion: 252}, false)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got := strings.Contains(string(r.Unit), "ExecReload=/bin/kill -HUP $MAINPID"); got != tt.wantHUP {
			t.Errorf("%s: HUP reload %v, want %v:\n%s", tt.name, got, tt.wantHUP, r.Unit)
		}
	}
}
