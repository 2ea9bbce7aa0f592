package unitgen

import (
	"os"
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
		// A configuration in another format than ini (uwsgi --help:
		// --yaml, --json, --xml, a bare FILE.yaml) is not read: graceshim
		// cannot tell, rather than saying the hook is missing.
		{"uwsgi --yaml /etc/uwsgi/app.yaml", false, false, "/etc/uwsgi/app.yaml"},
		{"uwsgi -y /etc/uwsgi/app.yaml", false, false, "/etc/uwsgi/app.yaml"},
		{"uwsgi /etc/uwsgi/app.yaml", false, false, "/etc/uwsgi/app.yaml"},
		{"uwsgi --xml=/etc/uwsgi/app.xml", false, false, "/etc/uwsgi/app.xml"},
		{"uwsgi --json /etc/uwsgi/app.json --master", false, false, "/etc/uwsgi/app.json"},
		{"uwsgi --ini /etc/uwsgi/plain.ini --include /etc/uwsgi/hooked.ini", true, false, ""},
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

// TestUWSGIReloadKeepsSockets: a uWSGI service that a socket unit of its
// own activates gets no ExecReload= unless its options name the socket
// (a reload would end it); one that names it, or that has no socket
// unit, keeps graceshim's reload.
func TestUWSGIReloadKeepsSockets(t *testing.T) {
	root := filepath.Join(testdata, "root")
	tests := []struct {
		file   string
		reload bool
	}{
		{filepath.Join("activated", "pool@.service"), false},
		{filepath.Join("units", "debian-uwsgi-app@.service"), true},
	}
	for _, tt := range tests {
		u := readUnitAt(t, filepath.Join(testdata, tt.file))
		res, err := Convert(u, Options{Graceshim: "/usr/bin/graceshim", SystemdVersion: 252}, false)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(string(res.Unit), "\nExecReload="); got != tt.reload {
			t.Errorf("%s: ExecReload= %v, want %v\n%s", tt.file, got, tt.reload, res.Unit)
		}
	}
	// The ini names the socket: read under root, as lint reads it.
	u := readUnitAt(t, filepath.Join(testdata, "activated", "named", "web@.service"))
	if why := uwsgiReloadLosesSockets(u, []string{"/usr/bin/uwsgi", "--ini", "/etc/uwsgi/web.ini"}); why == "" {
		t.Errorf("web.ini is not read from / here, so the reload cannot be told safe; got no reason")
	}
	if named, cannot := uwsgiNamesSocket(root, []string{"/usr/bin/uwsgi", "--ini", "/etc/uwsgi/web.ini"}); !named || cannot != "" {
		t.Errorf("uwsgiNamesSocket(web.ini) = %v, %q; want true", named, cannot)
	}
	if named, _ := uwsgiNamesSocket(root, []string{"/usr/bin/uwsgi", "--ini", "/etc/uwsgi/plain.ini"}); !named {
		t.Errorf("plain.ini names an http-socket, uwsgiNamesSocket says no")
	}
	if named, _ := uwsgiNamesSocket(root, []string{"/usr/bin/uwsgi", "--plugins", "python3", "--wsgi-file", "app.py"}); named {
		t.Errorf("a command without a socket option is said to name one")
	}
}

// readUnitAt parses the unit file at path under that path, so that the
// files beside it (sockets, drop-ins, templates) can be found.
func readUnitAt(t *testing.T, path string) *Unit {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u, _, err := Parse(path, data)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestUWSGIIniSections: uWSGI reads one section of an ini file, [uwsgi]
// or the one named after the last colon (--ini FILE:SECTION; unbit/uwsgi
// core/ini.c); options of other sections do not apply, and a flag
// without a value is set.
func TestUWSGIIniSections(t *testing.T) {
	root := filepath.Join(testdata, "root")
	tests := []struct {
		argv                  string
		hooked, dieOnT, named bool
		cannot                string
	}{
		{"uwsgi --ini /etc/uwsgi/sections.ini", false, false, false, ""},
		{"uwsgi --ini /etc/uwsgi/sections.ini:staging", true, false, true, ""},
		{"uwsgi --ini=/etc/uwsgi/sections.ini:staging", true, false, true, ""},
		{"uwsgi --ini /etc/uwsgi/sections.ini:uwsgi", false, false, false, ""},
		{"uwsgi --ini /etc/uwsgi/sections.ini:nosuch", false, false, false, ""},
	}
	for _, tt := range tests {
		argv := strings.Fields(tt.argv)
		hooked, dieOnTerm, cannot := uwsgiHooked(root, argv)
		named, _ := uwsgiNamesSocket(root, argv)
		if hooked != tt.hooked || dieOnTerm != tt.dieOnT || named != tt.named || cannot != tt.cannot {
			t.Errorf("%s: hooked %v, die-on-term %v, names a socket %v, cannot read %q; want %v, %v, %v, %q", tt.argv, hooked, dieOnTerm, named, cannot, tt.hooked, tt.dieOnT, tt.named, tt.cannot)
		}
	}
	// die-on-term without a value, in the section read.
	opts, _ := uwsgiIniOptions(root, []string{"/etc/uwsgi/sections.ini:staging"})
	dot := false
	for _, o := range opts {
		dot = dot || o.key == "die-on-term" && uwsgiFlag(o.value)
	}
	if !dot {
		t.Errorf("sections.ini:staging: a bare die-on-term is not read as set")
	}
}

// TestUWSGIIniIncludes: an ini file's ini = and inherit = options load
// another ini file, whose hook and sockets count; a loop ends.
func TestUWSGIIniIncludes(t *testing.T) {
	root := filepath.Join(testdata, "root")
	if hooked, _, cannot := uwsgiHooked(root, []string{"uwsgi", "--ini", "/etc/uwsgi/vassal.ini"}); !hooked || cannot != "" {
		t.Errorf("vassal.ini inherits hooked.ini: hooked %v, cannot read %q; want true, \"\"", hooked, cannot)
	}
	if named, _ := uwsgiNamesSocket(root, []string{"uwsgi", "--ini", "/etc/uwsgi/vassal.ini"}); !named {
		t.Errorf("vassal.ini inherits hooked.ini's http-socket; uwsgiNamesSocket says none")
	}
	if hooked, _, _ := uwsgiHooked(root, []string{"uwsgi", "--ini", "/etc/uwsgi/loop.ini"}); hooked {
		t.Errorf("loop.ini: hooked, want not")
	}
}

// TestUWSGIIniPlaceholders: %(NAME) in an ini value is a key set before
// it; the hook set through one counts.
func TestUWSGIIniPlaceholders(t *testing.T) {
	root := filepath.Join(testdata, "root")
	argv := []string{"uwsgi", "--ini", "/etc/uwsgi/placeholders.ini"}
	if hooked, _, cannot := uwsgiHooked(root, argv); !hooked || cannot != "" {
		t.Errorf("placeholders.ini: hooked %v, cannot read %q; want true, \"\"", hooked, cannot)
	}
	opts, _ := uwsgiIniOptions(root, argv[2:])
	for _, o := range opts {
		if o.key == "socket" && o.value != "127.0.0.1:8002" {
			t.Errorf("socket = %q, want 127.0.0.1:8002", o.value)
		}
	}
}

// TestExpandPlaceholdersEnds: a placeholder that names itself ends.
func TestExpandPlaceholdersEnds(t *testing.T) {
	if got := expandPlaceholders("%(a)", []iniOption{{key: "a", value: "%(a)"}}); got != "%(a)" {
		t.Errorf("got %q, want %%(a) kept", got)
	}
}
