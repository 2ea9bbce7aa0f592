package haproxyconf

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// filesTree writes the files of TestFiles under dir: each says which it
// is with a ".notice" line, which haproxy 2.6 prints as it parses the
// file ("parsing [FILE:1]: 'loaded NAME'"), so that the real haproxy can
// tell which files it loaded and in which order. Laid out as Debian's
// and Fedora's packages lay out theirs: /etc/haproxy/haproxy.cfg, and a
// conf.d of numbered fragments.
func filesTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"haproxy.cfg":           "main",
		"extra.cfg":             "extra",
		"-f":                    "dash-f", // a file named like a flag, after --
		"conf.d/10-web.cfg":     "10-web",
		"conf.d/2-api.cfg":      "2-api",
		"conf.d/Z-last.cfg":     "Z-last",
		"conf.d/.hidden.cfg":    "hidden",
		"conf.d/old.cfg.cfg":    "cfg-cfg",
		"conf.d/web.cfg.bak":    "bak",
		"conf.d/README":         "readme",
		"conf.d/sub.cfg/in.cfg": "in-sub",
		"shared/peers-fragment": "linked",
	}
	for name, label := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("# "+name+"\n.notice \"loaded "+label+"\"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A link to a regular file is loaded (stat, not lstat).
	if err := os.Symlink(filepath.Join(dir, "shared/peers-fragment"), filepath.Join(dir, "conf.d/link.cfg")); err != nil {
		t.Fatal(err)
	}
	return dir
}

var (
	loadedRe    = regexp.MustCompile(`'loaded ([^']+)'`) // haproxy's notice
	fileLabelRe = regexp.MustCompile(`"loaded ([^"]+)"`) // the file's line
)

// labels reads the "loaded NAME" of each file.
func labels(t *testing.T, files []string) []string {
	t.Helper()
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			out = append(out, "unreadable "+f)
			continue
		}
		out = append(out, string(fileLabelRe.FindSubmatch(b)[1]))
	}
	return out
}

// TestFiles: the files an haproxy command line loads, in order. Each
// case's want is what haproxy 2.6.12 loaded, and the test checks it again
// against the haproxy installed (CI installs it: .ci/install-deps), run
// with -c in the case's directory: the files it parsed are the ".notice"
// lines it printed.
func TestFiles(t *testing.T) {
	for _, tc := range []struct {
		name  string
		argv  []string // D is the directory of the files
		want  []string
		glued bool
	}{
		{"two files in order", []string{"-Ws", "-f", "D/extra.cfg", "-f", "D/haproxy.cfg", "-p", "/run/haproxy.pid"}, []string{"extra", "main"}, false},
		{"a directory's *.cfg files in byte order", []string{"-f", "D/haproxy.cfg", "-f", "D/conf.d"}, []string{"main", "10-web", "2-api", "Z-last", "linked"}, false},
		{"everything after -- is a file", []string{"-Ws", "-f", "D/haproxy.cfg", "--", "D/extra.cfg", "D/-f"}, []string{"main", "extra", "dash-f"}, false},
		{"-C before the files", []string{"-C", "D", "-f", "haproxy.cfg", "-f", "conf.d"}, []string{"main", "10-web", "2-api", "Z-last", "linked"}, false},
		{"-C after the files", []string{"-f", "haproxy.cfg", "-C", "D", "--", "extra.cfg"}, []string{"main", "extra"}, false},
		{"-p takes the next word, even --", []string{"-f", "D/haproxy.cfg", "-p", "--", "-f", "D/extra.cfg"}, []string{"main", "extra"}, false},
		{"-L, -x, -S and -sf take theirs", []string{"-L", "-f", "-x", "/run/h.sock", "-S", "/run/m.sock", "-sf", "12", "13", "-f", "D/haproxy.cfg"}, []string{"main"}, false},
		{"-fNAME takes the next word", []string{"-fD/extra.cfg", "D/haproxy.cfg"}, []string{"main"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filesTree(t)
			argv := []string{"haproxy"}
			for _, a := range tc.argv {
				switch {
				case a == "D":
					a = dir
				case strings.HasPrefix(a, "D/"), strings.HasPrefix(a, "-fD/"):
					a = strings.Replace(a, "D", dir, 1)
				}
				argv = append(argv, a)
			}
			files, glued := Files("", argv)
			got := labels(t, files)
			if !slices.Equal(got, tc.want) {
				t.Errorf("Files(%q) = %q, which load %q; want %q", argv, files, got, tc.want)
			}
			if (len(glued) > 0) != tc.glued {
				t.Errorf("glued = %q, want glued %v", glued, tc.glued)
			}
			haproxy, err := exec.LookPath("haproxy")
			if err != nil {
				t.Skip("haproxy is not installed: the want is not checked against it")
			}
			cmd := exec.Command(haproxy, append([]string{"-c"}, argv[1:]...)...)
			cmd.Dir = t.TempDir() // relative names are not found by chance
			out, _ := cmd.CombinedOutput()
			var loaded []string
			for _, m := range loadedRe.FindAllStringSubmatch(string(out), -1) {
				loaded = append(loaded, m[1])
			}
			if !slices.Equal(loaded, tc.want) {
				t.Errorf("haproxy -c %q loaded %q, want %q; its output:\n%s", argv[1:], loaded, tc.want, out)
			}
		})
	}
}

// TestFilesRoot: under --root, the files are looked up under root and
// named as haproxy names them.
func TestFilesRoot(t *testing.T) {
	root := t.TempDir()
	for _, n := range []string{"etc/haproxy/conf.d/b.cfg", "etc/haproxy/conf.d/a.cfg"} {
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(n)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := Files(root, []string{"haproxy", "-f", "/etc/haproxy/haproxy.cfg", "-f", "/etc/haproxy/conf.d"})
	want := []string{"/etc/haproxy/haproxy.cfg", "/etc/haproxy/conf.d/a.cfg", "/etc/haproxy/conf.d/b.cfg"}
	if !slices.Equal(got, want) {
		t.Errorf("Files under a root = %q, want %q", got, want)
	}
}

// TestEnvPeer: -L names the local peer wherever it is before "--", and
// its argument is the next word, as for every two-word flag (measured
// with 2.6.12: with "-Lfoo bar", `.if streq("$HAPROXY_LOCALPEER",bar)`
// held).
func TestEnvPeer(t *testing.T) {
	for _, tc := range []struct {
		argv []string
		want string
	}{
		{[]string{"haproxy", "-L", "lb1", "-f", "/h.cfg"}, "lb1"},
		{[]string{"haproxy", "-f", "/h.cfg", "--", "-L", "lb1"}, ""},
		{[]string{"haproxy", "-p", "-L", "-f", "/h.cfg"}, ""},
		{[]string{"haproxy", "-Lfoo", "bar", "-f", "/h.cfg"}, "bar"},
	} {
		env := Env(tc.argv, nil)
		got, _ := Lookup(env, "HAPROXY_LOCALPEER")
		want := tc.want
		if want == "" {
			want, _ = os.Hostname()
		}
		if got != want {
			t.Errorf("Env(%q): HAPROXY_LOCALPEER=%q, want %q", tc.argv, got, want)
		}
	}
}
