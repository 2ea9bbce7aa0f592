package supervisor

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/graceshim/graceshim/signals"
)

// Several daemons reload by executing themselves again in the same pid:
// HAProxy's master in master-worker mode (-W, -Ws) on USR2, php-fpm on
// USR2 (fpm_pctl_exec), puma's hot restart on USR2 (Kernel.exec), uWSGI
// on HUP. From the exec until the new image has installed its handlers,
// a signal sent to the master does not reach the daemon's code: execve(2)
// resets every caught signal to its default action, so it is lost or,
// with the default action, kills the master.
//
// HAProxy 2.6 shows how long that lasts (measured here with haproxy
// 2.6.12 -Ws under strace, and in src/haproxy.c: mworker_reexec,
// mworker_reexec_waitmode, mworker_loop). On USR2 the master blocks HUP,
// USR1, USR2, CHLD, TTIN and TTOU, says RELOADING=1 and execs itself
// with the new config; that image forks the new worker, says RELOADING=1
// again and execs itself once more, in "wait mode", with the mask still
// blocked. The wait-mode image says READY=1, then mworker_loop sets USR1,
// HUP and QUIT to SIG_IGN and back to its handler (signal_unregister,
// signal_register_fct) and only then unblocks them. SIG_IGN discards a
// pending signal (sigaction(2)): a USR1, the soft stop, sent at any time
// from the USR2 to that unblock is lost. Measured: a USR1 sent right
// after the USR2, after either RELOADING=1, or at once on READY=1 left
// the master and its new worker running; 1 ms after READY=1 it stopped
// them. The new worker appears about 20 ms before READY=1, so a reload
// taken as done on the new worker, and a stop that came then, hung.
//
// So a reload whose signal went out is confirmed only when the daemon
// says so (its READY=1; a daemon that said RELOADING=1 owes it, see
// sd_notify(3)) or its new workers run, and in both cases only once the
// master takes graceshim's signals again: /proc/PID/status shows each of
// them not blocked, and caught when it was caught before the reload
// (masterTakes). Until then the signals graceshim would send the master
// are held (a stop that begins meanwhile waits for the reload, within
// its bound), and they go out in order once it is confirmed or has
// failed.

// sigState is a process's signal dispositions and mask, as
// /proc/PID/status shows them (proc(5): SigBlk, SigIgn, SigCgt).
type sigState struct {
	blocked, ignored, caught uint64
}

// sigBit is sig's bit in a /proc/PID/status mask.
func sigBit(sig syscall.Signal) uint64 {
	if sig < 1 || sig > 64 {
		return 0
	}
	return 1 << (uint(sig) - 1)
}

// readSigState reads pid's signal state.
func readSigState(pid int) (sigState, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return sigState{}, err
	}
	return parseSigState(string(b))
}

// parseSigState reads the signal lines of a /proc/PID/status text.
func parseSigState(text string) (sigState, error) {
	var st sigState
	found := 0
	for _, line := range strings.Split(text, "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var dst *uint64
		switch key {
		case "SigBlk":
			dst = &st.blocked
		case "SigIgn":
			dst = &st.ignored
		case "SigCgt":
			dst = &st.caught
		default:
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(val), 16, 64)
		if err != nil {
			return sigState{}, fmt.Errorf("cannot read %s %q: %w", key, strings.TrimSpace(val), err)
		}
		*dst = n
		found++
	}
	if found != 3 {
		return sigState{}, fmt.Errorf("no SigBlk, SigIgn and SigCgt lines")
	}
	return st, nil
}

// reexecWatch follows a reload whose signal went out, until the master is
// seen past it.
type reexecWatch struct {
	before sigState         // the master's signal state when the reload's signal went out
	known  bool             // before was read
	sigs   []syscall.Signal // the signals the master must take again
	done   string           // the daemon showed the reload done (what showed it); "" not yet
	held   []syscall.Signal // signals for the master held meanwhile, in order
	start  bool             // the daemon's start-up, not a reload (startWatch)
	until  time.Time        // with start: the bound of the hold
	// reloadDue: with start, a reload was asked meanwhile; its signal
	// goes out when the start's watch ends (sendReload, pollStart).
	reloadDue bool
}

// startHold bounds how long a stop's signal waits for a daemon that is
// starting to take it (startWatch).
const startHold = 5 * time.Second

// startWatch follows the start of a daemon that speaks sd_notify, whose
// start may be an exec too: HAProxy's master in master-worker mode forks
// its first worker, then executes itself into wait mode, with USR1
// blocked from about 30 ms after graceshim's exec until after its READY=1
// (measured with haproxy 2.6.12 -Ws: the same sequence as a reload's, see
// above). A stop that begins meanwhile (its first worker already serves)
// holds its graceful signal until the master catches it and does not
// block it, within startHold. Such daemons catch their graceful signal
// (NativeNotify presets); a daemon that does not (one given graceshim's
// notify socket with --notify=relay) is not held for.
func (l *loop) startWatch() *reexecWatch {
	return &reexecWatch{
		start: true, known: true,
		before: sigState{caught: sigBit(l.graceful)},
		sigs:   []syscall.Signal{l.graceful},
		until:  time.Now().Add(startHold),
	}
}

