package supervisor

import (
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// starter plays a command that starts a daemon and runs on until it is
// up, as pg_ctlcluster, pg_ctl start or apachectl start do: it forks the
// server in a session of its own, then waits until the test writes to
// the FIFO GRACESHIM_TEST_STARTER_FIFO, and exits with
// GRACESHIM_TEST_STARTER_EXIT (0 when unset). It reports every stop
// signal it gets ("starter got QUIT") and goes on, so that a signal meant
// for the daemon shows.
func starter() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGQUIT, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		for s := range sigs {
			report("starter got %s", unixName(s.(syscall.Signal)))
		}
	}()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "GRACESHIM_TEST_CHILD=server")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		report("error %v", err)
		os.Exit(1)
	}
	report("forked %d", cmd.Process.Pid)
	f, err := os.Open(os.Getenv("GRACESHIM_TEST_STARTER_FIFO"))
	if err != nil {
		report("error %v", err)
		os.Exit(1)
	}
	buf := make([]byte, 1)
	f.Read(buf)
	code, _ := strconv.Atoi(os.Getenv("GRACESHIM_TEST_STARTER_EXIT"))
	os.Exit(code)
}

// starterSetup makes the FIFO the starter waits on and the pid file
// graceshim reads; the daemon writes its pid to daemonPIDFile. It returns
// a function that lets the starter exit.
func starterSetup(t *testing.T, exit int, daemonWritesIt bool) (pidfile string, release func()) {
	t.Helper()
	dir := t.TempDir()
	pidfile = filepath.Join(dir, "master.pid")
	fifo := filepath.Join(dir, "starter.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GRACESHIM_TEST_STARTER_FIFO", fifo)
	t.Setenv("GRACESHIM_TEST_STARTER_EXIT", strconv.Itoa(exit))
	if daemonWritesIt {
		t.Setenv("GRACESHIM_TEST_PIDFILE", pidfile)
	} else {
		t.Setenv("GRACESHIM_TEST_PIDFILE", filepath.Join(dir, "elsewhere.pid"))
	}
	released := false
	release = func() {
		t.Helper()
		if released {
			return
		}
		released = true
		// Blocks until the starter has the FIFO open: it runs until then.
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.Write([]byte("x"))
		f.Close()
	}
	// A starter left waiting would keep Run from returning.
	t.Cleanup(func() {
		if !released {
			if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
				f.Close()
			}
		}
	})
	return pidfile, release
}

