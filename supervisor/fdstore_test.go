package supervisor

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// notifyFDs sends its text with the fds attached, as systemd's notify
// socket receives them (SCM_RIGHTS), to a path or an abstract "@name".
func TestNotifyFDs(t *testing.T) {
	for _, abstract := range []bool{false, true} {
		t.Run(map[bool]string{false: "path", true: "abstract"}[abstract], func(t *testing.T) {
			name := filepath.Join(t.TempDir(), "notify")
			env := name
			if abstract {
				name = "\x00graceshim-test-notify-" + strconv.Itoa(os.Getpid())
				env = "@" + name[1:]
			}
			recv, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(recv)
			if err := unix.Bind(recv, &unix.SockaddrUnix{Name: name}); err != nil {
				t.Fatal(err)
			}
			t.Setenv("NOTIFY_SOCKET", env)
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			defer w.Close()
			if err := notifyFDs("FDSTORE=1\nFDNAME=x", int(w.Fd())); err != nil {
				t.Fatal(err)
			}
			buf, oob := make([]byte, 256), make([]byte, unix.CmsgSpace(4))
			n, oobn, _, _, err := unix.Recvmsg(recv, buf, oob, 0)
			if err != nil {
				t.Fatal(err)
			}
			if got := string(buf[:n]); got != "FDSTORE=1\nFDNAME=x" {
				t.Errorf("got %q", got)
			}
			msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
			if err != nil || len(msgs) != 1 {
				t.Fatalf("control messages %v, %v; want one", msgs, err)
			}
			fds, err := unix.ParseUnixRights(&msgs[0])
			if err != nil || len(fds) != 1 {
				t.Fatalf("rights %v, %v; want one fd", fds, err)
			}
			// The fd received is the pipe's write end.
			got := os.NewFile(uintptr(fds[0]), "received")
			defer got.Close()
			if _, err := got.Write([]byte("z")); err != nil {
				t.Fatal(err)
			}
			b := make([]byte, 1)
			if _, err := r.Read(b); err != nil || b[0] != 'z' {
				t.Errorf("read %q, %v through the received fd; want z", b, err)
			}
		})
	}
	t.Setenv("NOTIFY_SOCKET", "")
	if err := notifyFDs("FDSTORE=1"); err == nil {
		t.Errorf("notifyFDs without NOTIFY_SOCKET: no error")
	}
}

// listeningFDs finds a process's listening sockets by inode, and takeFD
// duplicates one of them out of the process (pidfd_getfd).
func TestListeningFDsAndTakeFD(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	held, err := listeningFDs(os.Getpid(), map[uint64]bool{st.Ino: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(held) < 1 {
		t.Fatalf("listeningFDs found none of inode %d", st.Ino)
	}
	for fd, ino := range held {
		if ino != st.Ino {
			t.Errorf("fd %d: inode %d, want %d", fd, ino, st.Ino)
		}
		got, err := takeFD(os.Getpid(), fd)
		if err != nil {
			if strings.Contains(err.Error(), "ENOSYS") || strings.Contains(err.Error(), "function not implemented") {
				t.Skipf("no pidfd_getfd here: %v", err)
			}
			t.Fatal(err)
		}
		a, err := socketAddr(got)
		unix.Close(got)
		if err != nil || a.String() != ln.Addr().String() {
			t.Errorf("the fd taken listens on %v, %v; want %s", a, err, ln.Addr())
		}
	}
}
