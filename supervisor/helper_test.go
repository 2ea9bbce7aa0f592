package supervisor

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The test binary plays the supervised server. GRACESHIM_TEST_CHILD names
// the part it plays; GRACESHIM_TEST_EVENTS is a unix socket where it
// reports what happens to it, one line per event, so tests synchronise on
// events rather than sleeps.
func TestMain(m *testing.M) {
	if role := os.Getenv("GRACESHIM_TEST_CHILD"); role != "" {
		child(role)
		return
	}
	// Run takes a terminal on stdin as the user's (it hands the child
	// the foreground, and follows it into Ctrl-Z); go test run from a
	// shell would otherwise lend the tests the developer's terminal.
	// The terminal cases are tested through a pty of their own.
	if devnull, err := os.Open(os.DevNull); err == nil {
		os.Stdin = devnull
	}
	os.Exit(m.Run())
}

func report(format string, a ...any) {
	path := os.Getenv("GRACESHIM_TEST_EVENTS")
	if path == "" {
		return
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		return
	}
	defer c.Close()
	fmt.Fprintf(c, "%d "+format+"\n", append([]any{os.Getpid()}, a...)...)
}

// child runs one role and exits.
func child(role string) {
	name, arg, _ := strings.Cut(role, ":")
	switch name {
	case "exit":
		code, _ := strconv.Atoi(arg)
		os.Exit(code)
	case "selfkill":
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	case "server":
		server(arg)
	case "notifier":
		notifier(arg) // relay_test.go
	case "sendnotify":
		sendNotify(arg) // relay_test.go
	case "controlclient":
		controlClient() // control_test.go
	case "controlserver":
		controlServer() // control_dial_test.go
	case "wdaemon":
		wdaemon() // relay_test.go
	case "wmaster":
		wmaster() // relay_test.go
	case "worker":
		// Live until the parent is gone.
		parent := os.Getppid()
		for os.Getppid() == parent {
			time.Sleep(20 * time.Millisecond)
		}
		os.Exit(0)
	case "linger":
		// A worker that drains on after its master exits, as nginx's
		// old workers finish their requests during an upgrade: it goes
		// on QUIT or TERM.
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGQUIT, syscall.SIGTERM)
		<-sigs
		os.Exit(0)
	case "daemon":
		// Fork a server in a new session and exit 0, as a daemonizing
		// master does; the server writes the pid file itself.
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "GRACESHIM_TEST_CHILD=server")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			report("error %v", err)
			os.Exit(1)
		}
		report("forked %d", cmd.Process.Pid)
		os.Exit(0)
	case "starter":
		starter() // starter_test.go
	case "orphan":
		// An intermediate process starts a grandchild and exits at once,
		// so the grandchild is reparented to the nearest subreaper: the
		// supervisor. Then serve.
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "GRACESHIM_TEST_CHILD=spawner")
		if err := cmd.Run(); err != nil {
			report("error %v", err)
			os.Exit(1)
		}
		server("")
	case "spawner":
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "GRACESHIM_TEST_CHILD=grandchild", "GRACESHIM_TEST_PARENT="+strconv.Itoa(os.Getpid()))
		if err := cmd.Start(); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	case "grandchild":
		// Wait until the parent is gone (reparented), then exit.
		parent, _ := strconv.Atoi(os.Getenv("GRACESHIM_TEST_PARENT"))
		for os.Getppid() == parent {
			time.Sleep(10 * time.Millisecond)
		}
		report("reparented to %d", os.Getppid())
		os.Exit(0)
	default:
		fmt.Fprintf(os.Stderr, "unknown test child role %q\n", role)
		os.Exit(2)
	}
}

