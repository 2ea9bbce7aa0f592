package conns

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// fdScanner lists the socket inodes a process holds by reading the links
// in /proc/PID/fd ("socket:[12345]"). It uses getdents64 and readlinkat on
// reused buffers, because ModeAll does this on every poll and a server
// tree at 50k connections has 50k descriptors.
type fdScanner struct {
	path []byte
	dent []byte
	link []byte
}

// sockets adds the socket inodes of pid to set. A process that has exited
// is not an error: its sockets are gone too.
func (s *fdScanner) sockets(pid int, set map[uint64]struct{}) error {
	s.path = append(strconv.AppendInt(append(s.path[:0], "/proc/"...), int64(pid), 10), "/fd"...)
	dir := string(s.path)
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cannot open %s: %w", dir, err)
	}
	defer unix.Close(fd)
	if s.dent == nil {
		s.dent = make([]byte, 64<<10)
		s.link = make([]byte, 64)
	}
	for {
		n, err := unix.Getdents(fd, s.dent)
		if err == unix.EINTR {
			continue
		}
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
			return nil // exited while we read the directory
		}
		if err != nil {
			return fmt.Errorf("cannot list %s: %w", dir, err)
		}
		if n <= 0 {
			return nil
		}
		// struct linux_dirent64 { u64 ino; s64 off; u16 reclen; u8 type; char name[]; }
		for b := s.dent[:n]; len(b) >= 20; {
			reclen := int(*(*uint16)(unsafe.Pointer(&b[16])))
			if reclen < 20 || reclen > len(b) {
				return fmt.Errorf("cannot list %s: malformed directory entry", dir)
			}
			name := b[19:reclen] // NUL-terminated, then padding
			b = b[reclen:]
			if name[0] == '.' {
				continue
			}
			if ino, ok := s.socketInode(fd, name); ok {
				set[ino] = struct{}{}
			}
		}
	}
}

// socketInode reads the link /proc/PID/fd/<name> relative to dirfd; name
// is NUL-terminated. It calls readlinkat directly so the name needs no
// conversion to a Go string.
func (s *fdScanner) socketInode(dirfd int, name []byte) (uint64, bool) {
	r, _, errno := unix.Syscall6(unix.SYS_READLINKAT, uintptr(dirfd),
		uintptr(unsafe.Pointer(&name[0])), uintptr(unsafe.Pointer(&s.link[0])), uintptr(len(s.link)), 0, 0)
	if errno != 0 {
		return 0, false // closed since the listing, or not ours to read
	}
	l := s.link[:r]
	const prefix = "socket:["
	if !bytes.HasPrefix(l, []byte(prefix)) || l[len(l)-1] != ']' {
		return 0, false
	}
	var ino uint64
	for _, c := range l[len(prefix) : len(l)-1] {
		if c < '0' || c > '9' {
			return 0, false
		}
		ino = ino*10 + uint64(c-'0')
	}
	return ino, true
}
