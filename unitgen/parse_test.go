package unitgen

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParseMalformed(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", "empty"},
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
	if len(warns) != 1 || warns[0].Line != 11 || !strings.Contains(warns[0].Msg, "[Odd]") {
		t.Errorf("warnings %v; want one for [Odd] at its header, line 11 (X- sections are fine)", warns)
	}
}

// TestParseWhatSystemdAccepts: what systemd-analyze verify accepts is
// read, with a warning where systemd warns too (systemd.syntax(7),
// config_parse() in src/shared/conf-parser.c).
func TestParseWhatSystemdAccepts(t *testing.T) {
	long := strings.Repeat("x", 10000)
	tests := []struct {
		name, in  string
		directive string
		want      string
		wantLine  int
		warn      string
	}{
		{"10000-character line", "[Service]\nExecStart=/bin/echo " + long + "\n", "ExecStart", "/bin/echo " + long, 2, ""},
		{"comment inside a continuation", "[Service]\nExecStart=/bin/echo a \\\n# a comment\n; another\n  b\n", "ExecStart", "/bin/echo a    b", 2, ""},
		{"line without '='", "[Service]\nExecStart=/bin/true\nnot an assignment\n", "ExecStart", "/bin/true", 2, "x.service:3: missing '='"},
		{"assignment before a section", "ExecStart=/bin/false\n[Service]\nExecStart=/bin/true\n", "ExecStart", "/bin/true", 3, "x.service:1: assignment outside"},
		{"byte order mark", "\xef\xbb\xbf[Service]\nExecStart=/bin/true\n", "ExecStart", "/bin/true", 2, ""},
		{"continuation at the end", "[Service]\nExecStart=/bin/true \\", "ExecStart", "/bin/true", 2, ""},
		// An escaped backslash ends the line (systemd-analyze verify 252).
		{"escaped backslash at the end", "[Service]\nExecStart=/bin/echo a\\\\\nExecStartPre=/bin/true\n", "ExecStart", "/bin/echo a\\\\", 2, ""},
		{"escaped backslash then a continuation", "[Service]\nExecStart=/bin/echo a\\\\\\\n  b\n", "ExecStart", "/bin/echo a\\\\   b", 2, ""},
	}
	for _, tc := range tests {
		u, warns, err := Parse("x.service", []byte(tc.in))
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		d, ok := u.Get("Service", tc.directive)
		if !ok || d.Value != tc.want || d.Line != tc.wantLine {
			t.Errorf("%s: %s= %+v; want %q at line %d", tc.name, tc.directive, d, shorten(tc.want), tc.wantLine)
		}
		var ws []string
		for _, w := range warns {
			ws = append(ws, w.String())
		}
		switch {
		case tc.warn == "" && len(ws) > 0:
			t.Errorf("%s: unexpected warnings %q", tc.name, ws)
		case tc.warn != "" && (len(ws) != 1 || !strings.HasPrefix(ws[0], tc.warn)):
			t.Errorf("%s: warnings %q; want one starting %q", tc.name, ws, tc.warn)
		}
	}
}

