package e2e

// End-to-end tests of the signals graceshim gets from outside: stray and
// fault signals sent with kill, a --map from a signal graceshim does not
// catch, the caller's ignored and blocked signals, and a closed log pipe.
// The child is a shell script that records what it gets in a file.

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// shim is the built graceshim running a command, with its output.
type shim struct {
	cmd    *exec.Cmd
	out    *syncBuffer
	exited chan struct{}
	err    error
}

// startShim starts graceshim with args (the launcher, when given, runs
// before it: launcher... graceshim args...).
func startShim(t *testing.T, launcher []string, args ...string) *shim {
	t.Helper()
	bin := needGraceshim(t)
	argv := append(append(append([]string(nil), launcher...), bin), args...)
	s := &shim{out: &syncBuffer{}, exited: make(chan struct{})}
	s.cmd = exec.Command(argv[0], argv[1:]...)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	// A child that outlives graceshim (the failure some tests look for)
	// holds the output pipe: Wait must not wait for it for ever.
	s.cmd.WaitDelay = 2 * time.Second
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NOTIFY_SOCKET=") && !strings.HasPrefix(kv, "INVOCATION_ID=") {
			s.cmd.Env = append(s.cmd.Env, kv)
		}
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("cannot start graceshim: %v", err)
	}
	go func() { s.err = s.cmd.Wait(); close(s.exited) }()
	t.Cleanup(func() {
		select {
		case <-s.exited:
		default:
			s.cmd.Process.Kill()
			<-s.exited
		}
	})
	return s
}

// wait waits for graceshim to exit and returns its exit code.
func (s *shim) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-s.exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("graceshim did not exit within 60s:\n%s", s.out)
	}
	var ee *exec.ExitError
	if s.err != nil && !errors.As(s.err, &ee) {
		t.Fatalf("graceshim: %v", s.err)
	}
	return s.cmd.ProcessState.ExitCode()
}

// trapScript is a child that appends the number of every signal in sigs
// it gets to got, exits 0 on TERM, and says it is ready by creating
// got.ready.
func trapScript(t *testing.T, got string, sigs ...syscall.Signal) string {
	t.Helper()
	var b strings.Builder
	for _, s := range sigs {
		fmt.Fprintf(&b, "trap 'echo %d >>%s' %d\n", s, got, s)
	}
	fmt.Fprintf(&b, "trap 'exit 0' TERM\n: >%s.ready\nwhile :; do sleep 0.02; done\n", got)
	return writeScript(t, filepath.Dir(got), "child.sh", b.String())
}

func waitFileHolds(t *testing.T, path, want string) string {
	t.Helper()
	var b []byte
	if !waitFor(20*time.Second, 5*time.Millisecond, func() bool {
		var err error
		b, err = os.ReadFile(path)
		return err == nil && strings.Contains(string(b), want)
	}) {
		t.Fatalf("%s does not hold %q within 20s: %q", path, want, b)
	}
	return string(b)
}

