package supervisor

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The control socket lets commands talk to a running graceshim:
// `graceshim reload PID` (systemd's ExecReload=) and `graceshim status`
// (control_status.go). It is an abstract unix stream socket named
// "@graceshim/<pid>/control/<random>":
//
//   - abstract, so it needs no directory that works under the system
//     manager, a user manager and in a container alike, and leaves nothing
//     behind when graceshim is killed;
//   - found by the client from the pid alone, through the socket inodes
//     among /proc/PID/fd and the names in /proc/PID/net/unix, so the pid
//     may be the one seen from outside a pid namespace (systemd's
//     $MAINPID of a container's graceshim) and two graceshims that are
//     both pid 1 of their containers in one network namespace (a pod)
//     do not collide;
//   - open to root and to graceshim's own user only: the peer's
//     credentials (SO_PEERCRED) are checked on every connection. Reading
//     /proc/PID/fd needs the same rights, so the client fails early and
//     clearly for anyone else.
//
// The protocol is one line each way: the request is a command word
// ("reload", "status"), the response one JSON object (ControlReply).
// Each client is served by a goroutine of its own, so status clients at
// once are all answered.

// controlPrefix starts the names of graceshim's control sockets.
const controlPrefix = "@graceshim/"

// controlReadTimeout bounds the wait for a client's request line.
const controlReadTimeout = 10 * time.Second

// ControlReply is graceshim's answer to a control request.
type ControlReply struct {
	// OK says the request was carried out.
	OK bool `json:"ok"`
	// Message says what happened, or why it did not.
	Message string `json:"message"`
	// Output is the output of a config test that failed.
	Output string `json:"output,omitempty"`
	// Status answers a status request (control_status.go).
	Status *Status `json:"status,omitempty"`
}

// controlReq is one request passed to the event loop, which answers on
// reply (buffered: the loop never blocks on it).
type controlReq struct {
	cmd   string
	reply chan ControlReply
}

// listenControl opens graceshim's control socket.
func listenControl() (*net.UnixListener, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("cannot name the control socket: %w", err)
	}
	name := fmt.Sprintf("%s%d/control/%s", controlPrefix, os.Getpid(), hex.EncodeToString(b[:]))
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: name, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("cannot listen on control socket %s: %w", name, err)
	}
	return ln, nil
}

// serveControl answers clients until ctx ends.
func serveControl(ctx context.Context, ln *net.UnixListener, log *Logger, reqs chan<- controlReq) {
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			log.Warnf("control socket: %v", err)
			time.Sleep(10 * time.Millisecond) // EMFILE and the like: do not spin
			continue
		}
		go handleControl(ctx, c, log, reqs)
	}
}

func handleControl(ctx context.Context, c *net.UnixConn, log *Logger, reqs chan<- controlReq) {
	defer c.Close()
	answer := func(r ControlReply) {
		b, _ := json.Marshal(r)
		_ = c.SetWriteDeadline(time.Now().Add(controlReadTimeout))
		_, _ = c.Write(append(b, '\n'))
	}
	uid, pid, err := peerCred(c)
	if err != nil {
		log.Warnf("control socket: cannot read the client's credentials: %v", err)
		return
	}
	if uid != 0 && uid != os.Geteuid() {
		log.Warnf("control socket: refused pid %d of uid %d: only root and uid %d may control graceshim", pid, uid, os.Geteuid())
		answer(ControlReply{Message: fmt.Sprintf("permission denied: only root and uid %d may control this graceshim", os.Geteuid())})
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(controlReadTimeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		answer(ControlReply{Message: "no request line: " + err.Error()})
		return
	}
	cmd := strings.TrimSpace(line)
	switch cmd {
	case "reload", "status":
	default:
		answer(ControlReply{Message: fmt.Sprintf("unknown request %q (known: reload, status)", cmd)})
		return
	}
	if cmd == "status" {
		// Asked often by scripts: not worth a line each time.
		log.Debugf("control socket: %s asked by pid %d (uid %d)", cmd, pid, uid)
	} else {
		log.Infof("control socket: %s asked by pid %d (uid %d)", cmd, pid, uid)
	}
	req := controlReq{cmd: cmd, reply: make(chan ControlReply, 1)}
	select {
	case reqs <- req:
	case <-ctx.Done():
		answer(ControlReply{Message: "graceshim is ending"})
		return
	}
	select {
	case r := <-req.reply:
		answer(r)
	case <-ctx.Done():
		answer(ControlReply{Message: "graceshim is ending"})
	}
}

func peerCred(c *net.UnixConn) (uid, pid int, err error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, 0, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, 0, err
	}
	if cerr != nil {
		return 0, 0, cerr
	}
	return int(cred.Uid), int(cred.Pid), nil
}