// writePIDFile names pid in path, atomically.
func writePIDFile(t *testing.T, path string, pid int) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestRunStopWhileStarterRuns: a stop that comes while the command that
// starts a daemon still runs (pg_ctlcluster waits for postgres to take
// connections) sends the graceful signal to the master the pid file
// names, never to the starter, and only once.
func TestRunStopWhileStarterRuns(t *testing.T) {
	pidfile, release := starterSetup(t, 0, true)
	ev, done, _ := start(t, "starter", func(o *Options) { o.PIDFile = pidfile })
	starterPID, _ := ev.wait("forked ")
	pid, port := ev.wait("ready ") // the pid file is written before
	c := dial(t, ev, port)
	selfSignal(t, syscall.SIGTERM)
	if got, _ := ev.wait("got QUIT"); got != pid {
		t.Errorf("QUIT reached pid %d, want the daemon %d", got, pid)
	}
	release()
	waitGone(t, starterPID)
	c.Close()
	if err := result(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
	quitAlone(t, ev)
}

// TestRunStopHeldWhileStarterRuns: while the starter runs and the pid
// file names no master yet, the stop's graceful signal is held: the
// starter never gets it, and the master gets it once the starter exited
// 0 and the pid file names it.
func TestRunStopHeldWhileStarterRuns(t *testing.T) {
	pidfile, release := starterSetup(t, 0, false)
	ev, done, _ := start(t, "starter", func(o *Options) { o.PIDFile = pidfile })
	starterPID, _ := ev.wait("forked ")
	pid, port := ev.wait("ready ")
	c := dial(t, ev, port)
	selfSignal(t, syscall.SIGTERM)
	release()
	waitGone(t, starterPID)
	writePIDFile(t, pidfile, pid)
	if got, _ := ev.wait("got QUIT"); got != pid {
		t.Errorf("QUIT reached pid %d, want the daemon %d", got, pid)
	}
	c.Close()
	if err := result(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
	quitAlone(t, ev)
}

// TestRunStopStarterFails: a starter that exits non-zero while the stop's
// signal is held failed to start the daemon: the stop goes on to every
// process left, and graceshim exits with the starter's status.
func TestRunStopStarterFails(t *testing.T) {
	pidfile, release := starterSetup(t, 4, false)
	ev, done, _ := start(t, "starter", func(o *Options) { o.PIDFile = pidfile })
	starterPID, _ := ev.wait("forked ")
	pid, port := ev.wait("ready ")
	c := dial(t, ev, port)
	selfSignal(t, syscall.SIGTERM)
	release()
	waitGone(t, starterPID)
	if got, _ := ev.wait("got QUIT"); got != pid {
		t.Errorf("QUIT reached pid %d, want the daemon %d", got, pid)
	}
	c.Close()
	err := result(t, done)
	var st *ExitStatus
	if !errors.As(err, &st) || st.Code() != 4 {
		t.Fatalf("Run = %v, want the starter's exit status 4", err)
	}
	ev.none("starter got", 0)
}

// TestRunStopStarterHoldBound: the hold is bounded: when the pid file
// names no master within the ready timeout of the stop while the starter
// runs on, the held signal goes to the starter after all, and the stop
// goes on as it did before the hold: once the starter is gone, to every
// process left.
func TestRunStopStarterHoldBound(t *testing.T) {
	pidfile, release := starterSetup(t, 0, false)
	ev, done, _ := start(t, "starter", func(o *Options) {
		o.PIDFile = pidfile
		o.ReadyTimeout = 300 * time.Millisecond
	})
	starterPID, _ := ev.wait("forked ")
	pid, _ := ev.wait("ready ")
	selfSignal(t, syscall.SIGTERM)
	if got, _ := ev.wait("starter got QUIT"); got != starterPID {
		t.Errorf("starter QUIT reported by %d, want %d", got, starterPID)
	}
	release()
	waitGone(t, starterPID)
	if got, _ := ev.wait("got QUIT"); got != pid {
		t.Errorf("QUIT reached pid %d, want the daemon %d", got, pid)
	}
	if err := result(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestRunStopStarterKillNotHeld: a fast stop asked while the graceful
// signal is held is held too (never the starter's), but SIGKILL is not:
// the kill timeout still ends the tree.
func TestRunStopStarterKillNotHeld(t *testing.T) {
	pidfile, _ := starterSetup(t, 0, false)
	ev, done, _ := start(t, "starter", func(o *Options) {
		o.PIDFile = pidfile
		o.KillTimeout = 300 * time.Millisecond
	})
	ev.wait("forked ")
	ev.wait("ready ")
	selfSignal(t, syscall.SIGTERM)
	// A second stop signal asks for the fast stop; not TERM again, which
	// could merge with the first while both are pending.
	selfSignal(t, syscall.SIGQUIT)
	err := result(t, done)
	var st *ExitStatus
	if !errors.As(err, &st) || st.Code() != 128+9 {
		t.Fatalf("Run = %v, want the starter killed by SIGKILL (137)", err)
	}
	ev.none("starter got", 0)
	ev.none("got ", 0)
}

// TestRunStopServerNamesItself: a server that runs in the foreground and
// writes the pid file graceshim was given names itself: it is the
// master, and the stop's signal goes to it at once, not held.
func TestRunStopServerNamesItself(t *testing.T) {
	pidfile := filepath.Join(t.TempDir(), "server.pid")
	t.Setenv("GRACESHIM_TEST_PIDFILE", pidfile)
	ev, done, _ := start(t, "server", func(o *Options) {
		o.PIDFile = pidfile
		o.ReadyTimeout = time.Hour // a hold would outlast the test
	})
	pid, _ := ev.wait("ready ") // the pid file is written before
	selfSignal(t, syscall.SIGTERM)
	if got, _ := ev.wait("got QUIT"); got != pid {
		t.Errorf("QUIT reached pid %d, want the server %d", got, pid)
	}
	if err := result(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// quitAlone fails t when the starter got a signal, or the daemon got one
// more after its QUIT.
func quitAlone(t *testing.T, ev *events) {
	t.Helper()
	ev.none("starter got", 0)
	if _, rest := ev.waitAny("got "); rest != "" {
		t.Errorf("the daemon got %s too; want QUIT alone", rest)
	}
}