// TestE2EStraySignals: each signal the Go runtime would otherwise turn
// into a goroutine dump and exit 2 (leaving the child orphaned), sent with
// kill, is passed on to the child; graceshim runs on, and stops the child
// with TERM at the end.
func TestE2EStraySignals(t *testing.T) {
	t.Parallel()
	stray := []syscall.Signal{
		syscall.SIGABRT, syscall.SIGILL, syscall.SIGTRAP, syscall.SIGBUS, syscall.SIGFPE,
		syscall.SIGSEGV, syscall.SIGSTKFLT, syscall.SIGSYS, syscall.SIGALRM, syscall.SIGPWR,
	}
	got := filepath.Join(t.TempDir(), "got")
	s := startShim(t, nil, "--ready=exec", "--", trapScript(t, got, stray...))
	waitFileHolds(t, got+".ready", "")
	for _, sig := range stray {
		if err := s.cmd.Process.Signal(sig); err != nil {
			t.Fatalf("cannot send %v: %v\n%s", sig, err, s.out)
		}
		waitFileHolds(t, got, strconv.Itoa(int(sig))+"\n")
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := s.wait(t); code != 0 {
		t.Errorf("graceshim exited %d, want the child's 0:\n%s", code, s.out)
	}
	if strings.Contains(s.out.String(), "goroutine ") {
		t.Errorf("the Go runtime dumped its goroutines:\n%s", s.out)
	}
}

// TestE2EMapOnlyCaughtSignals: --map from a signal graceshim does not catch
// is a usage error (exit 2, one line, nothing started); from one it
// catches (ALRM, SYS) the translation takes effect.
func TestE2EMapOnlyCaughtSignals(t *testing.T) {
	t.Parallel()
	bin := needGraceshim(t)
	marker := filepath.Join(t.TempDir(), "started")
	for _, m := range []string{"URG:HUP", "PIPE:HUP", "XCPU:TERM", "CHLD:HUP", "VTALRM:HUP"} {
		cmd := exec.Command(bin, "--map", m, "--", "sh", "-c", ": >"+marker)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("--map %s: %v, want exit 2\n%s", m, err, out)
		}
		if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); len(lines) != 1 || !strings.Contains(lines[0], "not a signal graceshim catches") {
			t.Errorf("--map %s: want one line saying why, got %q", m, out)
		}
		if _, err := os.Stat(marker); err == nil {
			t.Fatalf("--map %s: the command was started", m)
		}
	}
	// ALRM becomes HUP; SYS and HUP swap (SYS once crashed graceshim).
	got := filepath.Join(t.TempDir(), "got")
	s := startShim(t, nil, "--ready=exec", "--map", "ALRM:USR1,1:31,31:1", "--", trapScript(t, got, syscall.SIGUSR1, syscall.SIGHUP, syscall.SIGSYS))
	waitFileHolds(t, got+".ready", "")
	for _, tt := range []struct{ send, want syscall.Signal }{
		{syscall.SIGALRM, syscall.SIGUSR1}, {syscall.SIGHUP, syscall.SIGSYS}, {syscall.SIGSYS, syscall.SIGHUP},
	} {
		before, _ := os.ReadFile(got)
		s.cmd.Process.Signal(tt.send)
		after := waitFileHolds(t, got, string(before)+strconv.Itoa(int(tt.want))+"\n")
		if !strings.HasSuffix(after, strconv.Itoa(int(tt.want))+"\n") {
			t.Errorf("sent %v: the child got %q, want %d", tt.send, after, tt.want)
		}
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	if code := s.wait(t); code != 0 {
		t.Errorf("graceshim exited %d, want 0:\n%s", code, s.out)
	}
}

// statusMask reads a signal mask line (SigIgn, SigBlk) from a copy of
// /proc/PID/status.
func statusMask(t *testing.T, status, field string) uint64 {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(status))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			m, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return m
		}
	}
	t.Fatalf("no %s in %q", field, status)
	return 0
}

func bit(s syscall.Signal) uint64 { return 1 << (uint(s) - 1) }

