package supervisor

import (
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/coreos/go-systemd/v22/daemon"
)

// The test binary plays a master that reloads by executing itself again,
// as HAProxy's master does on USR2 (see reexec.go). TestMain in
// helper_test.go hands other roles to child; this one is taken here,
// before it, so that the role list there stays as it is.
func init() {
	if role := os.Getenv("GRACESHIM_TEST_CHILD"); strings.HasPrefix(role, "reexec") {
		_, mode, _ := strings.Cut(role, ":")
		reexecMaster(mode)
		os.Exit(0)
	}
}

// reexecMaster runs one image of the master. The first (generation 0)
// catches QUIT, its graceful stop, and runs a worker. On HUP it stops
// taking QUIT, starts a new worker and executes itself again, as
// HAProxy's master blocks USR1, forks its new worker and re-executes
// itself into wait mode. The next image
// (generation 1) starts with QUIT ignored, which discards a QUIT sent
// then (sigaction(2)), as HAProxy's wait-mode master does with USR1 until
// mworker_loop has installed its handlers, and reports "window"; it
// installs its handler only once the test writes to the FIFO
// GRACESHIM_TEST_RELEASE names, so the window is as long as the test
// wants, with no sleep. In mode "notify" it speaks sd_notify in HAProxy's
// order: READY=1 at start, RELOADING=1 before the exec, and READY=1 from
// the next image before its handler is installed. In mode "start" the
// first image has the window, as HAProxy's master has at its start: it
// says READY=1 with QUIT still ignored.
func reexecMaster(mode string) {
	if mode == "blocked" {
		blockedMaster()
		return
	}
	gen, _ := strconv.Atoi(os.Getenv("GRACESHIM_TEST_REEXEC_GEN"))
	notify := func(state string) {
		if mode == "notify" || mode == "start" {
			_, _ = daemon.SdNotify(false, state)
		}
	}
	// The reload signal: HUP, or USR2 as HAProxy's (mode "usr2"). It is
	// taken from here on and handled once the handlers are in, as HAProxy
	// keeps USR2 blocked (pending, not lost) through its window.
	reload := syscall.SIGHUP
	if mode == "usr2" {
		reload = syscall.SIGUSR2
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, reload)
	if gen > 0 || mode == "start" {
		signal.Ignore(syscall.SIGQUIT)
		// A CONT that continues this image after a SIGSTOP is reported
		// (its handler runs once the process runs again).
		cont := make(chan os.Signal, 1)
		signal.Notify(cont, syscall.SIGCONT)
		go func() {
			for range cont {
				report("continued gen %d", gen)
			}
		}()
		notify("READY=1")
		report("window gen %d", gen)
		f, err := os.Open(os.Getenv("GRACESHIM_TEST_RELEASE")) // blocks until the test opens it for writing
		if err != nil {
			report("error %v", err)
			os.Exit(1)
		}
		buf := make([]byte, 16)
		for {
			if _, err := f.Read(buf); err != nil {
				break
			}
		}
		f.Close()
	}
	signal.Notify(sigs, syscall.SIGQUIT)
	spawn := func() {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "GRACESHIM_TEST_CHILD=worker")
		if err := cmd.Start(); err != nil {
			report("error %v", err)
			os.Exit(1)
		}
		// Not waited for: the worker goes when its master is gone.
		report("worker %d", cmd.Process.Pid)
	}
	if gen == 0 {
		spawn()
		if mode != "start" {
			notify("READY=1")
		}
	}
	report("handlers gen %d", gen)
	for sig := range sigs {
		switch sig {
		case syscall.SIGQUIT:
			report("got QUIT")
			os.Exit(0)
		case reload:
			// HAProxy blocks USR1 before it forks the new worker and
			// keeps it blocked through both execs: from here on a QUIT
			// is not taken, as there.
			signal.Ignore(syscall.SIGQUIT)
			notify("RELOADING=1")
			spawn()
			env := append(os.Environ(), "GRACESHIM_TEST_REEXEC_GEN="+strconv.Itoa(gen+1))
			if err := syscall.Exec(os.Args[0], os.Args, env); err != nil {
				report("error exec: %v", err)
				os.Exit(1)
			}
		}
	}
}

