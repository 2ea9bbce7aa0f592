package conns

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The test binary doubles as the processes the tests count: a server
// (master plus optional workers sharing its listeners, like nginx) and a
// load client. TestMain runs the helper named by helperEnv instead of the
// tests, as os/exec's exec_test.go does. Each helper reads commands on
// stdin, answers one line per command on stdout, and exits when stdin
// closes, so a test that dies takes its helpers with it.
const (
	helperEnv  = "GRACESHIM_CONNS_HELPER" // "server", "worker" or "client"
	listenEnv  = "GRACESHIM_CONNS_LISTEN" // server: comma-separated listen addresses
	workersEnv = "GRACESHIM_CONNS_WORKERS"
	nlnEnv     = "GRACESHIM_CONNS_NLISTENERS" // worker: listeners passed from fd 3 on
	targetEnv  = "GRACESHIM_CONNS_TARGET"     // client: address to dial
	countEnv   = "GRACESHIM_CONNS_N"          // client: connections to open
	sourceEnv  = "GRACESHIM_CONNS_SOURCE"     // client: local IP to dial from
	reuseEnv   = "GRACESHIM_CONNS_REUSEPORT"  // server: listen with SO_REUSEPORT

	hangGuard = 2 * time.Minute // only guards against a hang; nothing waits for it
)

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "server":
		helperServer()
	case "worker":
		helperWorker()
	case "client":
		helperClient()
	case "userver":
		helperUnixServer()
	default:
		fmt.Fprintf(os.Stderr, "unknown helper %q\n", os.Getenv(helperEnv))
		os.Exit(2)
	}
	os.Exit(0)
}

func helperFail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "helper %d: "+format+"\n", append([]any{os.Getpid()}, args...)...)
	fmt.Printf("error "+format+"\n", args...)
	os.Exit(1)
}

// raiseNofile lifts the soft descriptor limit to the hard one (20,000
// here; FACTS §5).
func raiseNofile() {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		helperFail("cannot read RLIMIT_NOFILE: %v", err)
	}
	r.Cur = r.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		helperFail("cannot raise RLIMIT_NOFILE: %v", err)
	}
}

// holder keeps accepted and dialled connections open until told otherwise.
// Each accepted connection has a reader that closes it on EOF, so a
// client closing its end makes the server close too.
type holder struct {
	mu        sync.Mutex // guards conns and lastClose
	conns     map[*net.TCPConn]bool
	lastClose int64 // when an accepted connection was last closed, Unix nanoseconds
	lns       []*net.TCPListener
}

func (h *holder) serve(ln *net.TCPListener) {
	for {
		c, err := ln.AcceptTCP()
		if err != nil {
			return // listener closed
		}
		// Keepalive off: at 50k loopback connections it makes this VM abort
		// connections (FACTS §5).
		c.SetKeepAlive(false)
		h.hold(c, true)
	}
}

func (h *holder) hold(c *net.TCPConn, read bool) {
	h.mu.Lock()
	h.conns[c] = true
	h.mu.Unlock()
	if !read {
		return
	}
	go func() {
		io.Copy(io.Discard, c)
		// Stamped before the close: the kernel may announce the socket
		// freed before this goroutine runs again.
		at := time.Now().UnixNano()
		c.Close()
		h.mu.Lock()
		h.lastClose = max(h.lastClose, at)
		delete(h.conns, c)
		h.mu.Unlock()
	}()
}

