// Package early catches the signals graceshim's run handles as the program
// starts, before the heavy packages' initialisation and main: a container
// runtime or a supervisor may send TERM the moment graceshim runs, and
// until graceshim catches it the Go runtime's own handler takes it. As PID 1
// of a namespace, where the kernel ignores a default action, that ends
// graceshim with exit 2 and nothing said.
//
// Package initialisation runs in import-path order among the packages whose
// imports are ready (the Go spec, "Package initialization"); this package
// imports only the standard library's os/signal and its few dependencies,
// so its init runs milliseconds before main (measured with
// GODEBUG=inittrace=1: os/signal at about 2 ms, main at about 20 ms). What
// remains uncovered is the runtime's own start-up and the packages
// initialised before this one.
//
// That limit, measured (issue 10; graceshim as PID 1 under unshare
// --pid --fork --mount-proc, TERM sent from outside a fixed time after
// the exec was seen in /proc/PID/exe, 40 runs each, a loaded 2-core
// machine): at 0, 1, 2 and 3 ms, 28, 17, 2 and 3 TERMs were lost and 11,
// 21, 33 and 11 runs exited 2; at 5, 8 and 12 ms all 40 exited 143. Both
// failures are the runtime's, before any code of graceshim's runs:
//
//   - before the runtime installs its signal handlers (initsig, as its
//     first thread starts) TERM is at its default action, which the
//     kernel drops for PID 1 of a namespace (kernel/signal.c,
//     sig_task_ignored: SIGNAL_UNKILLABLE), even when sent from outside;
//     blocking it beforehand does not help, as the runtime unblocks TERM
//     (runtime/signal_unix.go, minitSignalMask) before installing the
//     handler. The stop is lost; docker stop escalates to KILL after its
//     timeout.
//   - from initsig until this package's signal.Notify the runtime's
//     handler takes TERM as unhandled and ends the process
//     (runtime/signal_unix.go, dieFromSignal): the kill it sends itself
//     is dropped for PID 1 as above, so it falls through to exit(2),
//     with nothing on stderr.
//
// A TERM caught here, before the child exists, is a stop: Run does not
// start the command and graceshim exits 143 (TestRunStopBeforeStart).
//
// It catches only when the command line has "--" (graceshim [flags] --
// COMMAND): every other program that imports it, and graceshim's
// subcommands, are left alone; main releases what it caught when it runs a
// subcommand after all.
package early

import (
	"bufio"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Forwarded are the signals graceshim catches and passes on to the master,
// translated by the map (the stop signals among them drive the stop
// instead). Never all signals: the Go runtime sends itself SIGURG to
// preempt goroutines and uses SIGPROF for profiling, and forwarding them
// would pester the child. Left out on purpose: CHLD (the reaper's), URG,
// PROF, VTALRM, and XCPU and XFSZ, which the kernel sends about
// graceshim's own resource limits.
//
// ABRT, ILL, TRAP, BUS, FPE, SEGV, STKFLT and SYS are caught so that one
// sent with kill(2) is passed on like any other signal rather than make
// the Go runtime dump its goroutines and exit, leaving the child orphaned.
// A real fault of graceshim's own is not affected: the runtime delivers
// to a channel only the copies whose siginfo says they were sent
// (si_code SI_USER and the like), and still crashes on a fault it raised
// itself (os/signal, "Synchronous signals"; runtime/signal_unix.go,
// sighandler and sigFromUser). Then the parent-death signal stops the
// child (see supervisor.Run).
var Forwarded = []syscall.Signal{
	syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGHUP,
	syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH, syscall.SIGALRM, syscall.SIGPWR,
	syscall.SIGTSTP, syscall.SIGCONT,
	syscall.SIGABRT, syscall.SIGILL, syscall.SIGTRAP, syscall.SIGBUS, syscall.SIGFPE,
	syscall.SIGSEGV, syscall.SIGSTKFLT, syscall.SIGSYS,
}

// TTYStops are SIGTTIN and SIGTTOU, which the kernel sends a process that
// reads, or (with stty tostop) writes, a terminal it does not own the
// foreground of, restarting the call once the signal is handled. Caught,
// they would make every log line graceshim writes after it handed the
// foreground to the child (or while it runs in the background) spin in
// write(2) for good, TERM unhandled. So they are not caught: once the
// child runs, graceshim ignores them (signal.Ignore, after the fork, so
// the child starts with them at their default; tini likewise keeps them
// away from its parent only), and its writes go through.
var TTYStops = []syscall.Signal{syscall.SIGTTIN, syscall.SIGTTOU}

// Signals returns the signals graceshim's run registers for: those it forwards, but
// for the ones the caller left ignored, and SIGPIPE.
//
// A signal the caller ignored stays ignored, for graceshim and for the
// child, as it would be for the server started without graceshim (a
// background job of a non-interactive shell runs with INT and QUIT
// ignored, nohup ignores HUP): catching it would install a handler, which
// the child's exec resets to the default action. Only what the kernel
// still shows as ignored when graceshim's code runs can be honoured: the
// Go runtime respects an inherited SIG_IGN for HUP and INT and leaves
// CONT, TSTP, TTIN and TTOU alone, but installs its own handler for every
// other signal before any of graceshim's code runs
// (runtime/signal_unix.go, initsig and sigInstallGoHandler), so an
// ignored TERM, QUIT, USR1 or SEGV cannot be seen and reaches the child
// at its default. Blocked signals need nothing: the child starts with
// the mask of the thread that forks it, which is the one graceshim was
// started with, but for the signals the runtime unblocks on every thread
// at start (HUP, INT, TERM, QUIT, ABRT, SEGV and the other fault
// signals: runtime/signal_unix.go, blockableSig); measured: a caller
// blocking USR1, TERM and SEGV leaves the child USR1 blocked.
//
// SIGPIPE is caught and never passed on: with a handler for it, a write
// to a closed pipe or socket fails with EPIPE rather than end graceshim
// (os/signal, "SIGPIPE"), so a log line written after the reader of
// graceshim's stderr went away cannot kill graceshim before it stops the
// child. A handler, unlike SIG_IGN, is reset by exec, so the child starts
// with SIGPIPE at its default as it would without graceshim.
func Signals() (sigs []os.Signal, ignored []syscall.Signal) {
	ignoredNow := ignoredSignals()
	for _, s := range append(slices.Clone(Forwarded), TTYStops...) {
		if ignoredNow[s] {
			ignored = append(ignored, s)
			continue
		}
		if !slices.Contains(TTYStops, s) {
			sigs = append(sigs, s)
		}
	}
	return append(sigs, syscall.SIGPIPE), ignored
}

// ignoredSignals reads the signals this process ignores from the kernel.
func ignoredSignals() map[syscall.Signal]bool {
	mask, ok := statusMask("SigIgn")
	if !ok {
		return nil
	}
	out := map[syscall.Signal]bool{}
	for n := 1; n <= 64; n++ {
		if mask&(1<<(n-1)) != 0 {
			out[syscall.Signal(n)] = true
		}
	}
	return out
}

// statusMask reads a signal mask of /proc/self/status, the thread group
// leader's (SigIgn, SigBlk: hexadecimal, bit N-1 for signal N; proc(5)).
func statusMask(field string) (uint64, bool) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), field+":")
		if !ok {
			continue
		}
		mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		return mask, err == nil
	}
	return 0, false
}

