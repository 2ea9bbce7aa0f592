package sysv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/graceshim/graceshim/signals"
)

const genDir = "../../testdata/initscripts/gen"

func mustPreset(t *testing.T, name string) signals.Preset {
	t.Helper()
	p, err := signals.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// genCases are the generated scripts kept as golden files.
func genCases(t *testing.T) map[string]GenOptions {
	nginx := []string{"/usr/sbin/nginx", "-c", "/etc/nginx/nginx.conf"}
	foreground := []string{"/usr/sbin/nginx", "-c", "/etc/nginx/nginx.conf", "-g", "daemon off;"}
	return map[string]GenOptions{
		"nginx-redhat-shim":   {Style: StyleRedHat, Shim: true, Argv: foreground, Preset: mustPreset(t, "nginx")},
		"nginx-redhat-noshim": {Style: StyleRedHat, Argv: nginx, Preset: mustPreset(t, "nginx")},
		"nginx-lsb-shim":      {Style: StyleLSB, Shim: true, Argv: foreground, Preset: mustPreset(t, "nginx"), ShimFlags: []string{"--stall-timeout=1m"}},
		"nginx-lsb-noshim":    {Style: StyleLSB, Argv: nginx, Preset: mustPreset(t, "nginx"), StopTimeout: 120},
		"httpd-redhat-noshim": {Style: StyleRedHat, Argv: []string{"/usr/sbin/httpd", "-DFOREGROUND_NOT"}, Preset: mustPreset(t, "httpd")},
		"redis-lsb-shim":      {Style: StyleLSB, Shim: true, Argv: []string{"/usr/bin/redis-server", "/etc/redis/redis.conf", "--supervised", "no"}, Preset: mustPreset(t, "redis"), Name: "redis"},
		"php-fpm-redhat-shim": {Style: StyleRedHat, Shim: true, Argv: []string{"/usr/sbin/php-fpm", "--nodaemonize"}, Preset: mustPreset(t, "php-fpm"), KillTimeout: 5},
	}
}

// TestGenerateGolden compares generated scripts with their golden files
// and runs the real validators on them: bash -n (and dash's sh -n for
// LSB scripts) and shellcheck.
func TestGenerateGolden(t *testing.T) {
	for name, o := range genCases(t) {
		t.Run(name, func(t *testing.T) {
			got, err := Generate(o)
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join(genDir, name+".golden")
			if *update {
				if err := os.MkdirAll(genDir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			} else {
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatalf("%v (run with -update to create it)", err)
				}
				if string(got) != string(want) {
					t.Errorf("generated %s differs from %s:\n%s", name, golden, Diff("want", "got", want, got))
				}
			}
			validate(t, name, got, o.Style)
		})
	}
}

// validate runs bash -n, sh -n for LSB scripts, and shellcheck on a script.
func validate(t *testing.T, name string, script []byte, style Style) {
	t.Helper()
	file := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(file, script, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("bash", "-n", file).CombinedOutput(); err != nil {
		t.Errorf("bash -n %s: %v\n%s", name, err, out)
	}
	if style == StyleLSB {
		if sh, err := exec.LookPath("dash"); err == nil {
			if out, err := exec.Command(sh, "-n", file).CombinedOutput(); err != nil {
				t.Errorf("dash -n %s: %v\n%s", name, err, out)
			}
		}
	}
	shellcheck, err := exec.LookPath("shellcheck")
	if err != nil {
		t.Skip("shellcheck is not installed (CI installs it)")
	}
	if out, err := exec.Command(shellcheck, file).CombinedOutput(); err != nil {
		t.Errorf("shellcheck %s: %v\n%s", name, err, out)
	}
}

func TestGenerateErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    GenOptions
		want string
	}{
		{"no command", GenOptions{}, "missing command"},
		{"relative", GenOptions{Argv: []string{"nginx"}}, "absolute path"},
		{"quoting", GenOptions{Argv: []string{"/usr/sbin/nginx"}, Name: "my nginx"}, "must not need quoting"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Generate(tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Generate: got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
