package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// TestWriteBoth: the pair is written whole or not at all.
func TestWriteBoth(t *testing.T) {
	var log bytes.Buffer
	c := cli.NewContext(&cli.App{ErrWriter: &log}, nil, nil)
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			return "<" + err.Error() + ">"
		}
		return string(b)
	}

	dir := t.TempDir()
	svc, sock := filepath.Join(dir, "a.service"), filepath.Join(dir, "a.socket")
	if err := writeBoth(c, []string{svc, sock}, [][]byte{[]byte("s1"), []byte("k1")}, false); err != nil {
		t.Fatal(err)
	}
	if read(svc) != "s1" || read(sock) != "k1" {
		t.Fatalf("got %q and %q", read(svc), read(sock))
	}

	// The second cannot be staged (its directory is missing): the first
	// is not written either, and no temp file is left.
	missing := filepath.Join(dir, "missing", "a.socket")
	err := writeBoth(c, []string{svc, missing}, [][]byte{[]byte("s2"), []byte("k2")}, true)
	if err == nil || !strings.Contains(err.Error(), "nothing written") {
		t.Fatalf("err = %v, want a failure that wrote nothing", err)
	}
	if read(svc) != "s1" {
		t.Errorf("a.service = %q after a failed pair, want the old s1", read(svc))
	}

	// One exists, no force: refused before anything is written.
	other := filepath.Join(dir, "b.service")
	err = writeBoth(c, []string{other, sock}, [][]byte{[]byte("s3"), []byte("k3")}, false)
	if err == nil || !strings.Contains(err.Error(), "a.socket exists") {
		t.Fatalf("err = %v, want a.socket exists", err)
	}
	if _, err := os.Stat(other); err == nil {
		t.Error("b.service written although a.socket was refused")
	}

	// With force both are replaced, the old ones kept as .bak.
	if err := writeBoth(c, []string{svc, sock}, [][]byte{[]byte("s4"), []byte("k4")}, true); err != nil {
		t.Fatal(err)
	}
	if read(svc) != "s4" || read(sock) != "k4" || read(svc+".bak") != "s1" || read(sock+".bak") != "k1" {
		t.Errorf("after --force: %q %q, backups %q %q", read(svc), read(sock), read(svc+".bak"), read(sock+".bak"))
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if got := strings.Join(names, " "); got != "a.service a.service.bak a.socket a.socket.bak" {
		t.Errorf("files %q: temp files left or missing", got)
	}
	if !strings.Contains(log.String(), "kept the old") {
		t.Errorf("no word of the backups: %q", log.String())
	}
}

// TestUnitSocketUnreadable: `unit --socket` for a daemon whose sockets
// are in a file graceshim does not read, or read otherwise than the
// daemon does, says so in one line naming the file, exits 7 (exitSockets,
// as its other refusals) and writes nothing. uWSGI loads a bare app.yaml
// as YAML (measured with uWSGI 2.0.21: `uwsgi --master app.yaml --get
// socket` printed its socket); haproxy takes the word after -f as the
// file, so -f/etc/h.cfg loads a file named after the next word (2.6.12:
// "Cannot open configuration file/directory -p").
func TestUnitSocketUnreadable(t *testing.T) {
	dir := t.TempDir()
	yaml := filepath.Join(dir, "app.yaml")
	if err := os.WriteFile(yaml, []byte("uwsgi:\n  socket: 127.0.0.1:3031\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		argv []string
		want string
	}{
		{"uwsgi-yaml", []string{"/usr/bin/uwsgi", "--master", yaml}, yaml + " as YAML"},
		{"uwsgi-yaml-include", []string{"/usr/bin/uwsgi", "--include", yaml}, yaml + " as YAML"},
		{"haproxy-glued", []string{"/usr/sbin/haproxy", "-Ws", "-f/etc/haproxy/haproxy.cfg", "-p", "/run/haproxy.pid"}, "write -f /etc/haproxy/haproxy.cfg"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, tc.name)
			var stdout, stderr bytes.Buffer
			app := newApp()
			app.Writer, app.ErrWriter = &stdout, &stderr
			err := app.Run(append([]string{"graceshim", "unit", "--socket", "--output", out, "--"}, tc.argv...))
			if code := exitCode(err); code != exitSockets {
				t.Fatalf("exit %d (%v), want %d", code, err, exitSockets)
			}
			if msg := err.Error(); !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
				t.Errorf("message %q: want one line with %q", msg, tc.want)
			}
			for _, p := range []string{out + ".service", out + ".socket"} {
				if _, err := os.Stat(p); err == nil {
					t.Errorf("%s written", p)
				}
			}
			if stdout.Len() > 0 {
				t.Errorf("standard output: %q", stdout.String())
			}
		})
	}
}
