package sysv

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

const corpusDir = "../../testdata/initscripts/fix"

// fixReport is what "graceshim initscript fix FILE" prints for a corpus
// script: the diff and the summary, or the error.
func fixReport(name string, src []byte) (string, *Result, error) {
	r, err := Fix(name, src, FixOptions{})
	if err != nil {
		return "error: " + err.Error() + "\n", nil, err
	}
	var b bytes.Buffer
	b.WriteString(Diff("a/"+name, "b/"+name, src, r.Output))
	if err := Summary(&b, name, r); err != nil {
		return "", nil, err
	}
	return b.String(), r, nil
}

func corpus(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(corpusDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && !strings.Contains(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	if len(names) < 10 {
		t.Fatalf("corpus has %d scripts, want the whole corpus", len(names))
	}
	return names
}

// TestFixGolden compares each corpus script's diff and summary with its
// golden file (go test -run TestFixGolden -update rewrites them).
func TestFixGolden(t *testing.T) {
	for _, name := range corpus(t) {
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(filepath.Join(corpusDir, name))
			if err != nil {
				t.Fatal(err)
			}
			got, _, _ := fixReport(name, src)
			golden := filepath.Join(corpusDir, name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("fix %s differs from %s:\n%s", name, golden, Diff("want", "got", want, []byte(got)))
			}
		})
	}
}

// TestFixOutputs checks each fixed corpus script: the diff applies with
// patch(1) and gives the output, the output parses (bash -n), and fixing
// it again finds nothing: a fixed script is left alone.
func TestFixOutputs(t *testing.T) {
	patch, err := exec.LookPath("patch")
	if err != nil {
		t.Skip("patch is not installed")
	}
	for _, name := range corpus(t) {
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(filepath.Join(corpusDir, name))
			if err != nil {
				t.Fatal(err)
			}
			r, err := Fix(name, src, FixOptions{})
			var unsure *UnsureError
			if errors.As(err, &unsure) {
				return // covered by the golden file
			}
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			file := filepath.Join(dir, name)
			if err := os.WriteFile(file, src, 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(patch, "-s", file)
			cmd.Stdin = strings.NewReader(Diff("a/"+name, "b/"+name, src, r.Output))
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("patch: %v\n%s", err, out)
			}
			patched, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if string(patched) != string(r.Output) {
				t.Errorf("the diff applied with patch does not give the fixed script:\n%s", Diff("fixed", "patched", r.Output, patched))
			}
			if out, err := exec.Command("bash", "-n", file).CombinedOutput(); err != nil {
				t.Errorf("bash -n on the fixed script: %v\n%s", err, out)
			}
			checkShellcheck(t, file, src)
			again, err := Fix(name, r.Output, FixOptions{})
			if err != nil {
				t.Fatalf("fixing the fixed script: %v", err)
			}
			if again.Changed() {
				t.Errorf("fixing the fixed script changed it again: %v", again.Changes)
			}
		})
	}
}

func TestFixBadInput(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  string
		want error
	}{
		{"binary", "\x7fELF\x02\x01\x01\x00\x00\x00", ErrNotScript},
		{"no shebang", "stop() { killproc nginx; }\n", ErrNotScript},
		{"python", "#!/usr/bin/python3\nprint('stop')\n", ErrNotScript},
		{"invalid utf-8", "#!/bin/sh\n\xff\xfe\n", ErrNotScript},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Fix(tc.name, []byte(tc.src), FixOptions{})
			if !errors.Is(err, tc.want) {
				t.Errorf("Fix: got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestFixUnsure(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		lines     string
	}{
		{"no stop at all", "#!/bin/sh\necho hello\n", "1-2"},
		{"signal from elsewhere", "#!/bin/sh\n. /etc/rc.d/init.d/functions\nstop() {\n    killproc -p /run/x.pid x $SIG\n}\n", "4"},
		{"retry from elsewhere", "#!/bin/sh\ndo_stop() {\n  start-stop-daemon --stop --retry $SCHED --pidfile /run/x.pid\n}\n", "3"},
		{"no pid file", "#!/bin/sh\n. /etc/rc.d/init.d/functions\nstop() {\n    killproc $prog -QUIT\n}\n", "4"},
		{"unknown daemon", "#!/bin/sh\n. /etc/rc.d/init.d/functions\nstop() {\n    killproc -p /run/x.pid x\n}\n", "4"},
		{"template", "#!/bin/sh\n. /etc/rc.d/init.d/functions\nnginx=/usr/sbin/%PROVIDES%\nstop() {\n    killproc -p /run/n.pid $nginx\n}\n", "5"},
		{"wrapper with argument", "#!/bin/sh\nd() { start-stop-daemon --stop --signal $1 --pidfile /run/nginx.pid; }\ncase $1 in\nstop) d TERM ;;\nesac\n", "2, 4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Fix(tc.name, []byte(tc.src), FixOptions{})
			var unsure *UnsureError
			if !errors.As(err, &unsure) {
				t.Fatalf("Fix: got %v, want an *UnsureError", err)
			}
			if got := lineList(unsure.Lines); got != tc.lines {
				t.Errorf("lines looked at: got %s, want %s (%v)", got, tc.lines, err)
			}
		})
	}
}

