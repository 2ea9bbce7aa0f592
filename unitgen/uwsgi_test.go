package unitgen

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/graceshim/graceshim/signals"
)

// TestUWSGIHooked reads the hook that makes SIGTERM uWSGI's graceful stop
// from the command line and from the ini files it names.
func TestUWSGIHooked(t *testing.T) {
	root := filepath.Join(testdata, "root")
	tests := []struct {
		argv           string
		hooked, dieOnT bool
		cannot         string
	}{
		{"uwsgi --ini /etc/uwsgi/hooked.ini", true, false, ""},
		{"uwsgi --ini=/etc/uwsgi/hooked.ini", true, false, ""},
		{"uwsgi /etc/uwsgi/hooked.ini", true, false, ""},
		{"uwsgi --ini /etc/uwsgi/plain.ini", false, false, ""},
		{"uwsgi --ini /etc/uwsgi/plain.ini --die-on-term", false, true, ""},
		{"uwsgi --master --hook-master-start unix_signal:15|gracefully_kill_them_all --http-socket :8000", true, false, ""},
		// Debian's uwsgi-app@.service: the ini is named by a specifier.
		{"uwsgi --ini /etc/uwsgi/apps-available/%i.ini", false, false, "/etc/uwsgi/apps-available/%i.ini"},
		{"uwsgi --ini /etc/uwsgi/missing.ini", false, false, "/etc/uwsgi/missing.ini"},
	}
	for _, tt := range tests {
		argv := strings.Fields(tt.argv)
		for i := range argv {
			argv[i] = strings.ReplaceAll(argv[i], "|", " ")
		}
		hooked, dieOnTerm, cannot := uwsgiHooked(root, argv)
		if hooked != tt.hooked || dieOnTerm != tt.dieOnT || cannot != tt.cannot {
			t.Errorf("%s: hooked %v, die-on-term %v, cannot read %q; want %v, %v, %q", tt.argv, hooked, dieOnTerm, cannot, tt.hooked, tt.dieOnT, tt.cannot)
		}
	}
}

// TestLintKillSignalSentence: a KillSignal= that is the daemon's fast
// stop reads as a sentence ("KillSignal=SIGINT is its fast stop").
func TestLintKillSignalSentence(t *testing.T) {
	u, _, err := Parse("ks.service", []byte("[Service]\nExecStart=/usr/sbin/nginx -g 'daemon off;'\nKillSignal=SIGINT\n"))
	if err != nil {
		t.Fatal(err)
	}
	fs := Lint(u, LintOptions{SystemdVersion: 252, Root: filepath.Join(testdata, "root")})
	if len(fs) == 0 || !strings.HasPrefix(fs[0].Problem, "KillSignal=SIGINT is its fast stop for nginx") {
		t.Errorf("got %v, want a finding beginning \"KillSignal=SIGINT is its fast stop for nginx\"", fs)
	}
}

// TestCaddyResumeNoReload: caddy run --resume (Debian's caddy-api.service)
// takes its configuration through the admin API; caddy reload reads a
// file and has none, so a generated unit gets no ExecReload=, while
// caddy run --config FILE keeps its reload.
func TestCaddyResumeNoReload(t *testing.T) {
	tests := []struct {
		argv   []string
		reload bool
	}{
		{[]string{"/usr/bin/caddy", "run", "--environ", "--resume"}, false},
		{[]string{"/usr/bin/caddy", "run", "-resume=true"}, false},
		{[]string{"/usr/bin/caddy", "run", "--resume", "--config", "/etc/caddy/Caddyfile"}, true},
		{[]string{"/usr/bin/caddy", "run", "--environ", "--config=/etc/caddy/Caddyfile"}, true},
	}
	for _, tt := range tests {
		p, _ := signals.ForCommand(tt.argv[0])
		out, err := Generate(Options{Graceshim: "/usr/bin/graceshim", Argv: tt.argv, Preset: p, SystemdVersion: 252})
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(string(out), "\nExecReload="); got != tt.reload {
			t.Errorf("%q: ExecReload= %v, want %v\n%s", tt.argv, got, tt.reload, out)
		}
	}
}
