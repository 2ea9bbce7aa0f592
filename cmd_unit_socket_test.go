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
