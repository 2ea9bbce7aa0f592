package supervisor

import (
	"os"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/graceshim/graceshim/signals"
)

// terminal is graceshim's controlling terminal, when its stdin is one
// (docker run -it, a shell). The design is in the package doc: the child's
// process group owns the foreground while the process graceshim started
// runs, so that it can read the terminal and change its modes; graceshim
// takes it back when that process exits, and follows the child into a
// job-control stop.
type terminal struct {
	fd   int
	self int // graceshim's process group

	child     int          // the process group graceshim handed the foreground to, 0 when none
	size      unix.Winsize // the window size graceshim last saw
	suspended bool         // graceshim stopped itself because the child stopped
}

// openTerminal returns f as graceshim's controlling terminal, or nil when
// f is not a terminal or not graceshim's controlling one (TIOCGPGRP fails
// with ENOTTY on another session's terminal; tcgetpgrp(3)).
func openTerminal(f *os.File) *terminal {
	if f == nil {
		return nil
	}
	fd := int(f.Fd())
	if _, err := unix.IoctlGetTermios(fd, unix.TCGETS); err != nil {
		return nil
	}
	if _, err := unix.IoctlGetInt(fd, unix.TIOCGPGRP); err != nil {
		return nil
	}
	t := &terminal{fd: fd, self: unix.Getpgrp()}
	t.size, _ = t.winsize()
	return t
}

// foregroundGroup returns the terminal's foreground process group.
func (t *terminal) foregroundGroup() int {
	pg, err := unix.IoctlGetInt(t.fd, unix.TIOCGPGRP)
	if err != nil {
		return 0
	}
	return pg
}

// inForeground reports whether graceshim's own group owns the terminal:
// then it may hand the foreground on. In the background (a shell's job
// started with &) it must not take the terminal from the shell.
func (t *terminal) inForeground() bool { return t != nil && t.foregroundGroup() == t.self }

func (t *terminal) winsize() (unix.Winsize, error) {
	ws, err := unix.IoctlGetWinsize(t.fd, unix.TIOCGWINSZ)
	if err != nil {
		return unix.Winsize{}, err
	}
	return *ws, nil
}

// setForeground makes pgrp the terminal's foreground group. SIGTTOU is
// blocked on the calling thread meanwhile: a process outside the
// foreground group that calls tcsetpgrp is otherwise sent SIGTTOU and the
// call is restarted (the kernel's tty_check_change; tini and dumb-init
// ignore SIGTTOU around it for the same reason). Blocking it on this
// thread alone leaves graceshim's handling of a TTOU sent with kill, and
// the child's disposition, untouched.
func (t *terminal) setForeground(pgrp int) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var block, old unix.Sigset_t
	block.Val[0] = 1 << (uint(syscall.SIGTTOU) - 1)
	if err := unix.PthreadSigmask(unix.SIG_BLOCK, &block, &old); err != nil {
		return err
	}
	err := unix.IoctlSetPointerInt(t.fd, unix.TIOCSPGRP, pgrp)
	_ = unix.PthreadSigmask(unix.SIG_SETMASK, &old, nil)
	return err
}

// takeBack returns the foreground to graceshim when the child's group
// still holds it (and only then: a shell may have moved it on).
func (t *terminal) takeBack() {
	if t == nil || t.child == 0 {
		return
	}
	if t.foregroundGroup() == t.child {
		_ = t.setForeground(t.self)
		// A resize while the child held the terminal went to the
		// child; the size graceshim knows is stale.
		t.size, _ = t.winsize()
	}
	t.child = 0
}

// resized reports whether a WINCH graceshim received is the terminal's
// own: graceshim's group owns the foreground (the kernel sends a resize's
// WINCH to the foreground group only) and the window size changed since
// graceshim last looked (the kernel sends WINCH only when it changed:
// tty_do_resize in drivers/tty/tty_io.c). Signal.Notify does not give the
// sender's siginfo, so this is how a resize is told from a WINCH sent with
// kill as a command.
func (t *terminal) resized() bool {
	if !t.inForeground() {
		return false
	}
	ws, err := t.winsize()
	if err != nil || ws == t.size {
		return false
	}
	t.size = ws
	return true
}

// onMasterStopped follows the master into a job-control stop (Ctrl-Z
// stops the foreground group, the child's): on a terminal, graceshim
// stops itself too, so that the shell that started it sees the job stop
// and gets its prompt back, as a job-control-aware init does (dumb-init
// suspends itself with SIGSTOP after the child). SIGSTOP, not the child's
// own signal: graceshim catches TSTP, TTIN and TTOU.
//
// As PID 1 of a pid namespace (docker run -it) graceshim cannot stop: the
// kernel drops a SIGSTOP that init sends itself or gets from inside its
// namespace (kernel/signal.c, sig_task_ignored: SIGNAL_UNKILLABLE), and
// no job-control shell above it would get a prompt back or send the CONT
// anyway. dumb-init's self-SIGSTOP is a no-op there, and tini does not
// look at stops (waitpid without WUNTRACED): with either, a child stopped
// by Ctrl-Z stays stopped and the session hangs until someone sends CONT
// from outside. graceshim, as PID 1, continues a master that Ctrl-Z (TSTP)
// stopped at once and keeps the terminal with it: Ctrl-Z does nothing, as
// in an interactive shell that is PID 1. A SIGSTOP sent on purpose
// (kill -STOP, a debugger) is left alone, and so is a stop by TTIN or
// TTOU, which a CONT would only repeat.
func (l *loop) onMasterStopped(e exited) {
	l.opts.Log.Infof("%s (pid %d) stopped by %s", l.name, e.pid, signals.Name(e.status.StopSignal()))
	if l.term == nil || l.stop.stopping() {
		return
	}
	if l.self == 1 {
		if e.status.StopSignal() != syscall.SIGTSTP {
			return
		}
		pgrp := l.term.child
		if pgrp == 0 {
			pgrp = e.pid
		}
		l.opts.Log.Infof("graceshim is PID 1: nothing above it can suspend the job or resume it; continuing %s (process group %d)", l.name, pgrp)
		if l.term.child != 0 {
			_ = syscall.Kill(-pgrp, syscall.SIGCONT)
		} else {
			l.signalMaster(syscall.SIGCONT)
		}
		return
	}
	l.opts.Log.Infof("suspending graceshim with %s until CONT", l.name)
	l.term.suspended = true
	_ = syscall.Kill(l.self, syscall.SIGSTOP)
}

// onContinue handles the CONT that resumes a graceshim that suspended
// itself (the shell's fg or bg): the child's group gets the foreground
// back when graceshim has it (fg), and every process of that group is
// continued. It reports false when graceshim had not suspended itself:
// CONT is then passed on as usual.
func (l *loop) onContinue() bool {
	t := l.term
	if t == nil || !t.suspended {
		return false
	}
	t.suspended = false
	pgrp := t.child
	if pgrp == 0 {
		// The process graceshim started is gone; the master it follows
		// is continued alone.
		l.signalMaster(syscall.SIGCONT)
		return true
	}
	if t.inForeground() {
		if err := t.setForeground(pgrp); err != nil {
			l.opts.Log.Warnf("cannot give the terminal back to %s: %v", l.name, err)
		}
	}
	l.opts.Log.Infof("continuing %s (process group %d)", l.name, pgrp)
	_ = syscall.Kill(-pgrp, syscall.SIGCONT)
	return true
}