// blockedMaster plays a daemon that speaks sd_notify and keeps its
// graceful signal, QUIT, blocked in its main thread all the time, as a
// daemon that takes its signals from a signalfd or a signal thread does
// (sd-event's sd_event_add_signal blocks the signal it reads). Its main
// thread's mask is the one /proc/PID/status shows; another thread takes
// the QUIT. On USR1 it reloads itself, as a daemon reloaded through its
// own control channel does: RELOADING=1, then READY=1.
func blockedMaster() {
	// init runs on the main thread (runtime.main locks it there during
	// initialisation); keep this goroutine on it.
	runtime.LockOSThread()
	set := sigBit(syscall.SIGQUIT)
	const sigBlock = 0 // SIG_BLOCK, rt_sigprocmask(2)
	if _, _, e := syscall.RawSyscall6(syscall.SYS_RT_SIGPROCMASK, sigBlock, uintptr(unsafe.Pointer(&set)), 0, 8, 0, 0); e != 0 {
		report("error rt_sigprocmask: %v", e)
		os.Exit(1)
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGQUIT, syscall.SIGUSR1)
	_, _ = daemon.SdNotify(false, "READY=1")
	report("ready")
	for sig := range sigs {
		switch sig {
		case syscall.SIGQUIT:
			report("got QUIT")
			os.Exit(0)
		case syscall.SIGUSR1:
			_, _ = daemon.SdNotify(false, daemon.SdNotifyReloading)
			_, _ = daemon.SdNotify(false, "READY=1")
			report("reloaded")
		}
	}
}

// TestRunOwnReloadBlockedGraceful: a daemon that keeps its graceful
// signal blocked all the time and reloads itself (RELOADING=1, then
// READY=1) has its reload confirmed on its READY=1: its blocked signal
// is how it always is, not a re-exec under way, so neither the reload
// nor a stop waits for it to change.
func TestRunOwnReloadBlockedGraceful(t *testing.T) {
	old := reloadTimeout
	reloadTimeout = time.Minute // longer than the waits below
	t.Cleanup(func() { reloadTimeout = old })
	ns := newNotifySocket(t)
	ev, done, cancel := start(t, "reexec:blocked", func(o *Options) {
		o.Ready = ReadyNotify
		o.Notify = NotifyRelay
	})
	ev.wait("ready")
	waitNotify(t, ns, "READY=1")
	selfSignal(t, syscall.SIGUSR1) // passed on: the daemon reloads itself
	ev.wait("reloaded")
	collectUntil(t, ns, "RELOADING=1")
	// The reload's end: graceshim's STATUS=running: ... after it.
	deadline := time.After(10 * time.Second)
wait:
	for {
		select {
		case m := <-ns.msgs:
			if !strings.HasPrefix(m, "STATUS=running") {
				continue
			}
			if !strings.Contains(m, "reloaded") {
				t.Errorf("the reload ended with %q, want it confirmed", m)
			}
			break wait
		case <-deadline:
			t.Errorf("the reload was not confirmed within 10s of the daemon's READY=1: its graceful signal, blocked all the time, was taken for a re-exec under way")
			break wait
		}
	}
	cancel()
	ev.wait("got QUIT")
	if err := result(t, done); err != nil {
		t.Fatalf("Run: %v, want a clean exit after the graceful stop", err)
	}
}

// TestRunStopDuringReexec: a stop that begins while the master executes
// itself again for a reload (the new worker runs, the master's new image
// has not installed its handlers yet) does not lose the graceful signal:
// graceshim holds it until the master takes its signals again, then
// sends it, and the master stops gracefully. Without the hold the QUIT
// reaches the new image while it discards it, and the stop hangs (it was
// seen with HAProxy 2.6: e2e TestE2ESocketUnitHAProxyStartPreCheck).
//
// In mode "usr2" the daemon's reload signal is USR2, sent to graceshim as
// it is (Debian's haproxy.service: ExecReload=/bin/kill -USR2 $MAINPID),
// not graceshim's HUP: graceshim passes it on and follows the reload all
// the same.
func TestRunStopDuringReexec(t *testing.T) {
	for _, mode := range []string{"signals", "notify", "usr2"} {
		t.Run(mode, func(t *testing.T) {
			release := filepath.Join(t.TempDir(), "release")
			if err := syscall.Mkfifo(release, 0o600); err != nil {
				t.Fatal(err)
			}
			t.Setenv("GRACESHIM_TEST_RELEASE", release)
			ns := newNotifySocket(t)
			ev, done, cancel := start(t, "reexec:"+mode, func(o *Options) {
				o.Ready = ReadyExec
				if mode == "notify" {
					o.Notify = NotifyRelay
				}
				if mode == "usr2" {
					// As the haproxy preset: USR2 reloads, no upgrade.
					o.Preset.Reload, o.Preset.Upgrade = syscall.SIGUSR2, 0
				}
			})
			ev.wait("worker ")
			ev.wait("handlers gen 0")
			waitNotify(t, ns, "READY=1")
			if mode == "usr2" {
				selfSignal(t, syscall.SIGUSR2) // the daemon's own reload signal
			} else {
				selfSignal(t, syscall.SIGHUP) // the reload
			}
			ev.wait("window gen 1")
			ev.wait("worker ") // the new worker, started before the exec

			cancel() // the stop, as systemd's TERM
			collectUntil(t, ns, "STOPPING=1")
			// The stop's STATUS= follows its graceful signal (stop.go:
			// actGraceful, then the status): by now graceshim has sent
			// QUIT, or held it.
			collectUntil(t, ns, "STATUS=")

			w, err := os.OpenFile(release, os.O_WRONLY, 0) // lets the new image install its handler
			if err != nil {
				t.Fatal(err)
			}
			w.Close()
			ev.wait("handlers gen 1")
			if _, _, ok := ev.within("got QUIT", 10*time.Second); !ok {
				t.Errorf("the master's new image never got QUIT: the stop's graceful signal was lost during its re-exec")
				selfSignal(t, syscall.SIGTERM) // escalate, to end the test
				selfSignal(t, syscall.SIGTERM)
				result(t, done)
				return
			}
			if err := result(t, done); err != nil {
				t.Fatalf("Run: %v, want a clean exit after the graceful stop", err)
			}
		})
	}
}

