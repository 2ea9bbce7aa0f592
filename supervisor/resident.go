package supervisor

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"reflect"
	"strconv"

	"golang.org/x/sys/unix"
)

// dropStartupPages takes the executable's clean pages, its code and
// read-only data, out of graceshim's resident set. It runs when graceshim
// goes idle. Start-up touches code all over the binary: every package's
// init, the runtime's, the command line's parsing. The kernel maps each
// page fault's neighbours too (fault_around_bytes, 64 KiB by default,
// mm/memory.c), so by the time a server is ready nearly all of a 16 MB
// static binary's text and rodata is mapped: measured, about 8 MB of the
// 10 MB RSS of an idle `graceshim -- sleep 600`, against 2 MB of its own
// (anonymous) memory.
//
// MADV_DONTNEED on a private file mapping only unmaps: the pages stay in
// the page cache, and what graceshim runs later (a signal, the stop)
// faults back in without I/O. It would discard the copy-on-write copies
// of a mapping that was written to, so a mapping is left alone unless it
// is not writable and holds no anonymous pages, resident or swapped out
// (a dynamically linked build's RELRO segment is written by the loader
// and then made read-only: it has some). It returns the bytes unmapped.
func dropStartupPages() (int64, error) {
	// The executable's mappings are those of the file this function's
	// code comes from. Its device and inode are read from the mapping,
	// not from stat(/proc/self/exe): on overlayfs (a container's root),
	// kernels before 6.8 show the lower layer's inode in /proc/PID/maps
	// and stat the overlay's.
	self := uintptr(reflect.ValueOf(dropStartupPages).Pointer())
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	// Collected first, unmapped after: smaps is read while it is open.
	var all []mapping
	var cur *mapping
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Bytes()
		if m, ok := parseMapsLine(line); ok {
			all = append(all, m)
			cur = &all[len(all)-1]
			continue
		}
		// A copy-on-write page is counted in Anonymous: while resident
		// and in Swap: once swapped out; MADV_DONTNEED drops either.
		for _, field := range []string{"Anonymous:", "Swap:"} {
			if cur != nil && bytes.HasPrefix(line, []byte(field)) {
				if kb := bytes.Fields(line[len(field):]); len(kb) == 0 || string(kb[0]) != "0" {
					cur.dirty = true
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	var exe *mapping
	for i, m := range all {
		if m.start <= self && self < m.end && m.inode != 0 {
			exe = &all[i]
		}
	}
	if exe == nil {
		return 0, fmt.Errorf("no file mapping holds graceshim's code at %#x", self)
	}
	var n int64
	for _, m := range all {
		if m.dev != exe.dev || m.inode != exe.inode || m.writable || !m.private || m.dirty {
			continue
		}
		// A raw call: these addresses are not Go memory, and a slice
		// over them is not needed.
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, m.start, m.end-m.start, unix.MADV_DONTNEED); errno != 0 {
			return n, fmt.Errorf("madvise %x-%x: %w", m.start, m.end, errno)
		}
		n += int64(m.end - m.start)
	}
	return n, nil
}

// mapping is a line of /proc/PID/maps (or a header line of smaps).
type mapping struct {
	start, end        uintptr
	writable, private bool
	dev, inode        uint64
	dirty             bool // has anonymous (copy-on-write) pages
}

// parseMapsLine parses "start-end perms offset major:minor inode [path]"
// (proc(5)); ok is false for smaps' field lines ("Rss: 4 kB").
func parseMapsLine(line []byte) (m mapping, ok bool) {
	f := bytes.Fields(line)
	if len(f) < 5 || len(f[1]) != 4 {
		return m, false
	}
	lo, hi, found := bytes.Cut(f[0], []byte("-"))
	if !found {
		return m, false
	}
	start, err1 := strconv.ParseUint(string(lo), 16, 64)
	end, err2 := strconv.ParseUint(string(hi), 16, 64)
	maj, min, found := bytes.Cut(f[3], []byte(":"))
	if err1 != nil || err2 != nil || !found {
		return m, false
	}
	major, err1 := strconv.ParseUint(string(maj), 16, 32)
	minor, err2 := strconv.ParseUint(string(min), 16, 32)
	inode, err3 := strconv.ParseUint(string(f[4]), 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return m, false
	}
	return mapping{
		start: uintptr(start), end: uintptr(end),
		writable: f[1][1] == 'w', private: f[1][3] == 'p',
		dev: unix.Mkdev(uint32(major), uint32(minor)), inode: inode,
	}, true
}
