package supervisor

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// procEntry is one line of the process table: a pid and its parent.
type procEntry struct{ pid, ppid int }

// readProcTable lists every process with its parent from /proc/PID/stat.
// Processes that exit while it reads are left out.
func readProcTable() ([]procEntry, error) {
	d, err := os.Open("/proc")
	if err != nil {
		return nil, fmt.Errorf("cannot list processes: %w", err)
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("cannot list processes: %w", err)
	}
	out := make([]procEntry, 0, len(names))
	buf := make([]byte, 512)
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		ppid, ok := readPPID(pid, buf)
		if !ok {
			continue
		}
		out = append(out, procEntry{pid, ppid})
	}
	return out, nil
}

// readPPID reads the parent pid from /proc/PID/stat. The command name in
// field 2 may hold spaces and parentheses, so the fields are counted from
// the last ')'.
func readPPID(pid int, buf []byte) (int, bool) {
	fd, err := syscall.Open("/proc/"+strconv.Itoa(pid)+"/stat", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return 0, false
	}
	n, err := syscall.Read(fd, buf)
	syscall.Close(fd)
	if err != nil || n <= 0 {
		return 0, false
	}
	b := buf[:n]
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	// ") S PPID ..."
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0, false
	}
	ppid, err := strconv.Atoi(f[1])
	return ppid, err == nil
}

// descendants returns roots and every process below them.
func descendants(table []procEntry, roots ...int) []int {
	kids := make(map[int][]int, len(table))
	for _, e := range table {
		kids[e.ppid] = append(kids[e.ppid], e.pid)
	}
	var out []int
	seen := map[int]bool{}
	stack := append([]int(nil), roots...)
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[p] {
			continue
		}
		seen[p] = true
		out = append(out, p)
		stack = append(stack, kids[p]...)
	}
	return out
}

// childrenOf returns the direct children of pid.
func childrenOf(table []procEntry, pid int) []int {
	var out []int
	for _, e := range table {
		if e.ppid == pid {
			out = append(out, e.pid)
		}
	}
	return out
}

// readPIDFile reads a pid file: one decimal pid, surrounding space allowed.
func readPIDFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("cannot read pid file %s: %w", path, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s does not hold a pid: %q", path, strings.TrimSpace(string(b)))
	}
	return pid, nil
}
