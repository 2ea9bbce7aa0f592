package supervisor

import (
	"errors"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/graceshim/graceshim/signals"
	"github.com/graceshim/graceshim/supervisor/proctab"
)

// A daemonizing server is often started by a command that is not the
// server: pg_ctlcluster and pg_ctl start postgres and wait until it takes
// connections (about 2 s), apachectl start, init-script-like wrappers,
// sh -c 'daemon & ...'. That starter runs on while the daemon it forked
// already serves. A stop that comes then must not signal the starter: the
// daemon's graceful signal is not the starter's (QUIT or TERM ends a perl
// or shell starter at once, by default action, and the daemon never gets
// the signal), and systemd's own Type=forking answers a stop during the
// start by stopping the whole unit, daemon included (systemd.service(5):
// the start job is cancelled and the unit's processes killed).
//
// So with a pid file, while the process graceshim started runs and a stop
// is under way:
//
//   - when the pid file names a live process of graceshim's tree other
//     than the starter, that process is the master for the stop's
//     signals;
//   - when it names the starter itself, the starter is the server (a
//     daemon in the foreground that writes a pid file) and is signalled
//     as always;
//   - otherwise the stop's signals (pre-stop, graceful, fast) are held
//     until the pid file names the master, the starter exits (0: the
//     daemon is followed as after any start, and gets them then;
//     non-zero: the start failed, and the stop goes on as before, to
//     every process left), or the bound, the ready timeout from the
//     first signal held, passes: then they go to the starter, with a
//     warning. SIGKILL and CONT are never held, so the kill timeout still
//     bounds a fast stop.

// starterRuns reports whether the stop's signals for the master must be
// aimed past the process graceshim started: a pid file is given, that
// process runs and is still taken for the master, and a stop is under
// way. Not once a binary upgrade began: then the pid file names the new
// master (nginx, unicorn: the old one's pid file becomes .oldbin) while
// the master graceshim started, the old one, still serves and must get
// the stop's signal itself.
func (l *loop) starterRuns() bool {
	return l.opts.PIDFile != "" && l.main == l.child && !l.mainGone && l.awaitPID.IsZero() &&
		l.upgrade == nil && !l.upgraded && l.stop.stopping() && !l.starterGaveUp
}

// pidFileMaster returns the live process of graceshim's tree, other than
// the starter, that the pid file names; 0 when there is none, -1 when the
// pid file names the starter itself.
func (l *loop) pidFileMaster() int {
	pid, err := readPIDFile(l.opts.PIDFile)
	if err != nil {
		return 0
	}
	if pid == l.child {
		return -1
	}
	table, err := proctab.Read()
	if err != nil {
		return 0
	}
	if slices.Contains(proctab.Descendants(table, l.self)[1:], pid) {
		return pid
	}
	return 0
}

// signalPastStarter sends sig to the master the pid file names while the
// starter runs, or holds it; it reports false when sig is for the
// starter after all (the starter is the server, or sig is not one of the
// stop's).
func (l *loop) signalPastStarter(sig syscall.Signal) bool {
	switch pid := l.pidFileMaster(); {
	case pid > 0:
		l.early = pid
		logf := l.opts.Log.Infof
		if sig == syscall.SIGCONT {
			logf = l.opts.Log.Debugf // follows every stop signal
		}
		logf("sending %s to pid %d, named by %s, not to %s (pid %d), which still runs", signals.Name(sig), pid, l.opts.PIDFile, l.name, l.child)
		var err error
		if l.opts.Preset.Group {
			err = syscall.Kill(-pid, sig)
		} else {
			err = syscall.Kill(pid, sig)
		}
		if err != nil && !errors.Is(err, syscall.ESRCH) {
			l.opts.Log.Warnf("cannot send %s to pid %d: %v", signals.Name(sig), pid, err)
		}
		return true
	case pid < 0:
		return false
	}
	if !l.stopSignal(sig) {
		return false
	}
	l.holdForMaster(sig, "the pid file "+l.opts.PIDFile+" does not name the master yet and "+l.name+" (pid "+strconv.Itoa(l.child)+") still runs")
	return true
}

// stopSignal reports whether sig is one of the stop's signals for the
// master: those are held while the master is not known.
func (l *loop) stopSignal(sig syscall.Signal) bool {
	return sig != 0 && sig != syscall.SIGKILL && sig != syscall.SIGCONT &&
		(sig == l.graceful || sig == l.fast || sig == l.opts.Preset.PreStop)
}

// holdForMaster keeps sig until the master is known.
func (l *loop) holdForMaster(sig syscall.Signal, why string) {
	if len(l.masterHeld) == 0 {
		l.masterHeldUntil = time.Now().Add(l.opts.ReadyTimeout)
	}
	l.opts.Log.Infof("%s held: %s", signals.Name(sig), why)
	l.masterHeld = append(l.masterHeld, sig)
}

// pollStarter sends the held signals once the pid file names the master
// while the starter runs, or to the starter at the bound.
func (l *loop) pollStarter(now time.Time) {
	if !l.starterRuns() {
		return
	}
	held := l.masterHeld
	switch pid := l.pidFileMaster(); {
	case pid != 0:
		l.masterHeld = nil
		l.opts.Log.Infof("%s names pid %d: sending it the held %s", l.opts.PIDFile, pid, sigNames(held))
	case !now.Before(l.masterHeldUntil):
		l.masterHeld = nil
		l.starterGaveUp = true
		l.opts.Log.Warnf("%s does not name the master within %s of the stop and %s (pid %d) still runs: sending it the held %s", l.opts.PIDFile, l.opts.ReadyTimeout, l.name, l.child, sigNames(held))
	default:
		return
	}
	for _, s := range held {
		l.signalMaster(s)
	}
}

// releaseHeld sends the master just followed the signals held for it;
// it reports false when none were.
func (l *loop) releaseHeld() bool {
	held := l.masterHeld
	l.masterHeld = nil
	return l.sendHeld(held)
}
