package supervisor

import (
	"bufio"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/graceshim/graceshim/signals"
)

// forwarded are the signals graceshim catches and passes on to the master,
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
// child (see Run).
var forwarded = []syscall.Signal{
	syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGHUP,
	syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH, syscall.SIGALRM, syscall.SIGPWR,
	syscall.SIGTSTP, syscall.SIGCONT,
	syscall.SIGABRT, syscall.SIGILL, syscall.SIGTRAP, syscall.SIGBUS, syscall.SIGFPE,
	syscall.SIGSEGV, syscall.SIGSTKFLT, syscall.SIGSYS,
}

// ttyStops are SIGTTIN and SIGTTOU, which the kernel sends a process that
// reads, or (with stty tostop) writes, a terminal it does not own the
// foreground of, restarting the call once the signal is handled. Caught,
// they would make every log line graceshim writes after it handed the
// foreground to the child (or while it runs in the background) spin in
// write(2) for good, TERM unhandled. So they are not caught: once the
// child runs, graceshim ignores them (signal.Ignore, after the fork, so
// the child starts with them at their default, as tini keeps them away
// from its parent only), and its writes go through.
var ttyStops = []syscall.Signal{syscall.SIGTTIN, syscall.SIGTTOU}

// ignoreTTYStops lets graceshim write to a terminal it does not own the
// foreground of. Called once the child runs (see ttyStops).
func ignoreTTYStops() {
	signal.Ignore(syscall.SIGTTIN, syscall.SIGTTOU)
}

// Catches reports whether graceshim catches sig and passes it on to the
// server, so that a translation from sig (--map) can take effect.
func Catches(sig syscall.Signal) bool {
	return slices.Contains(forwarded, sig)
}

// caught returns the signals Run registers for: those it forwards, but
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
func caught() (sigs []os.Signal, ignored []syscall.Signal) {
	ignoredNow := ignoredSignals()
	for _, s := range append(slices.Clone(forwarded), ttyStops...) {
		if ignoredNow[s] {
			ignored = append(ignored, s)
			continue
		}
		if slices.Contains(ttyStops, s) {
			continue
		}
		sigs = append(sigs, s)
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

// early holds the channel CatchEarly registered, until Run takes it.
var early struct {
	mu      sync.Mutex // guards ch and ignored
	ch      chan os.Signal
	ignored []syscall.Signal
}

// signalBuffer is the capacity of the signal channel: a burst of signals
// sent while the loop is busy is queued, not dropped.
const signalBuffer = 32

// CatchEarly starts catching the signals Run handles at once, before the
// command line is parsed, and keeps what arrives for the next Run. A
// container runtime or a supervisor may send TERM the moment graceshim
// runs; until graceshim catches it, the Go runtime's own handler takes
// it, and as PID 1 of a namespace (where the kernel ignores a default
// action) that ends graceshim with exit 2 and nothing said. Calling this
// first thing in main leaves only the Go runtime's start-up (before any
// of graceshim's code runs) uncovered.
func CatchEarly() {
	early.mu.Lock()
	defer early.mu.Unlock()
	if early.ch != nil {
		return
	}
	sigs, ignored := caught()
	early.ch = make(chan os.Signal, signalBuffer)
	early.ignored = ignored
	signal.Notify(early.ch, sigs...)
}

// catchSignals returns the channel of caught signals for Run: the one
// CatchEarly registered, or a new one. ignored lists the forwarded
// signals left ignored because the caller ignored them.
func catchSignals() (ch chan os.Signal, ignored []syscall.Signal) {
	early.mu.Lock()
	defer early.mu.Unlock()
	if early.ch != nil {
		ch, ignored = early.ch, early.ignored
		early.ch, early.ignored = nil, nil
		return ch, ignored
	}
	sigs, ignored := caught()
	ch = make(chan os.Signal, signalBuffer)
	signal.Notify(ch, sigs...)
	return ch, ignored
}

// pendingSignals takes the signals already queued on ch without waiting.
func pendingSignals(ch <-chan os.Signal) []syscall.Signal {
	var out []syscall.Signal
	for {
		select {
		case s := <-ch:
			out = append(out, s.(syscall.Signal))
		default:
			return out
		}
	}
}

// logStart says, once at start, what about the signals a user could not
// guess: the ones left ignored, and the bound of a stop whose graceful and
// fast signals are the same.
func (l *loop) logStart() {
	if len(l.ignored) > 0 {
		names := make([]string, len(l.ignored))
		for i, s := range l.ignored {
			names[i] = signals.Name(s)
		}
		l.opts.Log.Infof("%s ignored by graceshim's caller: left ignored, for %s too", strings.Join(names, ", "), l.name)
	}
	if l.graceful == l.fast {
		bound := "no bound"
		if l.opts.DrainTimeout > 0 {
			bound = l.opts.DrainTimeout.String()
		}
		l.opts.Log.Infof("graceful and fast signal are both %s: a stop sends it once and SIGKILL follows after the drain timeout (%s)", signals.Name(l.graceful), bound)
	}
}
