package supervisor

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"

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
	case holdsListener(pid):
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

// holdsListener reports whether pid holds a listening TCP or unix socket:
// one of its descriptors (/proc/PID/fd, "socket:[INODE]") is listed in its
// network namespace's tables in the listening state (TCP state 0A; a unix
// socket with __SO_ACCEPTCON, flag 00010000; proc(5)).
func holdsListener(pid int) bool {
	dir := "/proc/" + strconv.Itoa(pid)
	ents, err := os.ReadDir(dir + "/fd")
	if err != nil {
		return false
	}
	inodes := map[string]bool{}
	for _, e := range ents {
		link, err := os.Readlink(dir + "/fd/" + e.Name())
		if err != nil {
			continue
		}
		if ino, ok := strings.CutPrefix(link, "socket:["); ok {
			inodes[strings.TrimSuffix(ino, "]")] = true
		}
	}
	if len(inodes) == 0 {
		return false
	}
	for _, table := range []struct {
		name            string
		stateCol, inCol int
		listening       func(string) bool
	}{
		{"tcp", 3, 9, func(s string) bool { return s == "0A" }},
		{"tcp6", 3, 9, func(s string) bool { return s == "0A" }},
		{"unix", 3, 6, func(s string) bool { return s == "00010000" }},
	} {
		if listedListening(dir+"/net/"+table.name, inodes, table.stateCol, table.inCol, table.listening) {
			return true
		}
	}
	return false
}

func listedListening(path string, inodes map[string]bool, stateCol, inCol int, listening func(string) bool) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // the header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) <= max(stateCol, inCol) {
			continue
		}
		if inodes[fields[inCol]] && listening(fields[stateCol]) {
			return true
		}
	}
	return false
}
