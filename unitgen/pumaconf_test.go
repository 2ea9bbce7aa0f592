package unitgen

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/graceshim/graceshim/signals"
)

// TestPumaListensSources: `unit --socket` reads puma's binds where puma 5
// reads them (see pumaListens): without -C, config/puma/ENV.rb or
// config/puma.rb in the unit's working directory, ENV from -e or the
// unit's RACK_ENV; -b on the command line replaces the file's binds.
// Each want was where Debian 12's puma 5.6.5 listened, and the test
// checks it again against the puma installed (CI installs it:
// .ci/install-deps): puma started in the working directory with that
// environment prints "Listening on http://ADDR" for each bind (on
// loopback ports only), and is killed once it says it is up.
func TestPumaListensSources(t *testing.T) {
	dir := t.TempDir()
	// Free loopback ports, so that a port another test holds is not
	// taken for puma's failure: P1 to P4 in the files and wants.
	ports := strings.NewReplacer("P1", freeLoopbackPort(t), "P2", freeLoopbackPort(t), "P3", freeLoopbackPort(t), "P4", freeLoopbackPort(t))
	files := map[string]string{
		"config.ru": "# A Rack app that says ok.\nrun ->(env) { [200, {\"content-type\" => \"text/plain\"}, [\"ok\\n\"]] }\n",
		// As a Rails app's config/puma.rb.
		"config/puma.rb":            "# Puma's settings for development.\nthreads 1, 5\nbind \"tcp://127.0.0.1:P1\"\nport P2, \"127.0.0.1\"\n",
		"config/puma/production.rb": "# Production: one socket.\nworkers 0\nbind 'tcp://127.0.0.1:P3'\n",
	}
	for name, text := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(ports.Replace(text)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	preset, _ := signals.Lookup("puma")
	for _, tc := range []struct {
		name string
		env  string // the unit's Environment=
		args []string
		want []string
	}{
		{"config/puma.rb", "", nil, []string{"127.0.0.1:P1", "127.0.0.1:P2"}},
		{"RACK_ENV picks config/puma/ENV.rb", "RACK_ENV=production", nil, []string{"127.0.0.1:P3"}},
		{"-e picks config/puma/ENV.rb", "", []string{"-e", "production"}, []string{"127.0.0.1:P3"}},
		{"-b replaces the file's binds", "", []string{"-b", "tcp://127.0.0.1:P4"}, []string{"127.0.0.1:P4"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := "[Service]\nExecStart=/usr/bin/puma\nWorkingDirectory=" + dir + "\n"
			if tc.env != "" {
				text += "Environment=" + tc.env + "\n"
			}
			u, _, err := Parse("app.service", []byte(text))
			if err != nil {
				t.Fatal(err)
			}
			var args, want []string
			for _, a := range tc.args {
				args = append(args, ports.Replace(a))
			}
			for _, w := range tc.want {
				want = append(want, ports.Replace(w))
			}
			argv := append([]string{"/usr/bin/puma"}, args...)
			ls, err := SocketListens(argv, preset, SocketOptions{Unit: u})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, l := range ls {
				got = append(got, l.Addr)
			}
			if !slices.Equal(got, want) {
				t.Errorf("listens %q, want %q", got, want)
			}
			puma, err := exec.LookPath("puma")
			if err != nil {
				t.Skip("puma is not installed: the want is not checked against it")
			}
			if printed := pumaBinds(t, puma, dir, tc.env, args); !slices.Equal(printed, want) {
				t.Errorf("puma listened on %q, want %q", printed, want)
			}
		})
	}
}

// freeLoopbackPort is a loopback port nothing listens on now.
func freeLoopbackPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// pumaBinds starts puma in dir and returns the addresses it says it
// listens on, killing it once it is up.
func pumaBinds(t *testing.T, puma, dir, env string, args []string) []string {
	t.Helper()
	cmd := exec.Command(puma, args...)
	cmd.Dir = dir
	// Unset, not empty: puma takes APP_ENV, RACK_ENV or RAILS_ENV when
	// set at all (an empty one too: Ruby's "" is true).
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "RACK_ENV" && k != "RAILS_ENV" && k != "APP_ENV" {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if env != "" {
		cmd.Env = append(cmd.Env, env)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	listening := regexp.MustCompile(`Listening on http://(\S+)`)
	var binds, seen []string
	guard := time.After(30 * time.Second) // only against a hang
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("puma %q ended before it was up:\n%s", args, strings.Join(seen, "\n"))
			}
			seen = append(seen, l)
			if m := listening.FindStringSubmatch(l); m != nil {
				binds = append(binds, m[1])
			}
			if strings.Contains(l, "Use Ctrl-C to stop") {
				return binds
			}
		case <-guard:
			t.Fatalf("puma %q: not up after 30 s:\n%s", args, strings.Join(seen, "\n"))
		}
	}
}

// TestSocketWorkingDirectoryUnknown: with a WorkingDirectory= graceshim
// cannot place (~, a specifier), where gunicorn and puma find their
// default configuration is not known: unit --socket says so and takes
// --listen instead.
func TestSocketWorkingDirectoryUnknown(t *testing.T) {
	for _, daemon := range []string{"gunicorn", "puma"} {
		u, _, err := Parse("app.service", []byte("[Service]\nWorkingDirectory=~\nExecStart=/usr/bin/"+daemon+"\n"))
		if err != nil {
			t.Fatal(err)
		}
		preset, _ := signals.Lookup(daemon)
		argv := []string{"/usr/bin/" + daemon, "app:app"}
		_, err = SocketListens(argv, preset, SocketOptions{Unit: u})
		if err == nil || !strings.Contains(err.Error(), "WorkingDirectory=~") || !strings.Contains(err.Error(), "--listen ADDR") {
			t.Errorf("%s: err = %v, want one naming WorkingDirectory=~ and --listen", daemon, err)
		}
		ls, err := SocketListens(argv, preset, SocketOptions{Unit: u, Listen: []string{"127.0.0.1:8000"}})
		if err != nil || len(ls) != 1 || ls[0].Addr != "127.0.0.1:8000" {
			t.Errorf("%s with --listen: %v, %v; want 127.0.0.1:8000", daemon, ls, err)
		}
	}
}
