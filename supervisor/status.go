package supervisor

import (
	"fmt"
	"syscall"

	"github.com/graceshim/graceshim/signals"
)

// ExitStatus is a non-zero end of the supervised command. Run returns it
// as its error so that the caller can exit the same way.
type ExitStatus struct {
	ws syscall.WaitStatus
}

// Code is the exit code graceshim passes on: the command's own, or 128+N
// when signal N killed it (the shell's convention).
func (e *ExitStatus) Code() int {
	if e.ws.Signaled() {
		return 128 + int(e.ws.Signal())
	}
	return e.ws.ExitStatus()
}

func (e *ExitStatus) Error() string { return describe(e.ws) }

// describe says how a process ended, for logs and errors.
func describe(ws syscall.WaitStatus) string {
	switch {
	case ws.Signaled():
		return fmt.Sprintf("killed by signal %s", signals.Name(ws.Signal()))
	case ws.Exited():
		return fmt.Sprintf("exited with status %d", ws.ExitStatus())
	}
	return fmt.Sprintf("ended with wait status %#x", uint32(ws))
}

// resultOf turns a final wait status into Run's result.
func resultOf(ws syscall.WaitStatus) error {
	if ws.Exited() && ws.ExitStatus() == 0 {
		return nil
	}
	return &ExitStatus{ws: ws}
}
