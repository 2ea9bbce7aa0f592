package supervisor

import (
	"os"
	"os/exec"
	"runtime"
	"syscall"

	"github.com/graceshim/graceshim/signals"
)

// startLocked starts cmd from a goroutine locked to its OS thread, and
// keeps that thread until release is closed (when Run returns, the tree
// gone). The kernel sends the parent-death signal (PR_SET_PDEATHSIG,
// prctl(2)) when the thread that forked the child ends, not the process:
// a Go program's threads come and go, so without the lock the child could
// be signalled while graceshim runs on (golang/go#27505). Returning from
// the goroutine while locked ends the thread, by then with no child left.
func startLocked(cmd *exec.Cmd, release <-chan struct{}) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errc <- cmd.Start()
		<-release
	}()
	return <-errc
}

// parentDeathSignal is what the child gets when graceshim dies without
// stopping it (SIGKILLed by a shell, runit or supervisord, or a crash of
// its own): the preset's fast signal, so that the server stops its
// workers with it rather than orphan them (SIGKILL would leave nginx's
// workers running). What remains: only the process graceshim started
// gets it; a master that daemonized (a grandchild, which does not
// inherit it across fork) and the server's workers do not, and under
// systemd the unit's cgroup is the backstop for those.
func parentDeathSignal(p signals.Preset) syscall.Signal {
	if p.Fast != 0 {
		return p.Fast
	}
	return syscall.SIGTERM
}

// stopBeforeStart takes the signals that arrived before the child started.
// It returns the first that asks for a stop (it translates to the
// graceful or the fast signal), or 0 and the others, for the loop.
func stopBeforeStart(sigs <-chan os.Signal, opts Options) (syscall.Signal, []syscall.Signal) {
	graceful := opts.Map.Translate(syscall.SIGTERM)
	var rest []syscall.Signal
	for _, s := range pendingSignals(sigs) {
		if to := opts.Map.Translate(s); to == graceful || to == opts.Preset.Fast {
			return s, nil
		}
		rest = append(rest, s)
	}
	return 0, rest
}