// TestFixShapes: rewrites that must stay valid shell wherever the stop
// command stands.
func TestFixShapes(t *testing.T) {
	for _, tc := range []struct{ name, stop, want string }{
		{"assignment prefix", "LSB=1 killproc -p $pidfile $prog", `    if graceshim_stop "$pidfile" "$nginx" QUIT "$STOP_TIMEOUT" only; then success "$prog shutdown"; else failure "$prog shutdown"; fi`},
		{"in a condition", "if killproc -p $pidfile $prog; then rm -f $lockfile; fi", `    if if graceshim_stop "$pidfile" "$nginx" QUIT "$STOP_TIMEOUT" only; then success "$prog shutdown"; else failure "$prog shutdown"; fi; then rm -f $lockfile; fi`},
		{"in a list", "killproc -p $pidfile $prog && rm -f $lockfile", `    if graceshim_stop "$pidfile" "$nginx" QUIT "$STOP_TIMEOUT" only; then success "$prog shutdown"; else failure "$prog shutdown"; fi && rm -f $lockfile`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := "#!/bin/sh\n. /etc/rc.d/init.d/functions\nnginx=/usr/sbin/nginx\nprog=nginx\npidfile=/run/nginx.pid\nlockfile=/var/lock/subsys/nginx\nstop() {\n    " + tc.stop + "\n}\n"
			r, err := Fix("nginx", []byte(src), FixOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(r.Output), "\n"+tc.want+"\n") {
				t.Errorf("fixed stop is not %q:\n%s", tc.want, r.Output)
			}
			file := filepath.Join(t.TempDir(), "nginx")
			if err := os.WriteFile(file, r.Output, 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command("bash", "-n", file).CombinedOutput(); err != nil {
				t.Errorf("bash -n: %v\n%s", err, out)
			}
			checkShellcheck(t, file, []byte(src))
		})
	}
}

// TestFixPresetOverride: --preset wins over what the script says.
func TestFixPresetOverride(t *testing.T) {
	src := "#!/bin/sh\n. /etc/rc.d/init.d/functions\nprog=myproxy\npidfile=/run/myproxy.pid\nstop() {\n    killproc -p $pidfile $prog\n}\n"
	r, err := Fix("myproxy", []byte(src), FixOptions{Preset: "haproxy", StopTimeout: 60})
	if err != nil {
		t.Fatal(err)
	}
	out := string(r.Output)
	for _, want := range []string{`if graceshim_stop "$pidfile" myproxy USR1 "$STOP_TIMEOUT" only; then success "$prog shutdown"; else failure "$prog shutdown"; fi`, "STOP_TIMEOUT=${STOP_TIMEOUT:-60}", "[ -f /etc/sysconfig/myproxy ] && . /etc/sysconfig/myproxy"} {
		if !strings.Contains(out, want) {
			t.Errorf("fixed script lacks %q:\n%s", want, out)
		}
	}
	if _, err := Fix("x", []byte(src), FixOptions{Preset: "nosuch"}); err == nil {
		t.Error("unknown preset: no error")
	}
}