// pollStart ends the start's watch once the master takes its graceful
// signal, or at its bound, or once the master is gone, and sends what
// was held.
func (l *loop) pollStart(now time.Time) {
	w := l.reexec
	ok, why := l.masterTakes()
	switch {
	case ok:
		l.noteSteady()
		l.endReexec()
	case l.mainGone:
		l.endReexec()
	case !now.Before(w.until):
		if len(w.held) > 0 || w.reloadDue {
			l.opts.Log.Warnf("%s (pid %d) does not take %s within %s of its start (%s): sending it anyway", l.name, l.main, signals.Name(l.graceful), startHold, why)
		}
		l.endReexec()
	default:
		return
	}
	if w.reloadDue && l.reload != nil && !l.stop.stopping() && !l.mainGone {
		l.sendReload(now)
	}
}

// noteSteady records the master's signal state as its steady one: once
// it started (its first READY=1 when no start's watch runs, or when the
// start's watch sees it take its graceful signal) and each time a
// reload is confirmed. A reload the daemon announces itself
// (childReloads) has no state read before it to compare with: this is
// the one, so a daemon that keeps a signal blocked or uncaught all the
// time (one that reads it from a signalfd or a signal thread) is not
// waited for at each of its reloads. Not at the bound of a start's
// watch, nor at a failed reload: the master may be in the middle of an
// exec then (a slow HAProxy start keeps USR1 blocked).
func (l *loop) noteSteady() {
	if l.mainGone {
		return
	}
	if st, err := readSigState(l.main); err == nil {
		l.steady = &st
	}
}

// watchedSignals are the signals graceshim sends the master whose
// delivery matters: the stop's, the reload's and the pre-stop signal.
func (l *loop) watchedSignals() []syscall.Signal {
	var out []syscall.Signal
	for _, s := range []syscall.Signal{l.graceful, l.fast, l.reloadSignal(), l.opts.Preset.PreStop} {
		if s != 0 && s != syscall.SIGKILL && s != syscall.SIGSTOP && s != syscall.SIGCONT {
			out = append(out, s)
		}
	}
	return out
}

// newReexec reads the master's signal state for a reload whose signal is
// about to go out, while the master is steady.
func (l *loop) newReexec() *reexecWatch {
	w := &reexecWatch{sigs: l.watchedSignals()}
	if st, err := readSigState(l.main); err == nil {
		w.before, w.known = st, true
	}
	return w
}

// masterTakes reports whether the master takes graceshim's signals now:
// none of them blocked that was not blocked before the reload, none
// missing from the caught ones that was caught before (a signal a daemon
// leaves blocked all the time, to read it from a signalfd, is not held
// for). It also says which signal it waits for.
func (l *loop) masterTakes() (bool, string) {
	w := l.reexec
	if w == nil || !w.known {
		return true, ""
	}
	now, err := readSigState(l.main)
	if err != nil {
		return true, "" // gone: its exit decides
	}
	for _, s := range w.sigs {
		b := sigBit(s)
		switch {
		case now.blocked&b != 0 && w.before.blocked&b == 0:
			return false, signals.Name(s) + " blocked"
		case now.caught&b == 0 && w.before.caught&b != 0:
			return false, signals.Name(s) + " not caught yet"
		}
	}
	return true, ""
}

// reloadShown records that the daemon showed the reload done (what says
// how) and ends the reload once the master takes its signals again;
// until then pollReload looks again.
func (l *loop) reloadShown(what string) {
	if w := l.reexec; w != nil {
		w.done = what
		if ok, why := l.masterTakes(); !ok {
			l.opts.Log.Debugf("%s; waiting for %s (pid %d) to take its signals again: %s", what, l.name, l.main, why)
			return
		}
	}
	l.endReload(what)
}

// holdSignal keeps sig for the master while a reload may have it
// re-executing itself; it reports false when nothing is held. Only the
// signals whose loss matters are held (the stop's, the reload's, the
// pre-stop one); any other signal a user passes on goes at once, as it
// always did. CONT is never held: it continues a stopped process
// whatever its mask and dispositions (signal(7)), so it cannot be lost,
// and a master stopped (SIGSTOP, a terminal's TSTP) in the middle of
// its re-exec cannot finish it, and take the held signals, until it
// runs again. A pending held signal reaches a continued master as well
// as a running one.
func (l *loop) holdSignal(sig syscall.Signal) bool {
	w := l.reexec
	if w == nil || l.mainGone || !l.awaitPID.IsZero() {
		return false
	}
	if !slices.Contains(l.watchedSignals(), sig) {
		return false
	}
	switch {
	case len(w.held) > 0:
	case w.start:
		l.opts.Log.Infof("%s held until %s (pid %d), starting, takes it: a master that re-executes itself would lose it", signals.Name(sig), l.name, l.main)
	default:
		l.opts.Log.Infof("%s held until the reload of %s (pid %d) is confirmed: a master that re-executes itself would lose it", signals.Name(sig), l.name, l.main)
	}
	w.held = append(w.held, sig)
	return true
}

// endReexec ends the watch of a reload that ended (done or failed) and
// sends the signals held meanwhile.
func (l *loop) endReexec() {
	w := l.reexec
	if w == nil {
		return
	}
	l.reexec = nil
	l.sendHeld(w.held)
}

// sendHeld sends the master, in order, the signals held for it (while it
// re-executed itself, or while its starter ran); it reports false when
// there were none.
func (l *loop) sendHeld(held []syscall.Signal) bool {
	if len(held) == 0 {
		return false
	}
	l.opts.Log.Infof("sending the held %s to %s (pid %d)", sigNames(held), l.name, l.main)
	for _, s := range held {
		l.signalMaster(s)
	}
	return true
}

// sigNames names sigs for the log.
func sigNames(sigs []syscall.Signal) string {
	names := make([]string, len(sigs))
	for i, s := range sigs {
		names[i] = signals.Name(s)
	}
	return strings.Join(names, ", ")
}
