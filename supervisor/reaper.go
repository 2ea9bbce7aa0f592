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
// A one-second poll backs SIGCHLD up: one syscall a second bounds the
// harm of an exit notice missed for any reason.
func reap(ctx context.Context, sigchld <-chan os.Signal, out chan<- exited) {
	poll := time.NewTicker(time.Second)
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
