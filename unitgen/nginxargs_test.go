package unitgen

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/graceshim/graceshim/signals"
)

// TestNginxConfigArgs: lint and `unit --socket` read the configuration
// file nginx reads, found by nginx's own option parsing (ngx_get_options:
// -c, -p and -g take the rest of their word or the next word, flags
// cluster) and a relative -c under the prefix. Each want is the file
// nginx 1.22 read, and the test checks it again against the nginx
// installed (CI installs it: .ci/install-deps): `nginx -T ARGS` names
// the file it read first ("# configuration file PATH:").
func TestNginxConfigArgs(t *testing.T) {
	dir := t.TempDir()
	site := "# A site of its own, as a server's config under -c.\n" +
		"pid " + dir + "/nginx.pid;\nerror_log " + dir + "/error.log;\n" +
		"events {\n\tworker_connections 64;\n}\nhttp {\n\taccess_log off;\n\tserver {\n\t\tlisten 127.0.0.1:18931;\n\t}\n}\n"
	if err := os.WriteFile(filepath.Join(dir, "site.conf"), []byte(site), 0o644); err != nil {
		t.Fatal(err)
	}
	preset, _ := signals.Lookup("nginx")
	for _, tc := range []struct {
		argv []string // D is the directory
	}{
		{[]string{"-c", "D/site.conf"}},
		{[]string{"-cD/site.conf"}},
		{[]string{"-qcD/site.conf"}},
		{[]string{"-q", "-c", "D/site.conf", "-g", "daemon off;"}},
		{[]string{"-p", "D/", "-c", "site.conf"}},
		{[]string{"-pD", "-csite.conf"}},
	} {
		argv := []string{"/usr/sbin/nginx"}
		for _, a := range tc.argv {
			argv = append(argv, strings.Replace(a, "D", dir, 1))
		}
		want := filepath.Join(dir, "site.conf")
		if got := nginxConfig("", argv).path; got != want {
			t.Errorf("nginxConfig(%q) reads %s, want %s", argv, got, want)
		}
		ls, err := SocketListens(argv, preset, SocketOptions{})
		if err != nil || len(ls) != 1 || ls[0].Addr != "127.0.0.1:18931" {
			t.Errorf("SocketListens(%q) = %v, %v; want 127.0.0.1:18931", argv, ls, err)
		}
		nginx, err := exec.LookPath("nginx")
		if err != nil {
			continue // the want is not checked against nginx
		}
		cmd := exec.Command(nginx, append([]string{"-T"}, argv[1:]...)...)
		cmd.Dir = t.TempDir()
		out, err := cmd.CombinedOutput()
		m := regexp.MustCompile(`(?m)^# configuration file (.*):$`).FindSubmatch(out)
		if err != nil || m == nil || filepath.Clean(string(m[1])) != want {
			t.Errorf("nginx -T %q: %v, read %q; want %s\n%s", argv[1:], err, m, want, out)
		}
	}
	// Without -p, a relative -c is under the compiled-in prefix, not the
	// configuration's directory (measured with Debian's nginx 1.22:
	// "nginx -t -c nginx.conf" opened /usr/share/nginx/nginx.conf).
	if got := nginxConfig("", []string{"/usr/sbin/nginx", "-c", "nginx.conf"}).path; got != "/usr/share/nginx/nginx.conf" {
		t.Errorf("-c nginx.conf reads %s, want /usr/share/nginx/nginx.conf", got)
	}
}

// TestNginxIncludeHidden: an include glob leaves out names starting with
// '.', as glob(3) does for nginx (an editor's .swp, a .disabled copy);
// checked against the nginx installed with nginx -T, which names every
// file it read.
func TestNginxIncludeHidden(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"nginx.conf":                 "pid " + dir + "/nginx.pid;\nerror_log " + dir + "/error.log;\nevents {\n}\nhttp {\n\taccess_log off;\n\tinclude " + dir + "/sites-enabled/*;\n}\n",
		"sites-enabled/site":         "server {\n\tlisten 127.0.0.1:18981;\n}\n",
		"sites-enabled/.site.swp":    "server {\n\tlisten 127.0.0.1:18982;\n}\n",
		"sites-enabled/.old/nothing": "",
	}
	for name, text := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	preset, _ := signals.Lookup("nginx")
	argv := []string{"/usr/sbin/nginx", "-c", filepath.Join(dir, "nginx.conf")}
	ls, err := SocketListens(argv, preset, SocketOptions{})
	if err != nil || len(ls) != 1 || ls[0].Addr != "127.0.0.1:18981" {
		t.Errorf("SocketListens = %v, %v; want only 127.0.0.1:18981", ls, err)
	}
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		t.Skip("nginx is not installed: not checked against it")
	}
	out, err := exec.Command(nginx, "-T", "-c", filepath.Join(dir, "nginx.conf")).CombinedOutput()
	read := regexp.MustCompile(`(?m)^# configuration file (.*):$`).FindAllSubmatch(out, -1)
	if err != nil || len(read) != 2 || string(read[1][1]) != filepath.Join(dir, "sites-enabled/site") {
		t.Errorf("nginx -T: %v, read %q; want nginx.conf and sites-enabled/site\n%s", err, read, out)
	}
}