// state holds the channel Catch registered, until Take takes it.
var state struct {
	mu      sync.Mutex // guards ch and ignored
	ch      chan os.Signal
	ignored []syscall.Signal
}

// Buffer is the capacity of the signal channel: a burst of signals sent
// while the loop is busy is queued, not dropped.
const Buffer = 32

func init() {
	if slices.Contains(os.Args[1:], "--") {
		Catch()
	}
}

// Catch starts catching Signals() now, for the next Take.
func Catch() {
	state.mu.Lock()
	defer state.mu.Unlock()
	if state.ch != nil {
		return
	}
	// First the signals whose inherited disposition the runtime replaced
	// with its own handler already: TERM is caught from here on, before
	// /proc/self/status is read (about 70 us). Then the ones whose
	// disposition the caller's SIG_IGN may still show, read before Notify,
	// which would install a handler for them.
	state.ch = make(chan os.Signal, Buffer)
	signal.Notify(state.ch, runtimeHandled()...)
	sigs, ignored := Signals()
	state.ignored = ignored
	signal.Notify(state.ch, sigs...)
}

// mayBeIgnored are the forwarded signals whose inherited SIG_IGN the Go
// runtime leaves in place (see Signals).
var mayBeIgnored = []syscall.Signal{syscall.SIGHUP, syscall.SIGINT, syscall.SIGCONT, syscall.SIGTSTP}

// runtimeHandled are the forwarded signals the runtime installed its own
// handler for before any package's init, in Forwarded's order (TERM
// first), and SIGPIPE.
func runtimeHandled() []os.Signal {
	var out []os.Signal
	for _, s := range Forwarded {
		if !slices.Contains(mayBeIgnored, s) {
			out = append(out, s)
		}
	}
	return append(out, syscall.SIGPIPE)
}

// Take returns the channel Catch registered and the signals left ignored,
// or nil when nothing was caught; the caller owns the channel then.
func Take() (chan os.Signal, []syscall.Signal) {
	state.mu.Lock()
	defer state.mu.Unlock()
	ch, ignored := state.ch, state.ignored
	state.ch, state.ignored = nil, nil
	return ch, ignored
}

// Queued reports how many caught signals wait to be taken.
func Queued() int {
	state.mu.Lock()
	defer state.mu.Unlock()
	return len(state.ch)
}

// Release stops catching, for a run of something else after all, and
// sends this process again what was caught meanwhile, so that it has the
// effect it would have had.
func Release() {
	ch, _ := Take()
	if ch == nil {
		return
	}
	signal.Stop(ch)
	for {
		select {
		case s := <-ch:
			_ = syscall.Kill(os.Getpid(), s.(syscall.Signal))
		default:
			return
		}
	}
}
