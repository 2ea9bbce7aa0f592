package supervisor

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// controlServer serves a control socket, as graceshim does, answering
// every request with its own pid; it prints the socket's name and runs
// until its stdin closes.
func controlServer() {
	ln, err := listenControl()
	if err != nil {
		fmt.Println("listen:", err)
		os.Exit(1)
	}
	reqs := make(chan controlReq)
	go serveControl(context.Background(), ln, NewLogger(io.Discard, LevelError), reqs)
	go func() {
		for r := range reqs {
			r.reply <- ControlReply{OK: true, Message: fmt.Sprintf("served by pid %d", os.Getpid())}
		}
	}()
	fmt.Println(ln.Addr().String())
	io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

// impostor listens on the abstract name addr in the test's network
// namespace and answers every request as a graceshim would, with a
// message of its own.
func impostor(t *testing.T, addr string) {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: addr, Net: "unix"})
	if err != nil {
		t.Fatalf("impostor cannot listen on %s: %v", addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			bufio.NewReader(c).ReadString('\n')
			b, _ := json.Marshal(ControlReply{OK: true, Message: "impostor"})
			c.Write(append(b, '\n'))
			c.Close()
		}
	}()
}

// TestControlOtherNetNS: `graceshim reload PID` of a graceshim in a
// network namespace of its own (a container's) reaches that graceshim,
// though its control socket's name is bound to another process in the
// client's namespace.
func TestControlOtherNetNS(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to make a network namespace")
	}
	srv := exec.Command(os.Args[0])
	srv.Env = append(os.Environ(), "GRACESHIM_TEST_CHILD=controlserver")
	srv.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	srv.Stderr = os.Stderr
	stdin, err := srv.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := srv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatalf("cannot start a control server in a new network namespace: %v", err)
	}
	defer func() { stdin.Close(); srv.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("control server: %v", err)
	}
	addr := strings.TrimSpace(line)
	if !strings.HasPrefix(addr, controlPrefix) {
		t.Fatalf("control server: %q", addr)
	}
	got, err := ControlAddr(srv.Process.Pid)
	if err != nil || got != addr {
		t.Fatalf("ControlAddr = %q, %v; want %q", got, err, addr)
	}
	impostor(t, addr)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := Control(ctx, srv.Process.Pid, "reload")
	want := fmt.Sprintf("served by pid %d", srv.Process.Pid)
	if err != nil || r.Message != want {
		t.Errorf("Control(pid %d in another network namespace) = %+v, %v; want %q", srv.Process.Pid, r, err, want)
	}
}

// TestControlPeerIsPID: a control socket answered by another process than
// the pid asked for is no graceshim to talk to.
func TestControlPeerIsPID(t *testing.T) {
	addr := fmt.Sprintf("%s%d/control/test-%d", controlPrefix, os.Getpid(), time.Now().UnixNano())
	impostor(t, addr)
	sleep := exec.Command("sleep", "30")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sleep.Process.Kill(); sleep.Wait() }()
	c, err := dialControl(sleep.Process.Pid, addr)
	if err == nil {
		c.Close()
	}
	if !errors.Is(err, ErrNoControl) || !strings.Contains(err.Error(), fmt.Sprintf("answered by pid %d, not by graceshim pid %d", os.Getpid(), sleep.Process.Pid)) {
		t.Errorf("dialControl(sleep's pid, a socket of the test's) = %v, want answered by pid %d", err, os.Getpid())
	}
	// The test's own pid is who answers there.
	c, err = dialControl(os.Getpid(), addr)
	if err != nil {
		t.Fatalf("dialControl(own pid) = %v", err)
	}
	c.Close()
}
