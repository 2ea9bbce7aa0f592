package supervisor

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/graceshim/graceshim/signals"
)

// TestRunPassesStraySignals: fault signals sent with kill, ALRM and PWR
// reach the server; graceshim does not crash on them.
func TestRunPassesStraySignals(t *testing.T) {
	ev, done, _ := start(t, "server", nil)
	ev.wait("ready ")
	for _, sig := range []syscall.Signal{
		syscall.SIGABRT, syscall.SIGILL, syscall.SIGTRAP, syscall.SIGBUS, syscall.SIGFPE,
		syscall.SIGSEGV, syscall.SIGSTKFLT, syscall.SIGSYS, syscall.SIGALRM, syscall.SIGPWR,
	} {
		selfSignal(t, sig)
		ev.wait("got " + signals.Name(sig))
	}
	selfSignal(t, syscall.SIGTERM)
	ev.wait("got QUIT")
	if err := result(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestRunNeverPassesPIPEOrURG: SIGPIPE (graceshim's own broken pipe) and
// SIGURG (the Go runtime's preemption signal) never reach the server.
// The server is a shell that records every signal it traps; USR1, sent
// after them, marks the point by which they would have arrived (a shell
// runs the traps of all pending signals together, and graceshim passes
// signals on in the order it gets them).
func TestRunNeverPassesPIPEOrURG(t *testing.T) {
	dir := t.TempDir()
	got := filepath.Join(dir, "got")
	script := `trap 'echo URG >>` + got + `' URG
trap 'echo PIPE >>` + got + `' PIPE
trap 'echo USR1 >>` + got + `' USR1
trap 'exit 0' TERM
: >` + got + `.ready
while :; do sleep 0.02; done`
	t.Setenv("GRACESHIM_TEST_CHILD", "")
	_, done, _ := start(t, "", func(o *Options) {
		o.Argv = []string{"sh", "-c", script}
		o.Ready = ReadyExec
		o.Preset, _ = signals.Lookup("generic")
		o.Map = nil
	})
	waitFile(t, got+".ready", "")
	selfSignal(t, syscall.SIGURG)
	selfSignal(t, syscall.SIGPIPE)
	selfSignal(t, syscall.SIGUSR1)
	b := waitFile(t, got, "USR1")
	if strings.Contains(b, "URG") || strings.Contains(b, "PIPE") {
		t.Errorf("the server got %q; want USR1 alone", b)
	}
	selfSignal(t, syscall.SIGTERM)
	if err := result(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// waitFile waits until the file exists and holds want, and returns it.
func waitFile(t *testing.T, path, want string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if err == nil && strings.Contains(string(b), want) {
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not hold %q within 20s (%q, %v)", path, want, b, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRunStopBeforeStart: a TERM that came while graceshim started (caught
// early, before Run) is a stop: the command is not started, and the
// result is death by TERM (exit 143).
func TestRunStopBeforeStart(t *testing.T) {
	CatchEarly()
	selfSignal(t, syscall.SIGTERM)
	// Delivery to the channel is asynchronous: wait for it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		early.mu.Lock()
		n := len(early.ch)
		early.mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("TERM not caught within 10s")
		}
		time.Sleep(time.Millisecond)
	}
	marker := filepath.Join(t.TempDir(), "started")
	t.Setenv("GRACESHIM_TEST_CHILD", "")
	_, done, _ := start(t, "", func(o *Options) {
		o.Argv = []string{"sh", "-c", ": >" + marker + "; sleep 30"}
		o.Ready = ReadyExec
	})
	err := result(t, done)
	var st *ExitStatus
	if !errors.As(err, &st) || st.Code() != 143 {
		t.Fatalf("Run = %v, want exit 143", err)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("the command was started")
	}
}

// TestRunMapRejectsUncaught: a map from a signal graceshim does not catch
// is refused before anything starts.
func TestRunMapRejectsUncaught(t *testing.T) {
	for _, in := range []string{"URG:HUP", "PIPE:HUP", "XCPU:TERM", "CHLD:HUP"} {
		m, err := signals.ParseMap(in)
		if err != nil {
			t.Fatal(err)
		}
		err = Run(t.Context(), Options{Argv: []string{"true"}, Map: m, Log: NewLogger(testWriter{t}, LevelDebug)})
		if !errors.Is(err, ErrBadOption) {
			t.Errorf("Run with --map %s = %v, want ErrBadOption", in, err)
		}
	}
}

// TestRunSameSignalBound: when the graceful and the fast signal are the
// same (generic: TERM), the drain timeout is the stop's bound: SIGKILL
// follows it, without a second TERM and the kill timeout.
func TestRunSameSignalBound(t *testing.T) {
	t.Setenv("GRACESHIM_TEST_GRACEFUL", "TERM")
	generic, _ := signals.Lookup("generic")
	ev, done, _ := start(t, "server:stubborn", func(o *Options) {
		o.Preset = generic
		o.Map = nil
		o.DrainTimeout = 300 * time.Millisecond
		o.KillTimeout = time.Hour // never reached
	})
	ev.wait("ready ")
	selfSignal(t, syscall.SIGTERM)
	ev.wait("got TERM")
	err := result(t, done)
	var st *ExitStatus
	if !errors.As(err, &st) || st.Code() != 137 {
		t.Fatalf("Run = %v, want exit 137 (SIGKILL after the drain timeout)", err)
	}
	if _, rest := ev.waitAny("got "); rest != "" {
		t.Errorf("the server got %s too; want one TERM, then SIGKILL", rest)
	}
}

// TestRunUpgradeFollowsNewMaster: the old master's workers drain on after
// it exits and are reparented to graceshim with the new master; graceshim
// follows the new master the upgrade found, not the first child it sees.
func TestRunUpgradeFollowsNewMaster(t *testing.T) {
	log := &syncWriter{b: &strings.Builder{}}
	ev, done, cancel := start(t, "server:upgradable-linger", func(o *Options) {
		o.Log = NewLogger(log, LevelDebug)
	})
	ev.wait("worker ") // the old master's, which lingers
	old, _ := ev.wait("ready ")
	selfSignal(t, syscall.SIGUSR2)
	_, next := ev.wait("new master ")
	if pid, _ := ev.wait("got QUIT"); pid != old {
		t.Fatalf("QUIT went to %d, want the old master %d", pid, old)
	}
	waitGone(t, old)
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(log.String(), "upgrade of supervisor.test done") {
		if time.Now().After(deadline) {
			t.Fatalf("the upgrade did not end:\n%s", log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := result(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
	out := log.String()
	if !strings.Contains(out, "following supervisor.test master pid "+next) || strings.Contains(out, "expected the new master") {
		t.Errorf("want the new master %s followed:\n%s", next, out)
	}
}
