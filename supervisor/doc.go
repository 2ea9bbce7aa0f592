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
// # Terminals
//
// When graceshim's stdin is its controlling terminal and graceshim's
// process group owns the foreground (docker run -it, a command typed at a
// shell), the terminal belongs to the child while the process graceshim
// started runs:
//
//   - The child runs in a process group of its own, and that group is made
//     the terminal's foreground group as the child starts (SysProcAttr
//     Foreground: the child calls TIOCSPGRP before its signal mask is
//     restored, so no SIGTTOU stops it). A shell, a REPL, `read` or
//     `stty` then work; in another group they would be stopped by SIGTTIN
//     or SIGTTOU for good. tini does the same (src/tini.c, isolate_child:
//     setpgid, then tcsetpgrp with SIGTTIN and SIGTTOU ignored).
//   - Ctrl-C, Ctrl-\ and Ctrl-Z are the terminal's: the kernel sends INT,
//     QUIT and TSTP to the foreground group, the child's, exactly as
//     without graceshim. graceshim translates nothing it does not
//     receive: on a terminal Ctrl-C is the server's own INT (nginx's fast
//     stop). The graceful stop is a signal sent to graceshim (kill, docker
//     stop, systemctl stop), translated as always.
//   - Ctrl-Z stops the child's group; graceshim sees the master stop
//     (wait4 WUNTRACED) and stops itself with SIGSTOP, so the shell sees
//     the job stop and gets its prompt back, as dumb-init does
//     (dumb-init.c: it suspends itself after passing TSTP, TTIN or TTOU
//     on). The CONT of fg or bg resumes graceshim, which gives the
//     foreground back to the child's group when graceshim has it (fg) and
//     continues that group.
//   - As PID 1 of a pid namespace (docker run -it) graceshim cannot stop
//     (the kernel drops init's own SIGSTOP) and no shell above it waits
//     for the job: a child stopped by Ctrl-Z (TSTP) is continued at once
//     and keeps the terminal, so Ctrl-Z does nothing rather than hang the
//     session (tini and dumb-init leave the child stopped there). A
//     SIGSTOP sent on purpose is left alone.
//   - When the process graceshim started exits (a daemonizing server's
//     first process, or the child itself), graceshim takes the foreground
//     back if the child's group still holds it, so that Ctrl-C reaches
//     graceshim again and is translated.
//   - A WINCH graceshim gets while its own group owns the foreground, and
//     with the window size changed since graceshim last looked, is a
//     resize from the kernel, not a command: it is not passed on (the
//     child's group, holding the terminal, gets the kernel's own WINCH).
//     signal.Notify does not give the sender's siginfo, so the window size
//     tells them apart.
//
// In the background (graceshim started with &) graceshim never takes the
// terminal from the shell.
//
// # Signals
//
// graceshim catches the signals in early.Forwarded (package early) and passes
// them on to the master, translated; never SIGURG, SIGPROF or SIGCHLD,
// which belong to the Go runtime and the reaper. Fault signals (ABRT, SEGV,
// ...) sent with kill are passed on too; a real fault of graceshim's own
// still crashes it, and the child then gets its parent-death signal (the
// preset's fast signal; only the process graceshim started gets it, a
// daemonized master and workers rely on systemd's cgroup). SIGPIPE is
// caught and dropped, so that a closed log pipe never ends graceshim.
// Signals the caller left ignored stay ignored where the Go runtime lets
// graceshim see it (HUP, INT, CONT, TSTP, TTIN, TTOU); TTIN and TTOU are
// not caught at all but ignored once the child runs, so that graceshim's
// own log lines reach a terminal whose foreground it handed to the child
// (with stty tostop a caught TTOU would restart every write for good);
// the caller's
// blocked signals reach the child blocked, but for those the Go runtime
// unblocks at start (HUP, INT, TERM, QUIT and the fault signals).
//
// # Following a master
//
// A master that exits 0 while graceshim is not stopping has handed over:
// to a daemonized master or, in a binary upgrade, to a new one. graceshim
// follows the process the pid file names (--pidfile), the new master an
// upgrade found, or else a process left behind that looks like a master
// (children of its own, a listening socket, a session of its own, or the
// master's own executable: master.go). Anything else left behind is
// stopped, and graceshim exits with the master's status.
//
// A stop that comes while the process graceshim started still runs, with
// a pid file given, never sends that process the daemon's signals when it
// is only the daemon's starter (pg_ctlcluster, pg_ctl start, apachectl
// start, an init-script-like wrapper: it forks the daemon and waits for
// it): when the pid file names a live process of graceshim's tree, that
// process is the master for the stop's signals; when it names the
// started process itself, that is the server; otherwise the stop's
// pre-stop, graceful and fast signals are held until the master is
// known. The starter exiting 0 hands over as at any start, and the
// master then gets them; a starter that exits non-zero failed to start
// the daemon, and the stop goes to every process left; when the pid
// file names no master within the ready timeout of the first signal
// held while the starter runs on, the held signals go to the starter
// with a warning. SIGKILL and CONT are never held, so the kill timeout
// bounds a fast stop (starter.go).
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
// (control_reload.go). A master that reloads, or starts, by executing
// itself again (HAProxy in master-worker mode, php-fpm, puma, uWSGI)
// loses a signal sent before its new image has installed its handlers:
// the stop's graceful, fast and pre-stop signals and the reload signal
// are held until the reload is confirmed and the master takes them
// again, as /proc/PID/status shows, or until the reload fails at
// reloadTimeout (10 s); then they go out in order (reexec.go). SIGKILL
// and CONT are never held. A stop that begins while such a reload runs
// follows it to its end rather than abandoning it; `graceshim reload`
// during a stop is refused. At start, a daemon that speaks sd_notify
// (NativeNotify) gets a stop's graceful signal once its master catches
// it and does not block it, within startHold (5 s).
// Commands reach a running graceshim through its
// control socket (control.go). During a drain graceshim names the
// connections it waits for, in its log, STATUS= and the answer to a
// status request (control_status.go, conns.Drain.Details); the health
// endpoint serves the figures at /metrics (health.go).
package supervisor
