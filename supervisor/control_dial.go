package supervisor

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// An abstract unix socket's name lives in a network namespace (unix(7):
// "the abstract socket namespace ... is scoped to the network namespace"),
// and a socket looks names up in the namespace it was created in
// (net/unix/af_unix.c: unix_find_abstract(sock_net(sk), ...)). The client
// finds the name in /proc/PID/net/unix, the table of the target's
// namespace; dialled from another namespace (the host's `graceshim
// reload $MAINPID` of a graceshim in a container with a network of its
// own) the name may lead nowhere or, worse, to another process that bound
// the same name there. So the client
//
//   - creates its socket in /proc/PID/ns/net when that is not its own
//     (setns(2) on a locked thread, which then returns to its namespace;
//     entering needs CAP_SYS_ADMIN, as reading /proc/PID/fd of another
//     user needs root anyway), and
//   - checks who answered: SO_PEERCRED of a connected stream socket holds
//     the pid that called listen(2), translated into the client's pid
//     namespace (unix(7), socket(7)): it must be PID, so a graceshim that
//     is pid 1 of its container is seen as its host pid, as $MAINPID is.

// dialControl connects to the control socket addr of the graceshim
// running as pid and checks that pid answered.
func dialControl(pid int, addr string) (*net.UnixConn, error) {
	fd, err := controlSocket(pid)
	if err != nil {
		return nil, err
	}
	sa := &unix.SockaddrUnix{Name: addr}
	if err := unix.Connect(fd, sa); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("%w: cannot connect to graceshim pid %d (%s): %v", ErrNoControl, pid, addr, err)
	}
	f := os.NewFile(uintptr(fd), "control")
	fc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("%w: cannot use the connection to graceshim pid %d: %v", ErrNoControl, pid, err)
	}
	c := fc.(*net.UnixConn)
	_, peer, err := peerCred(c)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("%w: cannot read who answered on %s: %v", ErrNoControl, addr, err)
	}
	if peer != pid {
		c.Close()
		who := fmt.Sprintf("pid %d", peer)
		if peer == 0 {
			who = "a process outside this pid namespace"
		}
		return nil, fmt.Errorf("%w: %s was answered by %s, not by graceshim pid %d (another network namespace?)", ErrNoControl, addr, who, pid)
	}
	return c, nil
}

// controlSocket creates an unconnected, close-on-exec, non-blocking unix
// stream socket in the network namespace of pid. (Non-blocking: a
// listener with a full backlog makes connect(2) fail with EAGAIN rather
// than hang.)
func controlSocket(pid int) (int, error) {
	newSocket := func() (int, error) {
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
		if err != nil {
			return -1, fmt.Errorf("cannot create a unix socket: %w", err)
		}
		return fd, nil
	}
	same, err := sameNetNS(pid)
	if err != nil {
		return -1, err
	}
	if same {
		return newSocket()
	}
	type result struct {
		fd  int
		err error
	}
	done := make(chan result, 1)
	go func() {
		// The thread enters pid's namespace for the one socket(2) and
		// goes back; should going back fail, the goroutine ends still
		// locked, and the runtime ends the thread rather than reuse it.
		runtime.LockOSThread()
		own, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			done <- result{-1, fmt.Errorf("cannot open this thread's network namespace: %w", err)}
			return
		}
		defer own.Close()
		target, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
		if err != nil {
			done <- result{-1, fmt.Errorf("%w: cannot open the network namespace of process %d: %v", ErrNoControl, pid, err)}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- result{-1, fmt.Errorf("%w: process %d is in another network namespace, where its control socket is, and entering it failed (needs CAP_SYS_ADMIN): %v", ErrNoControl, pid, err)}
			return
		}
		fd, serr := newSocket()
		if err := unix.Setns(int(own.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- result{fd, serr}
			return // still locked: the thread ends with the goroutine
		}
		runtime.UnlockOSThread()
		done <- result{fd, serr}
	}()
	r := <-done
	return r.fd, r.err
}

// sameNetNS says whether process pid is in this thread's network
// namespace.
func sameNetNS(pid int) (bool, error) {
	var own, target unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &own); err != nil {
		return false, fmt.Errorf("cannot read this process's network namespace: %w", err)
	}
	if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &target); err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
			return false, fmt.Errorf("%w: no process %d", ErrNoControl, pid)
		}
		return false, fmt.Errorf("%w: cannot read the network namespace of process %d: %v", ErrNoControl, pid, err)
	}
	return own.Dev == target.Dev && own.Ino == target.Ino, nil
}