// command runs one of the commands both masters and workers understand
// and returns the answer.
func (h *holder) command(line string) string {
	f := strings.Fields(line)
	if len(f) == 0 {
		return "error empty command"
	}
	switch f[0] {
	case "close-listeners":
		for _, ln := range h.lns {
			ln.Close()
		}
		return "ok"
	case "last-close":
		h.mu.Lock()
		defer h.mu.Unlock()
		return "last-close " + strconv.FormatInt(h.lastClose, 10)
	case "held":
		h.mu.Lock()
		defer h.mu.Unlock()
		return "held " + strconv.Itoa(len(h.conns))
	case "shutdown-wr":
		h.mu.Lock()
		defer h.mu.Unlock()
		for c := range h.conns {
			c.CloseWrite()
		}
		return "ok"
	case "close-conns":
		// The server closes first (an idle keep-alive connection at a
		// graceful stop): its end goes FIN_WAIT, then TIME_WAIT.
		h.mu.Lock()
		defer h.mu.Unlock()
		for c := range h.conns {
			c.Close()
		}
		return "ok"
	case "cut-conns":
		// The server cuts its connections short, as a shutdown timeout
		// does: data the client has not read is still queued, and the
		// close resets (SO_LINGER 0). The write stops at its deadline
		// once the client's receive buffer and ours are full: the client
		// never reads.
		h.mu.Lock()
		defer h.mu.Unlock()
		big := make([]byte, 64<<20)
		for c := range h.conns {
			c.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
			if n, err := c.Write(big); err == nil {
				return "error the client read " + strconv.Itoa(n) + " bytes"
			}
			c.SetLinger(0)
			c.Close()
		}
		return "ok"
	case "relisten":
		// A server that replaces its listener by a new one on another
		// port (short-lived listeners).
		for _, ln := range h.lns {
			ln.Close()
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "error " + err.Error()
		}
		h.lns = []*net.TCPListener{ln.(*net.TCPListener)}
		go h.serve(h.lns[0])
		return "ok " + ln.Addr().String()
	case "dial":
		d := net.Dialer{KeepAlive: -1}
		c, err := d.Dial("tcp", f[1])
		if err != nil {
			return "error " + err.Error()
		}
		h.hold(c.(*net.TCPConn), false)
		return "ok"
	}
	return "error unknown command " + f[0]
}

func helperServer() {
	raiseNofile()
	h := &holder{conns: map[*net.TCPConn]bool{}}
	lc := net.ListenConfig{KeepAlive: -1}
	if os.Getenv(reuseEnv) != "" {
		// Two servers on one port, as in an SO_REUSEPORT handover.
		lc.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			})
			return serr
		}
	}
	var addrs []string
	var files []*os.File
	for _, a := range strings.Split(os.Getenv(listenEnv), ",") {
		ln, err := lc.Listen(context.Background(), "tcp", a)
		if err != nil {
			helperFail("cannot listen on %s: %v", a, err)
		}
		tl := ln.(*net.TCPListener)
		h.lns = append(h.lns, tl)
		addrs = append(addrs, tl.Addr().String())
		files = append(files, listenerFile(tl))
	}
	nworkers, _ := strconv.Atoi(os.Getenv(workersEnv))
	type worker struct {
		cmd *exec.Cmd
		in  io.WriteCloser
		out *bufio.Scanner
	}
	var workers []worker
	pids := []string{strconv.Itoa(os.Getpid())}
	for i := 0; i < nworkers; i++ {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), helperEnv+"=worker", nlnEnv+"="+strconv.Itoa(len(files)))
		cmd.ExtraFiles = files
		cmd.Stderr = os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		in, err := cmd.StdinPipe()
		if err != nil {
			helperFail("cannot make worker pipe: %v", err)
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			helperFail("cannot make worker pipe: %v", err)
		}
		if err := cmd.Start(); err != nil {
			helperFail("cannot start worker: %v", err)
		}
		w := worker{cmd, in, bufio.NewScanner(out)}
		if !w.out.Scan() || w.out.Text() != "ready" {
			helperFail("worker %d did not start: %q", cmd.Process.Pid, w.out.Text())
		}
		workers = append(workers, w)
		pids = append(pids, strconv.Itoa(cmd.Process.Pid))
	}
	for _, f := range files {
		f.Close()
	}
	if nworkers == 0 {
		for _, ln := range h.lns {
			go h.serve(ln)
		}
	}
	fmt.Printf("ready pids=%s addrs=%s\n", strings.Join(pids, ","), strings.Join(addrs, ","))

	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		line := in.Text()
		reply := h.command(line)
		if !strings.HasPrefix(line, "dial ") { // dial: the master's own outbound connection
			held := 0
			for _, w := range workers {
				fmt.Fprintln(w.in, line)
				if !w.out.Scan() {
					helperFail("worker %d is gone", w.cmd.Process.Pid)
				}
				r := w.out.Text()
				if n, ok := strings.CutPrefix(r, "held "); ok {
					k, _ := strconv.Atoi(n)
					held += k
				} else if t, ok := strings.CutPrefix(r, "last-close "); ok {
					w, _ := strconv.ParseInt(t, 10, 64)
					m, _ := strconv.ParseInt(strings.TrimPrefix(reply, "last-close "), 10, 64)
					reply = "last-close " + strconv.FormatInt(max(w, m), 10)
				} else if r != "ok" {
					reply = r
				}
			}
			if n, ok := strings.CutPrefix(reply, "held "); ok {
				k, _ := strconv.Atoi(n)
				reply = "held " + strconv.Itoa(k+held)
			}
		}
		fmt.Println(reply)
	}
	for _, w := range workers {
		w.in.Close()
		w.cmd.Wait()
	}
}