// ErrNoControl marks a pid that is no graceshim one can talk to: no such
// process, no control socket, or no right to look.
var ErrNoControl = errors.New("no graceshim to talk to")

// ErrRefused marks a request graceshim answered with a failure.
var ErrRefused = errors.New("refused")

// ControlAddr finds the control socket of the graceshim running as pid.
func ControlAddr(pid int) (string, error) {
	if pid <= 0 {
		return "", fmt.Errorf("%w: bad pid %d", ErrNoControl, pid)
	}
	if err := unix.Kill(pid, 0); errors.Is(err, unix.ESRCH) {
		return "", fmt.Errorf("%w: no process %d", ErrNoControl, pid)
	}
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return "", fmt.Errorf("%w: cannot look at process %d: %v (run as root or as its user)", ErrNoControl, pid, err)
		}
		return "", fmt.Errorf("%w: cannot look at process %d: %v", ErrNoControl, pid, err)
	}
	inodes := map[string]bool{}
	for _, e := range ents {
		link, err := os.Readlink(dir + "/" + e.Name())
		if err == nil && strings.HasPrefix(link, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	// /proc/PID/net/unix lists the sockets of the process's own network
	// namespace: "Num RefCount Protocol Flags Type St Inode Path".
	table, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/unix", pid))
	if err != nil {
		return "", fmt.Errorf("%w: cannot read the unix sockets of process %d: %v", ErrNoControl, pid, err)
	}
	for _, line := range strings.Split(string(table), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 8 || !inodes[f[6]] {
			continue
		}
		if name := f[7]; strings.HasPrefix(name, controlPrefix) && strings.Contains(name, "/control/") {
			return name, nil
		}
	}
	comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return "", fmt.Errorf("%w: process %d (%s) has no graceshim control socket: is it graceshim (the unit's main process)?", ErrNoControl, pid, strings.TrimSpace(string(comm)))
}

// Control sends cmd to the graceshim running as pid and waits for its
// reply, until ctx ends. It connects from pid's network namespace and
// talks only to pid itself (control_dial.go).
func Control(ctx context.Context, pid int, cmd string) (ControlReply, error) {
	addr, err := ControlAddr(pid)
	if err != nil {
		return ControlReply{}, err
	}
	c, err := dialControl(pid, addr)
	if err != nil {
		return ControlReply{}, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	if _, err := c.Write([]byte(cmd + "\n")); err != nil {
		return ControlReply{}, fmt.Errorf("cannot send %s to graceshim pid %d: %w", cmd, pid, err)
	}
	line, err := bufio.NewReader(c).ReadBytes('\n')
	if err != nil {
		if ctx.Err() != nil {
			return ControlReply{}, fmt.Errorf("no answer from graceshim pid %d to %s: %w", pid, cmd, ctx.Err())
		}
		return ControlReply{}, fmt.Errorf("no answer from graceshim pid %d to %s: %w", pid, cmd, err)
	}
	var r ControlReply
	if err := json.Unmarshal(line, &r); err != nil {
		return ControlReply{}, fmt.Errorf("unreadable answer from graceshim pid %d: %w: %q", pid, err, line)
	}
	if !r.OK {
		return r, fmt.Errorf("%w: %s", ErrRefused, r.Message)
	}
	return r, nil
}
