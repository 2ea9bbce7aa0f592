package unitgen

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/graceshim/graceshim/signals"
)

// TestGunicornListensSources: `unit --socket` reads gunicorn's bind and
// backlog from where gunicorn 20 reads them, in its order (see
// gunicornListens): the unit's working directory's gunicorn.conf.py
// without -c, GUNICORN_CMD_ARGS from its Environment=, the command line.
// Each want was what gunicorn 20.1 printed, and the test checks it again
// against the gunicorn installed (CI installs it: .ci/install-deps):
// `gunicorn --print-config ARGS app:app` in the working directory with
// that environment prints the bind and backlog it would use.
func TestGunicornListensSources(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		// As a project's gunicorn.conf.py beside its code.
		"gunicorn.conf.py": "# Settings for the app server.\nimport multiprocessing\n\nbind = \"127.0.0.1:18941\"\nworkers = multiprocessing.cpu_count() * 2 + 1\nbacklog = 512\n",
		"other.py":         "bind = ['127.0.0.1:18944', 'unix:/run/gunicorn-test.sock']\n",
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	preset, _ := signals.Lookup("gunicorn")
	for _, tc := range []struct {
		name    string
		wd, env string // WorkingDirectory= (D for dir), GUNICORN_CMD_ARGS
		args    []string
		want    []string
		backlog int
	}{
		{"the working directory's gunicorn.conf.py", "D", "", nil, []string{"127.0.0.1:18941"}, 512},
		{"-b over the file's bind, not its backlog", "D", "", []string{"-b", "127.0.0.1:18945"}, []string{"127.0.0.1:18945"}, 512},
		{"-c in GUNICORN_CMD_ARGS", "", "-c D/other.py", nil, []string{"127.0.0.1:18944", "/run/gunicorn-test.sock"}, 0},
		{"--bind in GUNICORN_CMD_ARGS over the file", "D", "--bind=127.0.0.1:18942", nil, []string{"127.0.0.1:18942"}, 512},
		{"the command line over GUNICORN_CMD_ARGS", "D", "--bind=127.0.0.1:18942 --backlog 64", []string{"--bind=127.0.0.1:18943"}, []string{"127.0.0.1:18943"}, 64},
		{"no working directory: /", "", "", nil, []string{"127.0.0.1:8000"}, 0},
		// gunicorn splits GUNICORN_CMD_ARGS with shlex: quotes go.
		{"quoted words in GUNICORN_CMD_ARGS", "", "--bind '127.0.0.1:18946' --backlog '32' -c 'D/other.py'", nil, []string{"127.0.0.1:18946"}, 32},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wd := strings.ReplaceAll(tc.wd, "D", dir)
			env := strings.ReplaceAll(tc.env, "D", dir)
			text := "[Service]\nExecStart=/usr/bin/gunicorn app:app\n"
			if wd != "" {
				text += "WorkingDirectory=" + wd + "\n"
			}
			if env != "" {
				text += "Environment=\"GUNICORN_CMD_ARGS=" + env + "\"\n"
			}
			u, _, err := Parse("app.service", []byte(text))
			if err != nil {
				t.Fatal(err)
			}
			argv := append(append([]string{"/usr/bin/gunicorn"}, tc.args...), "app:app")
			ls, err := SocketListens(argv, preset, SocketOptions{Unit: u})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, l := range ls {
				got = append(got, l.Addr)
				if l.Backlog != tc.backlog {
					t.Errorf("%s: backlog %d, want %d", l.Addr, l.Backlog, tc.backlog)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("listens %q, want %q", got, tc.want)
			}
			gunicorn, err := exec.LookPath("gunicorn")
			if err != nil {
				t.Skip("gunicorn is not installed: the want is not checked against it")
			}
			cmd := exec.Command(gunicorn, append(append([]string{"--print-config"}, tc.args...), "app:app")...)
			cmd.Dir = "/"
			if wd != "" {
				cmd.Dir = wd
			}
			cmd.Env = append(os.Environ(), "GUNICORN_CMD_ARGS="+env)
			// It prints the settings before it imports the app, which
			// is not there: its exit status says nothing here.
			out, _ := cmd.CombinedOutput()
			bind := regexp.MustCompile(`(?m)^bind\s+= \[(.*)\]$`).FindSubmatch(out)
			backlog := regexp.MustCompile(`(?m)^backlog\s+= (\d+)$`).FindSubmatch(out)
			if bind == nil || backlog == nil {
				t.Fatalf("no bind or backlog in gunicorn --print-config:\n%s", out)
			}
			var printed []string
			for _, m := range regexp.MustCompile(`'([^']*)'`).FindAllSubmatch(bind[1], -1) {
				printed = append(printed, strings.TrimPrefix(string(m[1]), "unix:"))
			}
			if !slices.Equal(printed, tc.want) {
				t.Errorf("gunicorn binds %q, want %q", printed, tc.want)
			}
			// gunicorn's own default backlog is 2048; the socket unit
			// writes DefaultBacklog then (0 here).
			if n, _ := strconv.Atoi(string(backlog[1])); n != tc.backlog && !(tc.backlog == 0 && n == 2048) {
				t.Errorf("gunicorn's backlog %d, want %d", n, tc.backlog)
			}
		})
	}
}

