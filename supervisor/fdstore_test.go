package supervisor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"
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
	ln, f := listenerFile(t)
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

// TestUnitJob runs unitJob against a stand-in for systemd's private
// socket that behaves as systemd 252's does: it answers the
// authentication with OK, sends signals (every private connection gets
// them) before the reply, and takes a call only once it said OK. The
// real manager is asked in e2e (TestRestartFDStore, TestRestart).
func TestUnitJob(t *testing.T) {
	type job struct {
		ID                uint32
		Unit, Type, State string
		Path, UnitPath    godbus.ObjectPath
	}
	tests := []struct {
		name string
		jobs []job
		want string
	}{
		{"restart", []job{{1, "other.service", "start", "waiting", "/j/1", "/u/o"}, {2, "web.service", "restart", "running", "/j/2", "/u/w"}}, "restart"},
		{"stop", []job{{3, "web.service", "stop", "running", "/j/3", "/u/w"}}, "stop"},
		{"none", []job{{1, "other.service", "start", "waiting", "/j/1", "/u/o"}}, ""},
		{"no jobs", []job{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			t.Setenv("XDG_RUNTIME_DIR", dir)
			if err := os.Mkdir(filepath.Join(dir, "systemd"), 0o755); err != nil {
				t.Fatal(err)
			}
			ln, err := net.Listen("unix", filepath.Join(dir, "systemd", "private"))
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			served := make(chan error, 1)
			go func() { served <- fakeSystemd(ln, tt.jobs) }()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			got, err := unitJob(ctx, service{name: "web.service", user: true})
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("unitJob = %q, want %q", got, tt.want)
			}
			if err := <-served; err != nil {
				t.Error(err)
			}
		})
	}
}

// fakeSystemd serves one ListJobs call on ln.
func fakeSystemd(ln net.Listener, jobs any) error {
	conn, err := ln.Accept()
	if err != nil {
		return err
	}
	defer conn.Close()
	rd := bufio.NewReader(conn)
	auth, err := rd.ReadString('\n')
	if err != nil || auth != "\x00AUTH EXTERNAL "+fmt.Sprintf("%x", strconv.Itoa(os.Getuid()))+"\r\n" {
		return fmt.Errorf("authentication %q, %v", auth, err)
	}
	if begin, err := rd.ReadString('\n'); err != nil || begin != "BEGIN\r\n" {
		return fmt.Errorf("after AUTH %q, %v; want BEGIN", begin, err)
	}
	if rd.Buffered() > 0 {
		// systemd 252 never answers a call sent before its OK.
		return fmt.Errorf("%d bytes sent before OK", rd.Buffered())
	}
	fmt.Fprintf(conn, "OK 0123456789abcdef0123456789abcdef\r\n")
	call, err := godbus.DecodeMessage(rd)
	if err != nil {
		return fmt.Errorf("cannot read the call: %w", err)
	}
	if m := call.Headers[godbus.FieldMember].Value(); m != "ListJobs" || call.Serial() == 0 {
		return fmt.Errorf("call %v, want ListJobs with a serial", call)
	}
	send := func(m *godbus.Message, serial uint32) {
		var b bytes.Buffer
		if err := m.EncodeTo(&b, binary.LittleEndian); err != nil {
			panic(err)
		}
		binary.LittleEndian.PutUint32(b.Bytes()[8:], serial)
		conn.Write(b.Bytes())
	}
	send(&godbus.Message{Type: godbus.TypeSignal, Headers: map[godbus.HeaderField]godbus.Variant{
		godbus.FieldPath:      godbus.MakeVariant(godbus.ObjectPath("/org/freedesktop/systemd1")),
		godbus.FieldInterface: godbus.MakeVariant("org.freedesktop.systemd1.Manager"),
		godbus.FieldMember:    godbus.MakeVariant("UnitNew"),
	}}, 7)
	send(&godbus.Message{Type: godbus.TypeMethodReply, Headers: map[godbus.HeaderField]godbus.Variant{
		godbus.FieldReplySerial: godbus.MakeVariant(call.Serial()),
		godbus.FieldSignature:   godbus.MakeVariant(godbus.SignatureOf(jobs)),
	}, Body: []any{jobs}}, 8)
	return nil
}
