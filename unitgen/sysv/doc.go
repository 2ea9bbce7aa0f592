// Package sysv reads, fixes and writes SysV init scripts so that stopping a
// server through them no longer cuts its in-flight requests.
//
// Fix analyses a Red Hat style script (one that sources
// /etc/rc.d/init.d/functions and stops with killproc) or a Debian/LSB style
// one (start-stop-daemon), finds how stop, restart, condrestart, reload and
// upgrade signal the daemon, and rewrites only what is wrong. The facts it
// relies on, from CentOS 6 initscripts' functions library:
//
//   - killproc [-p pidfile] [-b binary] [-d delay] prog [-SIG] reads its
//     options positionally in exactly that order; in any other order it
//     silently signals nothing and returns 0.
//   - Without a signal killproc sends TERM (nginx's fast stop), waits about
//     3 s and sends KILL. With a signal it sends it once and returns at once,
//     so the "rm -f $lockfile $pidfile" that follows runs while the old
//     master still drains, and a restart starts a second master that cannot
//     bind (or daemon() sees the live pid and skips the start).
//   - Without -p, killproc falls back to pidof, which matches workers too.
//   - start-stop-daemon --stop without --retry sends one signal and does not
//     wait; --retry QUIT/N/TERM/5/KILL/5 --pidfile F is the graceful form.
//
// So a fix never just swaps the signal: it sends the daemon's graceful
// signal (from the signals presets) to the master named in the pid file,
// waits for it to exit, bounded by STOP_TIMEOUT (which the admin overrides
// in /etc/sysconfig/NAME or /etc/default/NAME), escalates with TERM and then
// KILL, and only then lets the script remove its lock and pid files. For
// Red Hat style scripts the wait is a small self-contained shell function,
// graceshim_stop, inserted into the script: the fixed script needs only a
// POSIX shell, coreutils (or BusyBox's applets), /proc and sysvinit's
// pidof (pidof -c -o), not graceshim; parents and workers are read from
// /proc/PID/stat, not with ps.
//
// graceshim_stop finds the daemon the way killproc does (every pid on
// every line of the pid file; pidof of the binary only where the original
// stop was killproc without -p, which used pidof itself) but signals only
// pids that run the binary, and from pidof only masters; it fails when the
// daemon is still running. Red Hat stops keep killproc's [  OK  ] and
// [FAILED]; Debian stops keep start-stop-daemon and log_end_msg.
// STOP_TIMEOUT defaults to DefaultStopTimeout (60 s: CentOS 6 stops
// daemons one after another at shutdown) and reads N, Nm, Nh as killproc
// -d does.
//
// Decisions the fixer applies to both styles alike: an upgrade action's
// graceful signal to the old master is left as it is (the new master
// serves; nothing waits on the old one); a --retry schedule an admin can
// set (STOP_SCHEDULE="${STOP_SCHEDULE:-...}") is kept and only its default
// is raised when too short; a script that waits for the pid itself keeps
// its wait (only a fast signal before it is changed); a synchronous
// shutdown (redis-cli shutdown) is the main path and its killproc fallback
// is left alone; a function of the script's own that an action calls
// (unicorn's sig QUIT) is followed one level, and the call is rewritten.
//
// A stop the analysis does not understand is reported with the lines it
// looked at (an *UnsureError) and never rewritten by guess; so is a stop
// of a daemon no preset names, including templates whose binary hides
// behind placeholders (%PROVIDES%, @sbindir@): --preset NAME names it.
//
// Generate writes a complete script in either style that runs the daemon
// under graceshim (so stop is drain-aware) or signals it directly with the
// same bounded wait.
package sysv
