package supervisor

import (
	"github.com/coreos/go-systemd/v22/daemon"
)

// Notifier sends sd_notify(3) state lines to the service manager.
type Notifier interface {
	Notify(state string) error
}

// SdNotifier notifies through the socket NOTIFY_SOCKET names. Without it,
// Notify does nothing.
//
// It never passes unsetEnvironment=true: that unsets NOTIFY_SOCKET for the
// whole process, and every later notification would silently do nothing.
type SdNotifier struct{}

// Notify sends state.
func (SdNotifier) Notify(state string) error {
	_, err := daemon.SdNotify(false, state)
	return err
}
