package e2e

// The Debian package, built by .ci/package-deb, installed and run for real.

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestE2EDebPackage builds the .deb with .ci/package-deb, installs it with
// dpkg, runs the installed graceshim (--version, the demo, the man page,
// the example unit) and removes it again. The other tests run their own
// build, never /usr/bin/graceshim.
func TestE2EDebPackage(t *testing.T) {
	needRoot(t)
	dpkg := needCmd(t, "dpkg")
	needCmd(t, "dpkg-deb")
	if out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", "graceshim").Output(); err == nil && strings.Contains(string(out), "installed") {
		t.Skip("a graceshim package is installed on this machine already; not replacing it")
	}
	const version = "0.0.0~e2e"
	outdir := t.TempDir()
	build := exec.Command("bash", repoPath(".ci/package-deb"), version, outdir)
	out, err := build.Output()
	if err != nil {
		t.Fatalf(".ci/package-deb: %v\n%s", err, out)
	}
	deb := strings.TrimSpace(string(out))
	if filepath.Dir(deb) != outdir || !strings.HasPrefix(filepath.Base(deb), "graceshim_"+version+"_") {
		t.Fatalf(".ci/package-deb printed %q, want a .deb in %s", deb, outdir)
	}
	contents, err := exec.Command("dpkg-deb", "-c", deb).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{
		"./usr/bin/graceshim",
		"./usr/share/man/man1/graceshim.1.gz",
		"./usr/share/bash-completion/completions/graceshim",
		"./usr/share/zsh/vendor-completions/_graceshim",
		"./usr/share/doc/graceshim/examples/nginx.service",
	} {
		if !bytes.Contains(contents, []byte(" "+p+"\n")) {
			t.Errorf("the package lacks %s:\n%s", p, contents)
		}
	}
	if fields, err := exec.Command("dpkg-deb", "-f", deb, "Package", "Version").Output(); err != nil || string(fields) != "Package: graceshim\nVersion: "+version+"\n" {
		t.Errorf("control fields: %q (%v)", fields, err)
	}

	if out, err := exec.Command(dpkg, "-i", deb).CombinedOutput(); err != nil {
		t.Fatalf("dpkg -i: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command(dpkg, "--purge", "graceshim").CombinedOutput(); err != nil {
			t.Errorf("dpkg --purge graceshim: %v\n%s", err, out)
		}
		if _, err := os.Stat("/usr/bin/graceshim"); err == nil {
			t.Errorf("/usr/bin/graceshim is still there after dpkg --purge")
		}
	})

	if out, err := exec.Command("/usr/bin/graceshim", "--version").Output(); err != nil || !strings.Contains(string(out), version) {
		t.Errorf("graceshim --version: %q (%v), want %s", out, err, version)
	}
	demo := exec.Command("/usr/bin/graceshim", "demo", "--port", strconv.Itoa(freePort(t)))
	out, err = demo.CombinedOutput()
	if m := demoSummary.FindStringSubmatch(string(out)); err != nil || m == nil || m[1] != "10" || m[2] != "10" {
		t.Errorf("the installed graceshim demo: %v\n%s", err, out)
	}
	requireNoDemoServer(t, demo.Process.Pid)
	if man, err := exec.LookPath("man"); err == nil {
		cmd := exec.Command(man, "-l", "/usr/share/man/man1/graceshim.1.gz")
		cmd.Env = append(os.Environ(), "MANPAGER=cat", "PAGER=cat")
		if out, err := cmd.Output(); err != nil || !strings.Contains(string(out), "EXIT STATUS") {
			t.Errorf("man -l the installed page: %v\n%s", err, out)
		}
	}
	bash := exec.Command("bash", "--norc", "--noprofile", "-c",
		`source /usr/share/bash-completion/completions/graceshim; COMP_WORDS=(graceshim un); COMP_CWORD=1; _graceshim; echo "${COMPREPLY[*]}"`)
	bash.Env = append(os.Environ(), "PATH=/usr/bin:/bin")
	if out, err := bash.Output(); err != nil || strings.TrimSpace(string(out)) != "unit" {
		t.Errorf("the installed bash completion of 'graceshim un': %q (%v), want unit", out, err)
	}
	// The packaged example is examples/nginx/nginx.service for the
	// packaged binary's path, and systemd accepts it.
	unit, err := os.ReadFile("/usr/share/doc/graceshim/examples/nginx.service")
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile(repoPath("examples/nginx/nginx.service"))
	if err != nil {
		t.Fatal(err)
	}
	if want := bytes.ReplaceAll(example, []byte("/usr/local/bin/graceshim"), []byte("/usr/bin/graceshim")); !bytes.Equal(unit, want) {
		t.Errorf("the packaged nginx.service differs from examples/nginx/nginx.service beyond graceshim's path:\n%s", unit)
	}
	if analyze, err := exec.LookPath("systemd-analyze"); err == nil {
		if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
			// verify also loads the host's other units and prints their
			// warnings (FACTS.md §7: Debian's unicorn.service): only the
			// exit code and lines naming this unit count.
			const path = "/usr/share/doc/graceshim/examples/nginx.service"
			out, err := exec.Command(analyze, "verify", "--man=no", path).CombinedOutput()
			if err != nil || bytes.Contains(out, []byte("nginx.service")) {
				t.Errorf("systemd-analyze verify the packaged nginx.service: %v\n%s", err, out)
			}
		}
	}
}