// listenerFile returns a copy of ln's descriptor to hand to a worker.
// Not ln.File(): exec calls Fd on ExtraFiles, and Fd puts a File that net
// made into blocking mode. The mode belongs to the socket, shared by every
// copy, so a worker already serving would be left in an accept(2) that
// blocks in the kernel, and that Close cannot interrupt. A plain dup
// wrapped by os.NewFile keeps the socket non-blocking.
func listenerFile(ln *net.TCPListener) *os.File {
	rc, err := ln.SyscallConn()
	if err != nil {
		helperFail("cannot get listener descriptor: %v", err)
	}
	var fd int
	var dupErr error
	if err := rc.Control(func(s uintptr) {
		fd, dupErr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil || dupErr != nil {
		helperFail("cannot copy listener descriptor: %v %v", err, dupErr)
	}
	return os.NewFile(uintptr(fd), "listener")
}

func helperWorker() {
	raiseNofile()
	h := &holder{conns: map[*net.TCPConn]bool{}}
	n, _ := strconv.Atoi(os.Getenv(nlnEnv))
	for i := 0; i < n; i++ {
		f := os.NewFile(uintptr(3+i), "listener")
		ln, err := net.FileListener(f)
		if err != nil {
			helperFail("cannot use inherited listener: %v", err)
		}
		f.Close()
		h.lns = append(h.lns, ln.(*net.TCPListener))
		go h.serve(ln.(*net.TCPListener))
	}
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		fmt.Println(h.command(in.Text()))
	}
}

// helperClient opens countEnv connections to targetEnv from sourceEnv,
// answers "ready N" and holds them until stdin closes.
func helperClient() {
	raiseNofile()
	n, _ := strconv.Atoi(os.Getenv(countEnv))
	src := &net.TCPAddr{IP: net.ParseIP(os.Getenv(sourceEnv))}
	d := net.Dialer{LocalAddr: src, KeepAlive: -1}
	target := os.Getenv(targetEnv)
	var (
		mu    sync.Mutex // guards conns and first
		conns []net.Conn
		first error
		wg    sync.WaitGroup
	)
	next := make(chan struct{}, n)
	for i := 0; i < n; i++ {
		next <- struct{}{}
	}
	close(next)
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				c, err := d.Dial("tcp", target)
				mu.Lock()
				if err != nil {
					if first == nil {
						first = err
					}
				} else {
					conns = append(conns, c)
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		helperFail("cannot dial %s from %s after %d connections: %v", target, src, len(conns), first)
	}
	fmt.Printf("ready %d\n", len(conns))
	// "close D": close every connection, evenly spread over the duration
	// D, and answer with the time of the last close (Unix nanoseconds).
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		d, ok := strings.CutPrefix(in.Text(), "close ")
		if !ok {
			fmt.Println("error unknown command")
			continue
		}
		over, err := time.ParseDuration(d)
		if err != nil {
			fmt.Println("error " + err.Error())
			continue
		}
		start := time.Now()
		var last time.Time
		for i, c := range conns {
			if wait := time.Until(start.Add(over * time.Duration(i) / time.Duration(len(conns)))); wait > 0 {
				time.Sleep(wait)
			}
			c.Close()
			last = time.Now()
		}
		fmt.Printf("closed %d\n", last.UnixNano())
		conns = nil
	}
	for _, c := range conns {
		c.(*net.TCPConn).SetLinger(0) // reset: no TIME_WAIT left behind
		c.Close()
	}
}

// helper is a running helper process, seen from the test.
type helper struct {
	tb    testing.TB
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string
	once  sync.Once // stop runs once, whoever calls it first
}

func startHelper(tb testing.TB, env ...string) *helper {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	// The race runtime sleeps a second before exiting unless told not to.
	cmd.Env = append(append(os.Environ(), "GORACE=atexit_sleep_ms=0"), env...)
	cmd.Stderr = os.Stderr
	// Its own process group, so cleanup can kill master and workers at once.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	in, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("cannot start helper: %v", err)
	}
	h := &helper{tb: tb, cmd: cmd, in: in, lines: make(chan string)}
	go func() {
		s := bufio.NewScanner(out)
		for s.Scan() {
			h.lines <- s.Text()
		}
		close(h.lines)
	}()
	tb.Cleanup(h.stop)
	return h
}

// stop ends the helper and everything it started: stdin closes (a clean
// exit), then the process group gets SIGKILL in case it did not listen.
func (h *helper) stop() {
	h.once.Do(h.kill)
}

