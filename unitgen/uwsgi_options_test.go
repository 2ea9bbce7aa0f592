package unitgen

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/graceshim/graceshim/signals"
)

// uwsgiTree writes uWSGI configurations in the style of Debian's
// /etc/uwsgi/apps-available (an [uwsgi] section, plugins = python3,
// options one per line) under dir.
func uwsgiTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"app.ini":  "; The site, serving HTTP on the socket systemd passes.\n[uwsgi]\nplugins = python3\nmaster = true\nhttp-socket = 127.0.0.1:9090\nprotocol = http\nlisten = 1024\n",
		"base.ini": "; What every app on this host shares.\n[uwsgi]\nplugins = python3\nmaster = true\nprotocol = http\n",
		"site.ini": "[uwsgi]\nhttp-socket = 127.0.0.1:9091\n",
		"app.yaml": "# The same app in YAML.\nuwsgi:\n  master: true\n  socket: 127.0.0.1:3031\n",
		"app.json": "{\"uwsgi\": {\"socket\": \"127.0.0.1:3032\"}}\n",
		// An ini that loads others, as a vassal ini includes a shared one.
		"vassal.ini":   "[uwsgi]\ninclude = D/app.ini\nprocesses = 2\n",
		"vassal-y.ini": "[uwsgi]\nmaster = true\ninclude = D/app.yaml\n",
	}
	for name, text := range files {
		text = strings.ReplaceAll(text, "D/", dir+"/")
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestUWSGIListensFiles: `unit --socket` reads the sockets of the files a
// uWSGI command line loads, the way uwsgi 2.0 loads them (uwsgiOptions),
// and says plainly which file it cannot read. Each case's want was what
// Debian 12's uWSGI 2.0.21 loaded, and the test checks it again against
// the uwsgi installed (CI installs it: .ci/install-deps): `uwsgi ARGS
// --get socket --get http-socket` prints the sockets of the options it
// loaded, and exits.
func TestUWSGIListensFiles(t *testing.T) {
	for _, tc := range []struct {
		name string
		argv []string // D is the directory of the files
		want []string // the addresses, or for cannot the file's name
		// cannot: the file graceshim does not read, relative to D.
		cannot string
	}{
		{"--ini", []string{"--ini", "D/app.ini"}, []string{"127.0.0.1:9090"}, ""},
		{"--include", []string{"--include", "D/app.ini"}, []string{"127.0.0.1:9090"}, ""},
		{"a bare FILE.ini", []string{"D/app.ini"}, []string{"127.0.0.1:9090"}, ""},
		{"a bare FILE.ini after a flag", []string{"--master", "--vacuum", "D/app.ini"}, []string{"127.0.0.1:9090"}, ""},
		{"--inherit and a bare FILE.ini", []string{"--inherit", "D/base.ini", "D/site.ini"}, []string{"127.0.0.1:9091"}, ""},
		{"an option's argument is no file to load", []string{"--touch-reload", "D/app.ini", "--http-socket", "127.0.0.1:9092", "--protocol=http"}, []string{"127.0.0.1:9092"}, ""},
		{"-sADDR", []string{"-s127.0.0.1:3033"}, []string{"127.0.0.1:3033"}, ""},
		{"a bare FILE.yaml", []string{"--master", "D/app.yaml"}, []string{"127.0.0.1:3031"}, "app.yaml"},
		{"--include FILE.json", []string{"--include", "D/app.json"}, []string{"127.0.0.1:3032"}, "app.json"},
		{"include = FILE.ini in an ini", []string{"--ini", "D/vassal.ini"}, []string{"127.0.0.1:9090"}, ""},
		{"include = FILE.yaml in an ini", []string{"--ini", "D/vassal-y.ini"}, []string{"127.0.0.1:3031"}, "app.yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := uwsgiTree(t)
			argv := []string{"/usr/bin/uwsgi"}
			for _, a := range tc.argv {
				argv = append(argv, strings.Replace(a, "D/", dir+"/", 1))
			}
			ls, err := uwsgiListens("", argv, false, "")
			if tc.cannot != "" {
				var se *SocketError
				if !errors.As(err, &se) || !se.unread || !strings.Contains(err.Error(), filepath.Join(dir, tc.cannot)) || !strings.Contains(err.Error(), "--listen ADDR") {
					t.Errorf("err = %v, want one that names %s and --listen", err, tc.cannot)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, l := range ls {
					got = append(got, l.Addr)
				}
				if !slices.Equal(got, tc.want) {
					t.Errorf("listens %q, want %q", got, tc.want)
				}
			}
			uwsgi, err := exec.LookPath("uwsgi")
			if err != nil {
				t.Skip("uwsgi is not installed: the want is not checked against it")
			}
			// --get prints an option's values and exits (uwsgi --help).
			cmd := exec.Command(uwsgi, append(argv[1:], "--get", "socket", "--get", "http-socket")...)
			cmd.Dir = t.TempDir()
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("uwsgi %q: %v\n%s", argv[1:], err, out)
			}
			loaded := strings.Fields(string(out))
			if !slices.Equal(loaded, tc.want) {
				t.Errorf("uwsgi %q loaded the sockets %q, want %q", argv[1:], loaded, tc.want)
			}
		})
	}
}

