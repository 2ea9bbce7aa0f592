package supervisor

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/graceshim/graceshim/supervisor/proctab"
)

// When the master exits 0 and leaves a process behind, graceshim follows
// that process as the new master only when it looks like one. The rule
// (also in the package doc): a pid file, when one is given, names the
// master and nothing else is followed; otherwise a process left behind is
// followed when it
//
//   - has processes of its own (a master and its workers),
//   - holds a listening socket (nginx and HAProxy open theirs before they
//     daemonize, and the daemonized master keeps them),
//   - runs in a session of its own (daemon(3) calls setsid), or
//   - runs the master's own executable (a daemon forked from the master
//     and not yet past setsid: daemon(3) exits the parent right after the
//     fork).
//
// Anything else (a `sleep 60 &` a shell script left, a piped logger) is
// not a master: the master exited on its own, and what it left behind is
// stopped.

// masterSign says why pid looks like a master, or "" when it does not.
// exe is the executable of the master that exited, "" when unknown.
func masterSign(table []proctab.Entry, pid int, exe string) string {
	switch {
	case len(proctab.Children(table, pid)) > 0:
		return "it has processes of its own"
	case holdsListener(pid, listeningInodes()):
		return "it holds a listening socket"
	case ownSession(pid):
		return "it runs in a session of its own"
	case exe != "" && executable(pid) == exe:
		return "it is a copy of the master"
	}
	return ""
}

// ownSession reports whether pid runs in another session than graceshim.
func ownSession(pid int) bool {
	sid, err := unix.Getsid(pid)
	if err != nil {
		return false
	}
	mine, err := unix.Getsid(0)
	return err == nil && sid != mine
}

// executable returns the file pid runs, "" when it cannot be read.
func executable(pid int) string {
	exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(exe, " (deleted)")
}

// executablePath resolves a command's path the way /proc/PID/exe shows it.
func executablePath(path string) string {
	if p, err := filepath.EvalSymlinks(path); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs
		}
	}
	return path
}

// masterSettle is how long the processes a master left behind when it
// exited 0 are watched for the signs of a master before graceshim decides
// none is one. daemon(3) exits the parent right after fork, before the
// child calls setsid or opens its sockets; a check at the parent's exit
// alone would take such a daemon for a leftover now and then (seen with
// util-linux setsid: exec'd, not yet past setsid()).
const masterSettle = time.Second

// settling is a master that exited 0 and left processes behind, none of
// them looking like a master yet.
type settling struct {
	until time.Time
	gone  exited // the master's exit
}

// settleMaster starts watching what the master e left behind; it reports
// false when nothing is left to watch.
func (l *loop) settleMaster(now time.Time, e exited) bool {
	table, err := proctab.Read()
	if err != nil || len(proctab.Children(table, l.self)) == 0 {
		return false
	}
	l.settle = &settling{until: now.Add(masterSettle), gone: e}
	return true
}

// pollSettle follows a process left behind as soon as it looks like a
// master; when none does within masterSettle, the master is lost and
// what it left is stopped.
func (l *loop) pollSettle(now time.Time) {
	gone := l.settle.gone
	if next := l.successor(now); next > 0 {
		l.settle = nil
		l.follow(next, fmt.Sprintf("pid %d %s", gone.pid, describe(gone.status)))
		return
	}
	if now.Before(l.settle.until) {
		return
	}
	l.settle = nil
	if table, err := proctab.Read(); err == nil {
		if n := len(proctab.Children(table, l.self)); n > 0 {
			l.opts.Log.Infof("%d %s left behind by %s: none looks like a master (no listening socket, no processes of its own, no session of its own, another executable)", n, plural(n, "process", "processes"), l.name)
		}
	}
	l.masterLost(now, gone)
}