// server listens on loopback, reports "ready PORT", holds connections, and
// reports every signal it gets. QUIT is its graceful stop: it closes the
// listener and exits 0 once the held connections are closed. In mode
// "stubborn" it ignores QUIT and TERM; in mode "workers" it runs a worker
// process and starts another on each HUP, as nginx does on a reload; in
// mode "flaky" USR1 closes its listener.
func server(mode string) {
	stubborn := mode == "stubborn"
	// The graceful signal: QUIT (nginx, unicorn) unless the test plays a
	// daemon whose graceful stop is TERM (gunicorn).
	graceful := syscall.SIGQUIT
	if os.Getenv("GRACESHIM_TEST_GRACEFUL") == "TERM" {
		graceful = syscall.SIGTERM
	}
	var workers []*exec.Cmd
	spawnWorker := func() {
		if mode != "workers" && mode != "upgradable" && mode != "upgradable-linger" {
			return
		}
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "GRACESHIM_TEST_CHILD=worker")
		if mode == "upgradable-linger" {
			cmd.Env = append(os.Environ(), "GRACESHIM_TEST_CHILD=linger")
		}
		if err := cmd.Start(); err == nil {
			report("worker %d", cmd.Process.Pid)
			workers = append(workers, cmd)
		}
	}
	spawnWorker()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		report("error %v", err)
		os.Exit(1)
	}
	if pf := os.Getenv("GRACESHIM_TEST_PIDFILE"); pf != "" {
		if d, err := time.ParseDuration(os.Getenv("GRACESHIM_TEST_PIDFILE_DELAY")); err == nil {
			time.Sleep(d) // a daemon that writes its pid file late
		}
		os.WriteFile(pf, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
	}
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGQUIT, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP,
		syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH, syscall.SIGURG,
		syscall.SIGALRM, syscall.SIGPWR, syscall.SIGABRT, syscall.SIGILL, syscall.SIGTRAP,
		syscall.SIGBUS, syscall.SIGFPE, syscall.SIGSEGV, syscall.SIGSTKFLT, syscall.SIGSYS)
	var mu sync.Mutex
	open := 0
	closed := make(chan struct{}, 64)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			open++
			mu.Unlock()
			report("accepted")
			go func() {
				buf := make([]byte, 1)
				c.Read(buf) // until the client closes
				c.Close()
				mu.Lock()
				open--
				mu.Unlock()
				closed <- struct{}{}
			}()
		}
	}()
	report("ready %d", ln.Addr().(*net.TCPAddr).Port)
	draining := false
	for {
		select {
		case sig := <-sigs:
			s := sig.(syscall.Signal)
			if s == syscall.SIGURG {
				// The Go runtime sends itself SIGURG; only one from
				// outside would be a forwarding bug, and they are not
				// told apart here. Ignore.
				continue
			}
			report("got %s", strings.TrimPrefix(unixName(s), "SIG"))
			if stubborn {
				continue
			}
			switch {
			case s == graceful:
				ln.Close()
				draining = true
				continue
			case s == syscall.SIGUSR2 && (mode == "upgradable" || mode == "upgradable-linger"):
				// A binary upgrade: a new master with a worker of its
				// own, as this master's child.
				cmd := exec.Command(os.Args[0])
				cmd.Env = append(os.Environ(), "GRACESHIM_TEST_CHILD=server:"+mode)
				if err := cmd.Start(); err == nil {
					report("new master %d", cmd.Process.Pid)
				}
				continue
			}
			switch s {
			case syscall.SIGUSR1:
				if mode == "flaky" {
					ln.Close() // stops answering health checks
				}
			case syscall.SIGHUP:
				spawnWorker()
			case syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT:
				report("exit fast")
				os.Exit(3)
			}
		case <-closed:
		case <-time.After(20 * time.Millisecond):
		}
		mu.Lock()
		n := open
		mu.Unlock()
		if draining && n == 0 {
			report("exit drained")
			if mode == "workers" || mode == "upgradable" {
				// A master stops its workers before it exits.
				for _, w := range workers {
					w.Process.Signal(syscall.SIGKILL)
					w.Wait()
				}
			}
			os.Exit(0)
		}
	}
}

func unixName(s syscall.Signal) string {
	names := map[syscall.Signal]string{
		syscall.SIGQUIT: "QUIT", syscall.SIGTERM: "TERM", syscall.SIGINT: "INT", syscall.SIGHUP: "HUP",
		syscall.SIGUSR1: "USR1", syscall.SIGUSR2: "USR2", syscall.SIGWINCH: "WINCH",
		syscall.SIGALRM: "ALRM", syscall.SIGPWR: "PWR", syscall.SIGABRT: "ABRT", syscall.SIGILL: "ILL",
		syscall.SIGTRAP: "TRAP", syscall.SIGBUS: "BUS", syscall.SIGFPE: "FPE", syscall.SIGSEGV: "SEGV",
		syscall.SIGSTKFLT: "STKFLT", syscall.SIGSYS: "SYS",
	}
	return names[s]
}