// TestRunStopDuringReexecStoppedMaster: a master stopped (SIGSTOP, a
// terminal's TSTP) while it re-executes itself for a reload cannot finish
// the reload. The stop's CONT reaches it at once, as systemd sends CONT
// after its stop signal for that reason; only the graceful signal waits
// for the reload. Held behind it, the CONT would wait for the reload to
// fail (reloadTimeout) and the stop with it.
func TestRunStopDuringReexecStoppedMaster(t *testing.T) {
	old := reloadTimeout
	reloadTimeout = time.Minute // longer than the wait below: a held CONT shows
	t.Cleanup(func() { reloadTimeout = old })
	release := filepath.Join(t.TempDir(), "release")
	if err := syscall.Mkfifo(release, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GRACESHIM_TEST_RELEASE", release)
	ns := newNotifySocket(t)
	ev, done, cancel := start(t, "reexec:signals", func(o *Options) {
		o.Ready = ReadyExec
	})
	ev.wait("handlers gen 0")
	waitNotify(t, ns, "READY=1")
	selfSignal(t, syscall.SIGHUP)
	master, _ := ev.wait("window gen 1")
	if err := syscall.Kill(master, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, _, ok := ev.within("continued gen 1", 10*time.Second); !ok {
		t.Errorf("the stopped master was not continued: the stop's CONT was held behind its graceful signal")
		_ = syscall.Kill(master, syscall.SIGCONT)
	}
	w, err := os.OpenFile(release, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	ev.wait("handlers gen 1")
	if _, _, ok := ev.within("got QUIT", 10*time.Second); !ok {
		t.Errorf("the master's new image never got QUIT")
		selfSignal(t, syscall.SIGTERM)
		selfSignal(t, syscall.SIGTERM)
	}
	if err := result(t, done); err != nil {
		t.Fatalf("Run: %v, want a clean exit after the graceful stop", err)
	}
}

// TestRunMasterDiesDuringHeldStop: a master that dies while the stop's
// signals are held for its reload ends the stop at once: nothing waits
// for a reload that can no longer be confirmed.
func TestRunMasterDiesDuringHeldStop(t *testing.T) {
	old := reloadTimeout
	reloadTimeout = time.Minute // beyond result's guard: a wait for it shows
	t.Cleanup(func() { reloadTimeout = old })
	release := filepath.Join(t.TempDir(), "release")
	if err := syscall.Mkfifo(release, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GRACESHIM_TEST_RELEASE", release)
	ns := newNotifySocket(t)
	ev, done, cancel := start(t, "reexec:signals", func(o *Options) {
		o.Ready = ReadyExec
	})
	ev.wait("handlers gen 0")
	waitNotify(t, ns, "READY=1")
	selfSignal(t, syscall.SIGHUP)
	master, _ := ev.wait("window gen 1")
	cancel()
	collectUntil(t, ns, "STOPPING=1")
	collectUntil(t, ns, "STATUS=") // the graceful signal is held by now
	if err := syscall.Kill(master, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := result(t, done)
	if err == nil || !strings.Contains(err.Error(), "KILL") && !strings.Contains(err.Error(), "killed") {
		t.Errorf("Run: %v, want the master's death by SIGKILL", err)
	}
}

// TestRunStopDuringStartWindow: a daemon that speaks sd_notify and is
// still starting, its graceful signal not taken yet (HAProxy's master
// says READY=1 before it unblocks USR1, see startWatch), gets the stop's
// graceful signal once it takes it, not before: the stop does not hang.
func TestRunStopDuringStartWindow(t *testing.T) {
	release := filepath.Join(t.TempDir(), "release")
	if err := syscall.Mkfifo(release, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GRACESHIM_TEST_RELEASE", release)
	ns := newNotifySocket(t)
	ev, done, cancel := start(t, "reexec:start", func(o *Options) {
		o.Ready = ReadyExec
		o.Preset.NativeNotify = true // a daemon that speaks sd_notify, as HAProxy -Ws
	})
	ev.wait("window gen 0")
	cancel()
	collectUntil(t, ns, "STOPPING=1")
	collectUntil(t, ns, "STATUS=") // after the graceful signal went, or was held
	w, err := os.OpenFile(release, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	ev.wait("handlers gen 0")
	if _, _, ok := ev.within("got QUIT", 10*time.Second); !ok {
		t.Errorf("the starting master never got QUIT: the stop's graceful signal was lost")
		selfSignal(t, syscall.SIGTERM)
		selfSignal(t, syscall.SIGTERM)
		result(t, done)
		return
	}
	if err := result(t, done); err != nil {
		t.Fatalf("Run: %v, want a clean exit after the graceful stop", err)
	}
}

// TestRunReloadDuringStartWindow: a reload asked for while a daemon that
// speaks sd_notify is still starting, its graceful signal not taken yet
// (HAProxy's master says READY=1, which lets systemd's reload job run,
// before it unblocks USR1), reaches the master: the start's watch does
// not swallow the reload signal.
func TestRunReloadDuringStartWindow(t *testing.T) {
	release := filepath.Join(t.TempDir(), "release")
	if err := syscall.Mkfifo(release, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GRACESHIM_TEST_RELEASE", release)
	newNotifySocket(t)
	ev, done, cancel := start(t, "reexec:start", func(o *Options) {
		o.Ready = ReadyExec
		o.Preset.NativeNotify = true
	})
	open := func() {
		w, err := os.OpenFile(release, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		w.Close()
	}
	ev.wait("window gen 0")
	selfSignal(t, syscall.SIGHUP) // the reload, inside the start's window
	open()
	ev.wait("handlers gen 0")
	if _, _, ok := ev.within("window gen 1", 10*time.Second); !ok {
		t.Fatalf("the master never re-executed itself: the reload signal asked for during its start was lost")
	}
	open()
	ev.wait("handlers gen 1")
	cancel()
	ev.wait("got QUIT")
	if err := result(t, done); err != nil {
		t.Fatalf("Run: %v, want a clean exit after the graceful stop", err)
	}
}

// TestParseSigState reads the signal masks of /proc/PID/status (proc(5)),
// from a sample and from this process, whose Go runtime catches QUIT and
// blocks nothing for it.
func TestParseSigState(t *testing.T) {
	sample := "Name:\thaproxy\nSigQ:\t0/63632\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000000\n" +
		"SigBlk:\t0000000000310a01\nSigIgn:\t0000000000001000\nSigCgt:\t0000000180004a07\n"
	got, err := parseSigState(sample)
	if err != nil {
		t.Fatal(err)
	}
	want := sigState{blocked: 0x310a01, ignored: 0x1000, caught: 0x180004a07}
	if got != want {
		t.Errorf("parseSigState = %+v, want %+v", got, want)
	}
	// 0x310a01: HUP (1), USR1 (10), USR2 (12), CHLD (17), TTIN (21),
	// TTOU (22): HAProxy's mask across its re-exec (strace, Linux x86).
	for _, s := range []syscall.Signal{syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGCHLD, syscall.SIGTTIN, syscall.SIGTTOU} {
		if got.blocked&sigBit(s) == 0 {
			t.Errorf("%v not read as blocked", s)
		}
	}
	if got.blocked&sigBit(syscall.SIGTERM) != 0 {
		t.Error("TERM read as blocked")
	}
	for _, bad := range []string{"SigBlk:\t00\nSigIgn:\t00\n", "SigBlk:\tzz\nSigIgn:\t00\nSigCgt:\t00\n"} {
		if _, err := parseSigState(bad); err == nil {
			t.Errorf("parseSigState(%q) = nil error", bad)
		}
	}
	self, err := readSigState(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if self.caught&sigBit(syscall.SIGQUIT) == 0 {
		t.Errorf("this Go process's SigCgt %x lacks QUIT, which the runtime catches", self.caught)
	}
}