// TestUWSGIOptionsArgs: which words of a command line are options'
// arguments and which are files uWSGI loads (getopt_long's rules, see
// uwsgiOptions), without the files.
func TestUWSGIOptionsArgs(t *testing.T) {
	for _, tc := range []struct {
		argv   string
		keys   string
		cannot string
	}{
		{"uwsgi --master --socket :3031 --die-on-term", "master= socket=:3031 die-on-term=", ""},
		{"uwsgi -M -s :3031 -l128", "master= socket=:3031 listen=128", ""},
		{"uwsgi --socket=:3031 --log-date /etc/u.yaml", "socket=:3031 log-date=", "/etc/u.yaml"},
		{"uwsgi --pidfile /run/u.pid --chdir /srv/app --yaml /etc/u.yaml", "pidfile=/run/u.pid chdir=/srv/app yaml=/etc/u.yaml", "/etc/u.yaml"},
		// An option graceshim does not know, before a config file's
		// name: whether uwsgi loads it depends on the option.
		{"uwsgi --some-flag /etc/u.ini", "some-flag=/etc/u.ini", "/etc/u.ini"},
		{"uwsgi app.py --http-socket :80", "http-socket=:80", ""},
	} {
		opts, cannot := uwsgiOptions(t.TempDir(), strings.Fields(tc.argv))
		var keys []string
		for _, o := range opts {
			keys = append(keys, o.key+"="+o.value)
		}
		if strings.Join(keys, " ") != tc.keys || cannot != tc.cannot {
			t.Errorf("%s: options %q, cannot %q; want %q, %q", tc.argv, keys, cannot, tc.keys, tc.cannot)
		}
	}
}

// TestUWSGIRelativeIni: a relative --ini, and a relative include = in
// it, are read in the unit's WorkingDirectory=, where uWSGI opens them
// (measured with uWSGI 2.0.21, see uwsgiOptionsIn), by unit --socket,
// unit --from and lint alike.
func TestUWSGIRelativeIni(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "deploy"), 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		// As an app's own deploy/uwsgi.ini beside its code, which
		// includes the team's shared settings by a relative name.
		"deploy/uwsgi.ini": "[uwsgi]\nmaster = true\nplugins = python3\nmodule = app:application\nsocket = 127.0.0.1:18951\ninclude = deploy/common.ini\n",
		"deploy/common.ini": "[uwsgi]\nlisten = 64\n" +
			"hook-master-start = unix_signal:15 gracefully_kill_them_all\n",
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	unit := "[Service]\nWorkingDirectory=" + dir + "\nExecStart=/usr/bin/uwsgi --ini deploy/uwsgi.ini\nKillSignal=SIGTERM\nKillMode=mixed\nTimeoutStopSec=1h\n"
	u, _, err := Parse("app.service", []byte(unit))
	if err != nil {
		t.Fatal(err)
	}
	preset, _ := signals.Lookup("uwsgi")
	argv := []string{"/usr/bin/uwsgi", "--ini", "deploy/uwsgi.ini"}
	ls, err := SocketListens(argv, preset, SocketOptions{Unit: u})
	if err != nil {
		t.Fatalf("SocketListens: %v", err)
	}
	if len(ls) != 1 || ls[0].Addr != "127.0.0.1:18951" || ls[0].Backlog != 64 {
		t.Errorf("listens %+v, want 127.0.0.1:18951 with backlog 64 (from the included file)", ls)
	}
	for _, f := range Lint(u, LintOptions{SystemdVersion: 252}) {
		if strings.Contains(f.Problem, "cannot read") || strings.Contains(f.Problem, "no graceful stop") {
			t.Errorf("lint: %s", f.Problem)
		}
	}
	if w := uwsgiConvertWarning(u, argv); w != "" {
		t.Errorf("unit --from warns: %s", w)
	}
}
