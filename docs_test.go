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
	"sync"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/graceshim/graceshim/unitgen"
)

var updateREADME = flag.Bool("update-readme", false, "rewrite README.md's generated tables (flags, exit codes)")

// docsBin is graceshim built once for the documentation tests, which run
// it as a user would (the completions call it back).
var docsBin = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "graceshim-docs-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "graceshim")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

func needGraceshim(t *testing.T) string {
	t.Helper()
	bin, err := docsBin()
	if err != nil {
		t.Fatalf("graceshim was not built: %v", err)
	}
	return bin
}

// needCmd skips when a tool the test reads the docs with is not installed.
func needCmd(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("needs %s, not installed", name)
	}
	return p
}

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

// TestConversionKnowsRunFlags: unit conversion reads graceshim's own run
// flags in an ExecStart= it converts again; its list must be the CLI's.
func TestConversionKnowsRunFlags(t *testing.T) {
	for _, f := range runFlags() {
		_, isBool := f.(*cli.BoolFlag)
		for _, n := range f.Names() {
			name := "--" + n
			if len(n) == 1 {
				name = "-" + n
			}
			takes, known := unitgen.GraceshimFlag(name)
			if !known || takes == isBool {
				t.Errorf("unitgen's list of graceshim flags: %s known=%v takes a value=%v, the CLI says takes a value=%v", name, known, takes, !isBool)
			}
		}
	}
}