// TestFixGenerated: every generated script is already right.
func TestFixGenerated(t *testing.T) {
	for name, o := range genCases(t) {
		t.Run(name, func(t *testing.T) {
			script, err := Generate(o)
			if err != nil {
				t.Fatal(err)
			}
			r, err := Fix(name, script, FixOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if r.Changed() {
				t.Errorf("fix changed a generated script: %v", r.Changes)
			}
		})
	}
}

// checkShellcheck runs shellcheck on the fixed script and on the original:
// the fix must not add a finding the original did not have (shipped
// scripts have findings of their own, which a fix leaves alone).
func checkShellcheck(t *testing.T, fixed string, orig []byte) {
	t.Helper()
	sc, err := exec.LookPath("shellcheck")
	if err != nil {
		t.Error("shellcheck is not installed (CI installs it)")
		return
	}
	codes := func(file string) map[string]int {
		out, _ := exec.Command(sc, "-f", "gcc", file).Output()
		n := map[string]int{}
		for _, l := range strings.Split(string(out), "\n") {
			if i := strings.LastIndex(l, "[SC"); i >= 0 {
				n[l[i:]]++
			}
		}
		return n
	}
	origFile := filepath.Join(t.TempDir(), filepath.Base(fixed))
	if err := os.WriteFile(origFile, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	before, after := codes(origFile), codes(fixed)
	for code, n := range after {
		if n > before[code] {
			out, _ := exec.Command(sc, "-f", "gcc", fixed).Output()
			t.Errorf("the fix adds shellcheck finding %s (%d, was %d):\n%s", code, n, before[code], out)
		}
	}
}

// TestFixFollowsFunctions: a stop done in a function whose name says
// nothing (called from stop and restart) is found and fixed once; an
// exit-4 message names what the script does instead of claiming there is
// no stop.
func TestFixFollowsFunctions(t *testing.T) {
	src := "#!/bin/sh\n. /lib/lsb/init-functions\nnginx_down() {\n\tstart-stop-daemon --stop --retry TERM/30/KILL/5 --pidfile /run/nginx.pid --name nginx\n}\ncase \"$1\" in\nstop) nginx_down ;;\nrestart) nginx_down; start ;;\nesac\n"
	r, err := Fix("nginx", []byte(src), FixOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := `start-stop-daemon --stop --retry "QUIT/$STOP_TIMEOUT/TERM/5/KILL/5" --pidfile /run/nginx.pid --name nginx`
	if strings.Count(string(r.Output), want) != 1 {
		t.Errorf("want the stop in nginx_down() rewritten once to %q:\n%s", want, r.Output)
	}

	// Signalled only outside any action: the message says where.
	src = "#!/bin/sh\nhalt_it() {\n\tkill -QUIT $(cat /run/nginx.pid)\n}\ncase \"$1\" in\nstop) echo stopping ;;\nesac\n"
	_, err = Fix("nginx", []byte(src), FixOptions{})
	var unsure *UnsureError
	if !errors.As(err, &unsure) || !strings.Contains(err.Error(), "kill on line 3 in halt_it()") {
		t.Errorf("got %v, want an *UnsureError naming kill on line 3 in halt_it()", err)
	}
}

// TestFixPidofOnlyWithoutPidfile: a rewritten stop falls back to pidof
// only where the original did (killproc without -p). A stop that named a
// pid file (killproc -p, kill $(cat F), unicorn's sig) never used pidof,
// which matches every instance of the binary on the host, so its call
// passes "only".
func TestFixPidofOnlyWithoutPidfile(t *testing.T) {
	for name, wantOnly := range map[string]bool{
		"nginx-redhat-killproc":    true,
		"nginx-redhat-kill-cat":    true,
		"unicorn-sig-wrapper":      true,
		"php-fpm-redhat":           true,
		"nginx-redhat-quit-nowait": false,
		"haproxy-redhat":           false,
	} {
		src, err := os.ReadFile(filepath.Join(corpusDir, name))
		if err != nil {
			t.Fatal(err)
		}
		r, err := Fix(name, src, FixOptions{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		calls := 0
		for _, l := range strings.Split(string(r.Output), "\n") {
			i := strings.Index(l, "graceshim_stop ")
			if i < 0 || strings.HasPrefix(strings.TrimSpace(l), "#") {
				continue
			}
			calls++
			call := l[i:]
			if j := strings.IndexAny(call, ";&|"); j >= 0 {
				call = call[:j]
			}
			if got := strings.HasSuffix(strings.TrimSpace(call), " only"); got != wantOnly {
				t.Errorf("%s: %q passes only=%v, want %v", name, call, got, wantOnly)
			}
		}
		if calls == 0 {
			t.Errorf("%s: no graceshim_stop call in the fixed script", name)
		}
	}
}

// TestFixKillCatFailsStop runs the stop of a fixed "kill $(cat F); rm -f
// F" script for real against a process that does not go (kill is a shell
// function that sends nothing, standing in for a process that survives
// KILL): the stop must exit 1 and leave the lock and pid files, not go on
// to remove them and report the daemon stopped.
func TestFixKillCatFailsStop(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("needs bash")
	}
	dir := t.TempDir()
	pidfile, lockfile := filepath.Join(dir, "nginx.pid"), filepath.Join(dir, "nginx.lock")
	src, err := os.ReadFile(filepath.Join(corpusDir, "nginx-redhat-kill-cat"))
	if err != nil {
		t.Fatal(err)
	}
	src = []byte(strings.NewReplacer("/var/run/nginx.pid", pidfile, "/var/lock/subsys/nginx", lockfile).Replace(string(src)))
	r, err := Fix("nginx", src, FixOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// No Red Hat functions library here (the stop does not use it), and a
	// sleep stands in for nginx.
	script := strings.NewReplacer(". /etc/rc.d/init.d/functions", "kill() { :; }", "/usr/sbin/nginx QUIT", "/usr/bin/sleep QUIT").Replace(string(r.Output))
	d := exec.Command("sleep", "300")
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { d.Process.Kill(); d.Wait() }()
	for _, f := range []string{pidfile, lockfile} {
		if err := os.WriteFile(f, []byte(strconv.Itoa(d.Process.Pid)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bash, "-c", script, "nginx", "stop")
	cmd.Env = append(os.Environ(), "STOP_TIMEOUT=1")
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("stop of a daemon that did not go: %v, want exit 1:\n%s", err, out)
	}
	for _, f := range []string{pidfile, lockfile} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("%s removed although the daemon runs: %v\n%s", f, err, out)
		}
	}
}
