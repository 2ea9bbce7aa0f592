// Package supervisor runs one server as its child and stops it without
// losing a request.
//
// It is a small set of actors that start and stop together, each owning its
// own state:
//
//   - the reaper, the only code that waits for children: graceshim is a child
//     subreaper, so one wait4(-1, WNOHANG) loop reaps the child, the master a
//     daemonizing or upgrading server leaves behind, and every orphan;
//   - the watcher, which owns the connection tracker: it learns the tree's
//     listening sockets while the server runs (they are closed on a graceful
//     stop, so they must be known before) and counts live connections while
//     it drains;
//   - the event loop, which owns the stop state machine (stopper), the
//     identity of the master, and everything sent to systemd.
//
// The stop state machine is pure: it is fed events with the time they
// happened and returns actions (signal, tell systemd), so its timing is
// tested with scripted counts and a fake clock.
//
// systemd facts it relies on (systemd.service(5), sd_notify(3)):
// EXTEND_TIMEOUT_USEC moves the stop deadline to now+N when that is later and
// must be re-sent before it runs out; only the main PID may notify under
// NotifyAccess=main, so systemd's NOTIFY_SOCKET is removed from the child's
// environment, and a child that speaks sd_notify itself gets graceshim's
// own socket instead (relay.go), whose datagrams graceshim passes on in
// its own name; STATUS= is shown by systemctl status throughout the stop.
//
// A reload tests the configuration first and answers whoever asked
// (control_reload.go); commands reach a running graceshim through its
// control socket (control.go).
package supervisor