// TestE2ECallerDispositions: signals the caller ignored (INT, as a
// non-interactive shell does for a background job; TTOU) stay ignored for
// the child, as without graceshim; a blocked USR1 stays blocked; SIGPIPE
// reaches the child at its default although graceshim catches it. The
// launcher is perl (perl-base is part of every Debian system), which sets
// the dispositions and the mask and execs graceshim.
func TestE2ECallerDispositions(t *testing.T) {
	t.Parallel()
	perl := needCmd(t, "perl")
	dir := t.TempDir()
	status := filepath.Join(dir, "status")
	// The child's own status, copied by cat reading /proc/self: the shell
	// blocks every signal while it waits for a command, so a copy taken
	// by a command the shell waits for would show that instead.
	child := writeScript(t, dir, "child.sh", "exec cat /proc/self/status >"+status+"\n")
	launcher := []string{perl, "-e", `use POSIX; $SIG{INT}="IGNORE"; $SIG{TTOU}="IGNORE"; sigprocmask(SIG_BLOCK, POSIX::SigSet->new(SIGUSR1)); exec @ARGV or die "exec: $!"`, "--"}
	s := startShim(t, launcher, "--ready=exec", "--", child)
	if code := s.wait(t); code != 0 {
		t.Fatalf("graceshim exited %d:\n%s", code, s.out)
	}
	b, err := os.ReadFile(status)
	if err != nil {
		t.Fatal(err)
	}
	ign, blk := statusMask(t, string(b), "SigIgn"), statusMask(t, string(b), "SigBlk")
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTTOU} {
		if ign&bit(sig) == 0 {
			t.Errorf("signal %d: ignored by the caller, not by the child (SigIgn %x)", sig, ign)
		}
	}
	if ign&bit(syscall.SIGPIPE) != 0 {
		t.Errorf("the child ignores SIGPIPE (SigIgn %x)", ign)
	}
	if blk&bit(syscall.SIGUSR1) == 0 {
		t.Errorf("USR1: blocked by the caller, not for the child (SigBlk %x)", blk)
	}
	if !strings.Contains(s.out.String(), "INT, TTOU ignored by graceshim's caller") {
		t.Errorf("graceshim did not say which signals it left ignored:\n%s", s.out)
	}
}

// TestE2EClosedLogPipe: graceshim's output goes to a pipe whose reader
// went away (graceshim -- server 2>&1 | cat, and Ctrl-C on the pipeline).
// graceshim's next log line fails with EPIPE instead of killing it: it
// still stops the child on TERM and exits with the child's status.
func TestE2EClosedLogPipe(t *testing.T) {
	t.Parallel()
	bin := needGraceshim(t)
	got := filepath.Join(t.TempDir(), "got")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--ready=exec", "--", trapScript(t, got))
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil || !strings.Contains(line, "started") {
		t.Fatalf("first line %q, %v", line, err)
	}
	r.Close() // the reader goes
	waitFileHolds(t, got+".ready", "")
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("graceshim did not exit within 30s of TERM")
	}
	if err != nil {
		t.Errorf("graceshim: %v, want exit 0 (the child's TERM trap)", err)
	}
	if ws := cmd.ProcessState.Sys().(syscall.WaitStatus); ws.Signaled() {
		t.Errorf("graceshim killed by %v", ws.Signal())
	}
}

// TestE2EStopBounds: --drain-timeout=-5s is refused as --kill-timeout=-5s
// is (it once meant "no bound"); with the generic preset (TERM graceful
// and fast) --kill-timeout alone bounds the whole stop, as docker stop's
// timeout does, instead of the 5-minute drain timeout first.
func TestE2EStopBounds(t *testing.T) {
	t.Parallel()
	bin := needGraceshim(t)
	marker := filepath.Join(t.TempDir(), "started")
	out, err := exec.Command(bin, "--drain-timeout=-5s", "--", "sh", "-c", ": >"+marker).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "--drain-timeout must not be negative") {
		t.Errorf("--drain-timeout=-5s: %v, want exit 2 saying why:\n%s", err, out)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("--drain-timeout=-5s: the command was started")
	}

	dir := t.TempDir()
	child := writeScript(t, dir, "deaf.sh", "trap '' TERM\n: >"+dir+"/ready\nwhile :; do sleep 0.05; done\n")
	s := startShim(t, nil, "--ready=exec", "--kill-timeout=1s", "--", child)
	waitFileHolds(t, filepath.Join(dir, "ready"), "")
	began := time.Now()
	s.cmd.Process.Signal(syscall.SIGTERM)
	if code := s.wait(t); code != 137 {
		t.Errorf("graceshim exited %d, want 137 (SIGKILL after the kill timeout):\n%s", code, s.out)
	}
	t.Logf("figures: a TERM-deaf child stopped in %s with --kill-timeout=1s", time.Since(began).Round(10*time.Millisecond))
	if !strings.Contains(s.out.String(), "drain timeout 1s reached") || !strings.Contains(s.out.String(), "SIGKILL follows after the drain timeout (1s)") {
		t.Errorf("graceshim did not say the stop's bound:\n%s", s.out)
	}
}