// TestShlexSplit: what Python 3.11's shlex.split gives for each line
// (checked with python3 -c 'import shlex,sys; print(shlex.split(sys.argv[1]))').
func TestShlexSplit(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{`--bind 127.0.0.1:8000   --workers 3`, `--bind|127.0.0.1:8000|--workers|3`, ""},
		{`--name 'my app' --access-logformat "%(h)s \"%(r)s\""`, `--name|my app|--access-logformat|%(h)s "%(r)s"`, ""},
		{`-c /srv/app\ dir/conf.py`, `-c|/srv/app dir/conf.py`, ""},
		{`--bind "a\b"`, `--bind|a\b`, ""},
		{`''`, ``, ""},
		{`--name 'open`, "", "no closing quotation"},
		{`--name x\`, "", "no escaped character"},
	} {
		got, err := shlexSplit(tc.in)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("shlexSplit(%s): err %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || strings.Join(got, "|") != tc.want || (tc.want == "" && len(got) != 1) {
			t.Errorf("shlexSplit(%s) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// TestUserUnitWorkDir: a user unit's daemon runs in the user's home
// unless WorkingDirectory= says otherwise (systemd.exec(5)), so gunicorn
// finds its gunicorn.conf.py there, and ~ and %h are that home.
func TestUserUnitWorkDir(t *testing.T) {
	home := t.TempDir()
	units := filepath.Join(home, ".config/systemd/user")
	if err := os.MkdirAll(units, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(home, "app"), 0o755); err != nil {
		t.Fatal(err)
	}
	conf := "# The app's settings.\nbind = \"127.0.0.1:18947\"\nworkers = 2\n"
	for _, d := range []string{home, filepath.Join(home, "app")} {
		if err := os.WriteFile(filepath.Join(d, "gunicorn.conf.py"), []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	preset, _ := signals.Lookup("gunicorn")
	for _, tc := range []struct{ wd, want string }{
		{"", home},
		{"WorkingDirectory=~\n", home},
		{"WorkingDirectory=%h/app\n", filepath.Join(home, "app")},
		{"WorkingDirectory=/\n", "/"},
	} {
		path := filepath.Join(units, "app.service")
		u, _, err := Parse(path, []byte("[Service]\nExecStart=/usr/bin/gunicorn app:app\n"+tc.wd))
		if err != nil {
			t.Fatal(err)
		}
		if got := (SocketOptions{Unit: u}).workDir(); got != tc.want {
			t.Errorf("%q: working directory %q, want %q", tc.wd, got, tc.want)
		}
		if tc.want == "/" {
			continue
		}
		ls, err := SocketListens([]string{"/usr/bin/gunicorn", "app:app"}, preset, SocketOptions{Unit: u})
		if err != nil || len(ls) != 1 || ls[0].Addr != "127.0.0.1:18947" {
			t.Errorf("%q: listens %+v, %v; want the home's gunicorn.conf.py bind 127.0.0.1:18947", tc.wd, ls, err)
		}
	}
	// A system unit's default stays /.
	u, _, _ := Parse("/etc/systemd/system/app.service", []byte("[Service]\nExecStart=/usr/bin/gunicorn app:app\n"))
	if got := (SocketOptions{Unit: u}).workDir(); got != "/" {
		t.Errorf("system unit: working directory %q, want /", got)
	}
}