func (h *helper) kill() {
	h.in.Close()
	done := make(chan struct{})
	go func() {
		h.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
	syscall.Kill(-h.cmd.Process.Pid, syscall.SIGKILL)
	<-done
}

// line waits for the helper's next line of output.
func (h *helper) line() string {
	h.tb.Helper()
	select {
	case l, ok := <-h.lines:
		if !ok {
			h.tb.Fatalf("helper %d exited", h.cmd.Process.Pid)
		}
		if strings.HasPrefix(l, "error ") {
			h.tb.Fatalf("helper %d: %s", h.cmd.Process.Pid, l)
		}
		return l
	case <-time.After(hangGuard):
		// Have the helpers print their goroutines (to our stderr) before
		// the test fails, so a hang can be diagnosed.
		syscall.Kill(-h.cmd.Process.Pid, syscall.SIGQUIT)
		time.Sleep(time.Second)
		h.tb.Fatalf("helper %d did not answer", h.cmd.Process.Pid)
	}
	return ""
}

// do sends one command and returns the answer.
func (h *helper) do(cmd string) string {
	h.tb.Helper()
	if _, err := fmt.Fprintln(h.in, cmd); err != nil {
		h.tb.Fatalf("cannot send %q to helper: %v", cmd, err)
	}
	return h.line()
}

// server is a running server helper.
type server struct {
	*helper
	pid   int
	pids  []int    // master first, then workers
	addrs []string // actual listen addresses, in the order asked for
}

// startServer starts a server helper listening on addrs (port 0 picks
// one) with the given number of worker processes (0: the master serves).
func startServer(tb testing.TB, workers int, addrs ...string) *server {
	tb.Helper()
	return startServerEnv(tb, workers, nil, addrs...)
}

func startServerEnv(tb testing.TB, workers int, env []string, addrs ...string) *server {
	tb.Helper()
	h := startHelper(tb, append(env, helperEnv+"=server", listenEnv+"="+strings.Join(addrs, ","),
		workersEnv+"="+strconv.Itoa(workers))...)
	s := &server{helper: h, pid: h.cmd.Process.Pid}
	var pids, as string
	if _, err := fmt.Sscanf(h.line(), "ready pids=%s addrs=%s", &pids, &as); err != nil {
		tb.Fatalf("server helper: %v", err)
	}
	for _, p := range strings.Split(pids, ",") {
		n, _ := strconv.Atoi(p)
		s.pids = append(s.pids, n)
	}
	s.addrs = strings.Split(as, ",")
	return s
}

// held asks the server tree how many connections it holds.
func (s *server) held() int {
	s.tb.Helper()
	n, err := strconv.Atoi(strings.TrimPrefix(s.do("held"), "held "))
	if err != nil {
		s.tb.Fatal(err)
	}
	return n
}

// startClient starts a client helper holding n connections to target from
// the local address src, and waits until all are open.
func startClient(tb testing.TB, target, src string, n int) *helper {
	tb.Helper()
	h := startHelper(tb, helperEnv+"=client", targetEnv+"="+target, sourceEnv+"="+src,
		countEnv+"="+strconv.Itoa(n))
	if l := h.line(); l != "ready "+strconv.Itoa(n) {
		tb.Fatalf("client helper: %q", l)
	}
	return h
}

// helperUnixServer listens on the unix socket listenEnv names (a path, or
// "@name" for an abstract one), holds the connections it accepts until
// their client closes, and answers "ready" and then "held N".
func helperUnixServer() {
	name := os.Getenv(listenEnv)
	ln, err := net.Listen("unix", name)
	if err != nil {
		helperFail("cannot listen on %s: %v", name, err)
	}
	var (
		mu   sync.Mutex // guards held
		held int
	)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held++
			mu.Unlock()
			go func() {
				io.Copy(io.Discard, c)
				c.Close()
				mu.Lock()
				held--
				mu.Unlock()
			}()
		}
	}()
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		mu.Lock()
		fmt.Printf("held %d\n", held)
		mu.Unlock()
	}
}

// startUnixServer starts a unix server helper listening on name.
func startUnixServer(tb testing.TB, name string) *server {
	tb.Helper()
	h := startHelper(tb, helperEnv+"=userver", listenEnv+"="+name)
	if l := h.line(); l != "ready" {
		tb.Fatalf("unix server helper: %q", l)
	}
	return &server{helper: h, pid: h.cmd.Process.Pid, pids: []int{h.cmd.Process.Pid}, addrs: []string{name}}
}