// events collects the lines children report.
type events struct {
	t     *testing.T
	path  string
	lines chan string
	seen  []string // lines received and not yet waited for
}

func newEvents(t *testing.T) *events {
	t.Helper()
	// Keep the path short: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "gs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	e := &events{t: t, path: dir + "/ev", lines: make(chan string, 256)}
	ln, err := net.Listen("unix", e.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					e.lines <- sc.Text()
				}
			}()
		}
	}()
	return e
}

// wait returns the first line, in arrival order, whose text (after the
// pid) starts with prefix, and consumes it; lines that do not match stay
// for later waits. The timeout only guards against hangs.
func (e *events) wait(prefix string) (pid int, rest string) {
	e.t.Helper()
	pid, rest, ok := e.within(prefix, 20*time.Second)
	if !ok {
		e.t.Fatalf("no event %q within 20s (seen: %q)", prefix, e.seen)
	}
	return pid, rest
}

// waitAny is wait for a line that may not come: it returns "" when none
// has come within 200ms.
func (e *events) waitAny(prefix string) (pid int, rest string) {
	pid, rest, _ = e.within(prefix, 200*time.Millisecond)
	return pid, rest
}

func (e *events) within(prefix string, d time.Duration) (pid int, rest string, ok bool) {
	deadline := time.After(d)
	for {
		for i, l := range e.seen {
			p, text, _ := strings.Cut(l, " ")
			if strings.HasPrefix(text, prefix) {
				e.seen = append(e.seen[:i], e.seen[i+1:]...)
				pid, _ = strconv.Atoi(p)
				return pid, strings.TrimSpace(strings.TrimPrefix(text, prefix)), true
			}
		}
		select {
		case l := <-e.lines:
			e.seen = append(e.seen, l)
		case <-deadline:
			return 0, "", false
		}
	}
}

// none checks that no line starting with prefix arrives within d.
func (e *events) none(prefix string, d time.Duration) {
	e.t.Helper()
	deadline := time.After(d)
	for {
		for _, l := range e.seen {
			if _, text, _ := strings.Cut(l, " "); strings.HasPrefix(text, prefix) {
				e.t.Fatalf("unexpected event %q", l)
			}
		}
		select {
		case l := <-e.lines:
			e.seen = append(e.seen, l)
		case <-deadline:
			return
		}
	}
}

// notifySocket is a real unixgram socket standing in for systemd's
// NOTIFY_SOCKET; it records every datagram.
type notifySocket struct {
	conn *net.UnixConn
	msgs chan string
}

func newNotifySocket(t *testing.T) *notifySocket {
	t.Helper()
	dir, err := os.MkdirTemp("", "gsn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := dir + "/notify"
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	n := &notifySocket{conn: conn, msgs: make(chan string, 1024)}
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				close(n.msgs)
				return
			}
			for _, line := range strings.Split(string(buf[:k]), "\n") {
				n.msgs <- line
			}
		}
	}()
	return n
}

// drain returns every line sent to the socket so far. A marker datagram
// sent behind them makes sure the reader has taken them all: a unix
// datagram socket keeps order, and a datagram sent before drain (the last
// STATUS= of a Run that returned) may still wait in the kernel's queue.
func (n *notifySocket) drain() []string {
	const marker = "graceshim-test-drain-marker"
	if c, err := net.DialUnix("unixgram", nil, n.conn.LocalAddr().(*net.UnixAddr)); err == nil {
		c.Write([]byte(marker))
		c.Close()
	}
	var out []string
	timeout := time.After(10 * time.Second) // a hang guard only
	for {
		select {
		case m, ok := <-n.msgs:
			if !ok || m == marker {
				return out
			}
			out = append(out, m)
		case <-timeout:
			return out
		}
	}
}
