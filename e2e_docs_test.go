package main

// The documentation a newcomer meets: the man page and completions
// generated from the CLI, README.md kept true to the code, the examples,
// and the Debian package, installed and run for real.

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

var updateREADME = flag.Bool("update-readme", false, "rewrite README.md's generated tables (flags, exit codes)")

// graceshimOutput runs the test's graceshim binary and returns its
// standard output.
func graceshimOutput(t *testing.T, args ...string) []byte {
	t.Helper()
	out, err := exec.Command(needGraceshim(t), args...).Output()
	if err != nil {
		t.Fatalf("graceshim %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func TestDocsManPage(t *testing.T) {
	man := needCmd(t, "man")
	page := filepath.Join(t.TempDir(), "graceshim.1")
	if err := os.WriteFile(page, graceshimOutput(t, "man"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(man, "--warnings", "-l", page)
	cmd.Env = append(os.Environ(), "MANWIDTH=200", "MANPAGER=cat", "PAGER=cat")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("man -l graceshim.1: %v\n%s", err, stderr.String())
	}
	text := string(out)
	want := []string{"NAME", "graceshim - stop servers without losing a request", "SYNOPSIS", "DESCRIPTION", "EXIT STATUS", "ENVIRONMENT", "SEE ALSO"}
	for _, f := range runFlags() {
		want = append(want, "--"+f.Names()[0])
	}
	for _, c := range newApp().Commands {
		if !c.Hidden {
			want = append(want, c.Name)
		}
	}
	for _, line := range strings.Split(exitCodesHelp, "\n")[2:] {
		if code, _, ok := strings.Cut(strings.TrimSpace(line), " "); ok {
			want = append(want, code+": ")
		}
	}
	for _, w := range want {
		if !strings.Contains(text, w) {
			t.Errorf("the rendered man page lacks %q", w)
		}
	}
	if strings.Contains(text, "demo-server") {
		t.Errorf("the man page shows the hidden demo-server command")
	}
}

func TestDocsBashCompletion(t *testing.T) {
	bash := needCmd(t, "bash")
	dir := filepath.Dir(needGraceshim(t))
	script := filepath.Join(t.TempDir(), "graceshim.bash")
	if err := os.WriteFile(script, graceshimOutput(t, "completion", "bash"), 0o644); err != nil {
		t.Fatal(err)
	}
	if sc, err := exec.LookPath("shellcheck"); err == nil {
		if out, err := exec.Command(sc, "-s", "bash", script).CombinedOutput(); err != nil {
			t.Errorf("shellcheck: %v\n%s", err, out)
		}
	}
	for _, tc := range []struct {
		line string // the words typed, the last one being completed
		want string
	}{
		{"graceshim un", "unit"},
		{"graceshim de", "demo"},
		{"graceshim completion ", "bash zsh help h"},
		{"graceshim demo --c", "--compare"},
		{"graceshim --drain-t", "--drain-timeout"},
		{"graceshim unit --fr", "--from"},
	} {
		words := strings.Split(tc.line, " ")
		prog := fmt.Sprintf(`source %q; COMP_WORDS=(%s); COMP_CWORD=%d; _graceshim; echo "${COMPREPLY[*]}"`,
			script, quoteWords(words), len(words)-1)
		cmd := exec.Command(bash, "--norc", "--noprofile", "-c", prog)
		cmd.Env = append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		if got := strings.TrimSpace(string(out)); err != nil || got != tc.want {
			t.Errorf("completing %q: got %q (%v), want %q", tc.line, got, err, tc.want)
		}
	}
}

func quoteWords(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = strconv.Quote(w)
	}
	return strings.Join(q, " ")
}

func TestDocsZshCompletion(t *testing.T) {
	zsh := needCmd(t, "zsh")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "_graceshim"), graceshimOutput(t, "completion", "zsh"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(zsh, "-n", filepath.Join(dir, "_graceshim")).CombinedOutput(); err != nil {
		t.Fatalf("zsh -n _graceshim: %v\n%s", err, out)
	}
	// compinit finds the script on fpath by its #compdef line, as a
	// packaged one in /usr/share/zsh/vendor-completions is found.
	prog := fmt.Sprintf(`fpath=(%q $fpath); autoload -U compinit; compinit -u -d %q; print -r -- ${_comps[graceshim]}`, dir, filepath.Join(dir, "zcompdump"))
	out, err := exec.Command(zsh, "-f", "-c", prog).CombinedOutput()
	if got := strings.TrimSpace(string(out)); err != nil || got != "_graceshim" {
		t.Fatalf("zsh does not bind _graceshim to graceshim: %q (%v)", got, err)
	}
}

// flagsTable and exitCodesTable are README.md's generated tables.
func flagsTable() string {
	var b strings.Builder
	b.WriteString("| flag | environment | default | what it does |\n|---|---|---|---|\n")
	for _, f := range runFlags() {
		df := f.(cli.DocGenerationFlag)
		var names []string
		for _, n := range f.Names() {
			names = append(names, "`--"+n+"`")
		}
		def := "-"
		if d := strings.Trim(df.GetDefaultText(), `"`); d != "" {
			def = "`" + d + "`"
		}
		fmt.Fprintf(&b, "| %s | `%s` | %s | %s |\n", strings.Join(names, " or "), df.GetEnvVars()[0], def, df.GetUsage())
	}
	return b.String()
}

func exitCodesTable() string {
	var b strings.Builder
	b.WriteString("| code | meaning |\n|---|---|\n")
	for _, line := range strings.Split(strings.TrimSpace(exitCodesHelp), "\n")[2:] {
		code, text, _ := strings.Cut(strings.TrimSpace(line), " ")
		fmt.Fprintf(&b, "| %s | %s |\n", code, strings.TrimSpace(text))
	}
	return b.String()
}

// TestDocsREADME keeps README.md's flag and exit code tables equal to the
// code's; -update-readme rewrites them.
func TestDocsREADME(t *testing.T) {
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	for _, tc := range []struct{ marker, table string }{
		{"<!-- flags:", flagsTable()},
		{"<!-- exit codes:", exitCodesTable()},
	} {
		begin := strings.Index(readme, tc.marker)
		end := strings.Index(readme, tc.marker+" end -->")
		if begin < 0 || end < begin {
			t.Fatalf("README.md lacks the %s ... end --> block", tc.marker)
		}
		begin += strings.Index(readme[begin:], "\n") + 1
		if got := readme[begin:end]; got != tc.table {
			if *updateREADME {
				readme = readme[:begin] + tc.table + readme[end:]
				continue
			}
			t.Errorf("README.md's table after %s is out of date (go test -run TestDocsREADME . -update-readme); want:\n%s", tc.marker, tc.table)
		}
	}
	if *updateREADME && readme != string(data) {
		if err := os.WriteFile("README.md", []byte(readme), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDocsREADMECommandsInCI: the commands README.md gives a newcomer are
// the ones CI runs, byte for byte.
func TestDocsREADMECommandsInCI(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	run, err := os.ReadFile(".ci/run")
	if err != nil {
		t.Fatal(err)
	}
	lines := map[string]bool{}
	for _, l := range strings.Split(string(readme), "\n") {
		lines[l] = true
	}
	var cmds []string
	for _, l := range strings.Split(string(run), "\n") {
		if l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, "set ") || strings.HasPrefix(l, "cd ") {
			continue
		}
		cmds = append(cmds, l)
		if !lines[l] {
			t.Errorf(".ci/run runs %q, which README.md does not show on a line of its own", l)
		}
	}
	if len(cmds) != 2 {
		t.Errorf(".ci/run runs %d commands, want README's two: %q", len(cmds), cmds)
	}
}

// TestDocsExamples: each example says in one line what it shows, and
// names the files it has.
func TestDocsExamples(t *testing.T) {
	dirs, err := filepath.Glob("examples/*")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	for _, dir := range dirs {
		data, err := os.ReadFile(filepath.Join(dir, "README.md"))
		if err != nil {
			t.Errorf("%s: %v", dir, err)
			continue
		}
		paras := strings.Split(strings.TrimSpace(string(data)), "\n\n")
		if len(paras) < 2 || !strings.HasPrefix(paras[0], "# ") || strings.Contains(paras[1], "\n") || len(paras[1]) < 20 {
			t.Errorf("%s/README.md: want a title, then one line saying what the example shows", dir)
		}
		files, _ := os.ReadDir(dir)
		for _, f := range files {
			if f.Name() != "README.md" && !f.IsDir() && !strings.Contains(string(data), f.Name()) {
				t.Errorf("%s/README.md does not mention %s", dir, f.Name())
			}
		}
	}
}

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
	build := exec.Command("bash", ".ci/package-deb", version, outdir)
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
	example, err := os.ReadFile("examples/nginx/nginx.service")
	if err != nil {
		t.Fatal(err)
	}
	if want := bytes.ReplaceAll(example, []byte("/usr/local/bin/graceshim"), []byte("/usr/bin/graceshim")); !bytes.Equal(unit, want) {
		t.Errorf("the packaged nginx.service differs from examples/nginx/nginx.service beyond graceshim's path:\n%s", unit)
	}
	if analyze, err := exec.LookPath("systemd-analyze"); err == nil {
		if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
			if out, err := exec.Command(analyze, "verify", "--man=no", "/usr/share/doc/graceshim/examples/nginx.service").CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
				t.Errorf("systemd-analyze verify the packaged nginx.service: %v\n%s", err, out)
			}
		}
	}
}
