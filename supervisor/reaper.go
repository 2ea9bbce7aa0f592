package supervisor

import (
	"context"
	"errors"
	"os"
	"syscall"
	"time"
)

// exited is one reaped process, a child's job-control stop (status.Stopped()),
// or (pid 0) the news that graceshim has no children left at all.
type exited struct {
	pid    int
	status syscall.WaitStatus
}

// reap is the only code in graceshim that waits for children. It runs
// wait4(-1, WNOHANG) until nothing is left to reap each time SIGCHLD
// arrives (signals coalesce, so one SIGCHLD may stand for many exits, and
// a spurious one finds nothing), and publishes every exit in order. When
// wait4 says there are no children at all, it publishes exited{pid: 0}.
//
// SIGCHLD cannot be lost on the way: os/signal records a caught signal
// in a pending mask that its loop hands to the channel (sigsend in
// runtime/sigqueue.go), and the channel has a buffer of one, so a SIGCHLD
// that comes while the reaper is in wait4 stays pending there and makes
// it loop once more; the loop runs wait4 until nothing is left, so one
// notice that stands for several exits loses none. Nor can a caller's
// signal mask keep it away: the Go runtime unblocks SIGCHLD at start-up
// (os/signal's package doc, "If the program is started with a non-empty
// signal mask"). A backstop poll stays, for an exit no signal announces
// for a reason not foreseen here, but a long one: at one second it was
// the only thing waking an idle graceshim (measured: 4.8 to 7.8 context
// switches a second across its threads under 'sleep 600' and under
// nginx; issue 14 asks for at most 2).
const reapBackstop = time.Minute

func reap(ctx context.Context, sigchld <-chan os.Signal, out chan<- exited) {
	poll := time.NewTicker(reapBackstop)
	defer poll.Stop()
	for {
		for {
			var ws syscall.WaitStatus
			// WUNTRACED: a child's job-control stop (Ctrl-Z) is
			// published too, so that graceshim can follow it on a
			// terminal; ws.Stopped() tells it from an exit.
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG|syscall.WUNTRACED, nil)
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			if pid > 0 {
				select {
				case out <- exited{pid: pid, status: ws}:
				case <-ctx.Done():
					return
				}
				continue
			}
			if errors.Is(err, syscall.ECHILD) {
				select {
				case out <- exited{}:
				case <-ctx.Done():
					return
				}
			}
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-sigchld:
		case <-poll.C:
		}
	}
}
