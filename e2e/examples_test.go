package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestE2EExampleCommands runs, with the graceshim binary the tests built,
// every "graceshim unit ... > FILE" command line an example's README
// gives, exactly as written (sh reads it), and checks that the output is
// the committed examples/DIR/FILE: the command a README shows is the one
// that made the file, and regenerating it now gives the same unit.
func TestE2EExampleCommands(t *testing.T) {
	bin := needGraceshim(t)
	path := t.TempDir()
	if err := os.Symlink(bin, filepath.Join(path, "graceshim")); err != nil {
		t.Fatal(err)
	}
	readmes, err := filepath.Glob(repoPath("examples", "*", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, readme := range readmes {
		data, err := os.ReadFile(readme)
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Dir(readme)
		for _, line := range strings.Split(string(data), "\n") {
			if !strings.HasPrefix(line, "graceshim unit ") {
				continue
			}
			i := strings.LastIndex(line, " > ")
			if i < 0 {
				t.Errorf("%s: %q does not say which file it writes (> FILE)", readme, line)
				continue
			}
			file := strings.TrimSpace(line[i+3:])
			n++
			t.Run(filepath.Base(dir)+"/"+file, func(t *testing.T) {
				want, err := os.ReadFile(filepath.Join(dir, file))
				if err != nil {
					t.Fatalf("the README's command writes %s: %v", file, err)
				}
				work := t.TempDir()
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				cmd := exec.CommandContext(ctx, "sh", "-e", "-c", line)
				cmd.Dir = work
				cmd.Env = append(os.Environ(), "PATH="+path+":"+os.Getenv("PATH"))
				var stderr bytes.Buffer
				cmd.Stderr = &stderr
				if err := cmd.Run(); err != nil {
					t.Fatalf("%s: %v\n%s", line, err, stderr.String())
				}
				got, err := os.ReadFile(filepath.Join(work, file))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("examples/%s/%s is not what its README's command writes now:\n%s\n--- got\n%s\n--- committed\n%s", filepath.Base(dir), file, line, got, want)
				}
			})
		}
	}
	if n < 7 {
		t.Errorf("found %d example commands, want at least the 7 of the matrix's presets", n)
	}
}