// TestWrapCommentLongWord: a word longer than a comment line (a long
// path) is kept whole, and wrapping ends.
func TestWrapCommentLongWord(t *testing.T) {
	long := "/var/lib/graceshim-e2e-717694967/TestE2EConvertedDebianRedis75043891/002/graceshim"
	got := wrapComment([]string{"added ExecPaths=" + long + ": the unit limits what may be executed " + long + " end"})
	if joined := strings.Join(got, "\n"); !strings.Contains(joined, long) || !strings.HasSuffix(joined, "end") {
		t.Errorf("wrapComment lost text:\n%s", joined)
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

// TestGenerateReload: every systemd version gets Type=notify and
// ExecReload=graceshim reload $MAINPID for a daemon that can reload, and
// no ExecReload= for one that cannot (redis) or is unknown.
func TestGenerateReload(t *testing.T) {
	for _, tt := range []struct {
		version    int
		argv0      string
		wantReload bool
	}{
		{219, "/usr/sbin/nginx", true},
		{252, "/usr/sbin/nginx", true},
		{253, "/usr/sbin/nginx", true},
		{252, "/usr/bin/redis-server", false},
		{252, "/usr/local/bin/myserver", false},
	} {
		out, err := Generate(Options{SystemdVersion: tt.version, Argv: []string{tt.argv0}, Graceshim: "/opt/g s/graceshim"})
		if err != nil {
			t.Fatal(err)
		}
		s := string(out)
		if !strings.Contains(s, "\nType=notify\n") {
			t.Errorf("systemd %d %s: want Type=notify:\n%s", tt.version, tt.argv0, s)
		}
		if got := strings.Contains(s, "\nExecReload=\"/opt/g s/graceshim\" reload $MAINPID\n"); got != tt.wantReload {
			t.Errorf("systemd %d %s: graceshim reload %v, want %v:\n%s", tt.version, tt.argv0, got, tt.wantReload, s)
		}
		if strings.Count(s, "\nExecReload=") > 1 {
			t.Errorf("more than one ExecReload=:\n%s", s)
		}
	}
}

// TestConvertReload: graceshim reload replaces a signal reload and fills
// in a missing one for a known daemon; a reload command of the daemon's
// own stays the only reload; an unknown daemon gets one only when its
// unit reloaded it with a signal (squid's HUP, lighttpd's USR1 through
// --map), and apachectl graceful keeps its config test.
func TestConvertReload(t *testing.T) {
	tests := []struct {
		name, service string
		wantHUP       bool
		want          []string
	}{
		{"signal reload", "[Service]\nExecStart=/usr/sbin/nginx -g 'daemon off;'\nExecReload=/bin/kill -HUP $MAINPID\n", true, nil},
		{"no reload, known daemon", "[Service]\nExecStart=/usr/sbin/nginx -g 'daemon off;'\n", true, nil},
		{"own reload command", "[Service]\nExecStart=/usr/bin/caddy run --config /etc/caddy/Caddyfile\nExecReload=/usr/bin/caddy reload --config /etc/caddy/Caddyfile\n", false,
			[]string{"\nExecReload=/usr/bin/caddy reload --config /etc/caddy/Caddyfile\n"}},
		{"unknown daemon", "[Service]\nExecStart=/usr/local/bin/myserver --port 80\n", false, nil},
		{"unknown daemon, HUP reload", "[Service]\nExecStart=/usr/sbin/squid-like --foreground\nExecReload=/bin/kill -HUP $MAINPID\n", true, nil},
		{"unknown daemon, USR1 reload", "[Service]\nExecStart=/usr/sbin/lighttpd-like -D\nExecReload=/bin/kill -USR1 $MAINPID\n", true,
			[]string{"--map=HUP:USR1 -- /usr/sbin/lighttpd-like -D"}},
		{"redis cannot reload", "[Service]\nExecStart=/usr/bin/redis-server\nExecReload=/bin/kill -HUP $MAINPID\n", false, nil},
		{"apachectl graceful keeps its test", "[Service]\nType=forking\nExecStart=/usr/sbin/apachectl start\nExecReload=/usr/sbin/apachectl graceful\n", true,
			[]string{"\nExecReload=/usr/sbin/apachectl configtest\nExecReload=/usr/bin/graceshim reload $MAINPID\n"}},
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
		if got := strings.Contains(string(r.Unit), "\nExecReload=/usr/bin/graceshim reload $MAINPID\n"); got != tt.wantHUP {
			t.Errorf("%s: graceshim reload %v, want %v:\n%s", tt.name, got, tt.wantHUP, r.Unit)
		}
		if strings.Contains(string(r.Unit), "\nExecReload=/bin/kill") {
			t.Errorf("%s: a kill command survived:\n%s", tt.name, r.Unit)
		}
		for _, w := range tt.want {
			if !strings.Contains(string(r.Unit), w) {
				t.Errorf("%s: want %q in:\n%s", tt.name, w, r.Unit)
			}
		}
	}
}

// TestDaemonArgv: env(1), bundle exec and a shell that execs the daemon
// are looked through; a shell that does not exec stays the command.
func TestDaemonArgv(t *testing.T) {
	tests := []struct {
		argv []string
		want string
	}{
		{[]string{"/usr/bin/env", "A=1", "-u", "B", "gunicorn", "app:app"}, "gunicorn"},
		{[]string{"/bin/sh", "-c", `exec /usr/sbin/nginx -g "daemon off;"`}, "/usr/sbin/nginx"},
		{[]string{"/bin/bash", "-lc", `ulimit -n 4096; X=1 exec -a web /usr/sbin/nginx -g 'daemon off;'`}, "/usr/sbin/nginx"},
		{[]string{"/bin/sh", "-c", "exec env PORT=80 /usr/bin/gunicorn app"}, "/usr/bin/gunicorn"},
		{[]string{"/bin/sh", "-c", "/usr/sbin/nginx; echo done"}, "/bin/sh"},
		{[]string{"/usr/sbin/nginx"}, "/usr/sbin/nginx"},
		// Bundler execs the command (puma's docs/systemd.md: `bundle
		// exec --keep-file-descriptors puma`).
		{[]string{"/usr/local/bin/bundle", "exec", "--keep-file-descriptors", "puma", "-C", "config/puma.rb"}, "puma"},
		{[]string{"bundle", "exec", "--gemfile", "/srv/app/Gemfile", "unicorn", "-c", "u.rb"}, "unicorn"},
		{[]string{"bundle", "install"}, "bundle"},
		// capistrano-puma's unit runs Bundler through rbenv (ExecStart=
		// its bundle command, "rbenv exec bundle" under capistrano-rbenv,
		// then "exec puma"); rbenv-exec ends in `exec -a CMD PATH "$@"`
		// (rbenv/rbenv libexec/rbenv-exec).
		{[]string{"/home/deploy/.rbenv/bin/rbenv", "exec", "bundle", "exec", "puma", "-C", "/srv/app/shared/puma.rb"}, "puma"},
		{[]string{"rbenv", "exec", "/srv/app/bin/unicorn", "-c", "u.rb"}, "/srv/app/bin/unicorn"},
		{[]string{"rbenv", "install", "3.2.2"}, "rbenv"},
		// Debian's memcached.service.
		{[]string{"/usr/share/memcached/scripts/systemd-memcached-wrapper", "/etc/memcached.conf"}, "/usr/bin/memcached"},
	}
	for _, tc := range tests {
		got := daemonArgv(tc.argv)
		if len(got) == 0 || got[0] != tc.want {
			t.Errorf("daemonArgv(%q) = %q, want the daemon %s", tc.argv, got, tc.want)
		}
	}
}

// TestCannotStop: SIGCONT and the job-control and ignored signals stop
// nothing; WINCH (httpd's graceful stop) and TERM do.
func TestCannotStop(t *testing.T) {
	for sig, want := range map[syscall.Signal]bool{syscall.SIGCONT: true, syscall.SIGTSTP: true, syscall.SIGCHLD: true, syscall.SIGWINCH: false, syscall.SIGTERM: false, syscall.SIGQUIT: false} {
		if got := cannotStop(sig); got != want {
			t.Errorf("cannotStop(%v) = %v, want %v", sig, got, want)
		}
	}
}

// TestParseKnowsSocketUnits: the socket units unit --socket writes parse
// without a warning ([Socket] and its directives are systemd's own).
func TestParseKnowsSocketUnits(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(testdata, "socket", "golden", "*.socket"))
	if len(files) == 0 {
		t.Fatal("no golden socket units")
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		_, warns, err := Parse(f, data)
		if err != nil || len(warns) > 0 {
			t.Errorf("%s: %v %v", f, err, warns)
		}
	}
	_, warns, err := Parse("x.socket", []byte("[Socket]\nListenStream=80\nNoSuchThing=1\n"))
	if err != nil || len(warns) != 1 || !strings.Contains(warns[0].String(), "NoSuchThing") {
		t.Errorf("an unknown [Socket] directive: %v %v", err, warns)
	}
}

// TestParseEnvironmentWords: systemd splits Environment= into words and
// ignores one that is no NAME=VALUE ("Invalid environment assignment,
// ignoring", systemd-analyze verify 252 on Debian's unicorn.service,
// whose Environment=UNICORN_OPTS=-E production sets UNICORN_OPTS=-E).
// A unit converted from it would carry the same loss, so say so.
func TestParseEnvironmentWords(t *testing.T) {
	tests := []struct {
		value string
		want  string // in the warning; "" no warning
	}{
		{`UNICORN_OPTS=-E production`, `"production"`},
		{`"UNICORN_OPTS=-E production"`, ""},
		{`A=1 "B=2 3" C=`, ""},
		{`PATH=/usr/bin:/bin 'LANG=C.UTF-8'`, ""},
		{`A=1 =2`, `"=2"`},
	}
	for _, tt := range tests {
		_, warns, err := Parse("env.service", []byte("[Service]\nEnvironment="+tt.value+"\nExecStart=/usr/bin/unicorn\n"))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, w := range warns {
			got = append(got, w.String())
		}
		switch {
		case tt.want == "" && len(got) != 0:
			t.Errorf("Environment=%s: warnings %q, want none", tt.value, got)
		case tt.want != "" && (len(got) != 1 || !strings.Contains(got[0], tt.want) || !strings.HasPrefix(got[0], "env.service:2:")):
			t.Errorf("Environment=%s: warnings %q, want one at line 2 naming %s", tt.value, got, tt.want)
		}
	}
}

// TestParseInlineComment: systemd has no comment after a value (only
// lines that start with # or ;, systemd.syntax(7)); "KillSignal=SIGQUIT
// # graceful" is a bad signal that systemd ignores (systemd-analyze
// verify 252: "Failed to parse signal name, ignoring"), so it sends
// SIGTERM. Parse says so where a value cannot hold such text.
func TestParseInlineComment(t *testing.T) {
	tests := []struct {
		line string
		want bool
	}{
		{"KillSignal=SIGQUIT # graceful stop", true},
		{"TimeoutStopSec=300 ; five minutes", true},
		{"KillMode=mixed\t# TERM to the main process only", true},
		{"KillSignal=SIGQUIT", false},
		{`ExecStart=/bin/sh -c 'exec nginx; echo # not a comment'`, false},
		{`Environment="PS1=# "`, false},
		{"Description=web server ; the main one", false},
		{"ExecStartPre=/usr/sbin/nginx -t ; /bin/true", false},
	}
	for _, tt := range tests {
		_, warns, err := Parse("c.service", []byte("[Service]\n"+tt.line+"\n"))
		if err != nil {
			t.Fatal(err)
		}
		got := false
		for _, w := range warns {
			got = got || strings.Contains(w.Msg, "no comment")
		}
		if got != tt.want {
			t.Errorf("%s: warned %v (%v), want %v", tt.line, got, warns, tt.want)
		}
	}
}
