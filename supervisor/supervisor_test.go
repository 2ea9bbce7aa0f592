package supervisor

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/graceshim/graceshim/signals"
)

// Run makes the test process a subreaper and waits for every child, so
// these tests run one at a time, never in parallel.

type runResult struct{ err error }

// start runs the supervisor over the test binary playing role.
func start(t *testing.T, role string, tweak func(*Options)) (ev *events, done <-chan runResult, cancel func()) {
	t.Helper()
	ev = newEvents(t)
	t.Setenv("GRACESHIM_TEST_CHILD", role)
	t.Setenv("GRACESHIM_TEST_EVENTS", ev.path)
	nginx, _ := signals.Lookup("nginx")
	// The test binary plays nginx but has no configuration to test
	// (nginx -t): the tests of refused reloads set their own check.
	nginx.ConfigTest = nil
	opts := Options{
		Argv:         []string{os.Args[0]},
		Preset:       nginx, // QUIT graceful, TERM fast
		ReadyTimeout: 5 * time.Second,
		KillTimeout:  2 * time.Second,
		Log:          NewLogger(testWriter{t}, LevelDebug),
	}
	if tweak != nil {
		tweak(&opts)
	}
	ctx, cancelCtx := context.WithCancel(context.Background())
	ch := make(chan runResult, 1)
	returned := make(chan struct{})
	go func() {
		ch <- runResult{Run(ctx, opts)}
		close(returned)
	}()
	t.Cleanup(func() {
		cancelCtx()
		select {
		case <-returned:
		case <-time.After(30 * time.Second):
			t.Error("supervisor did not return within 30s of the test's end")
		}
	})
	return ev, ch, cancelCtx
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func result(t *testing.T, done <-chan runResult) error {
	t.Helper()
	select {
	case r := <-done:
		return r.err
	case <-time.After(30 * time.Second):
		t.Fatal("supervisor did not return within 30s")
	}
	return nil
}

func selfSignal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := syscall.Kill(os.Getpid(), sig); err != nil {
		t.Fatal(err)
	}
}

// dial connects to the test server and waits until it accepted: a
// connection still in the listen backlog is reset when the server closes
// its listener, as nginx's are.
func dial(t *testing.T, ev *events, port string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ev.wait("accepted")
	return c
}

func TestRunExitStatus(t *testing.T) {
	tests := []struct {
		role string
		want int
	}{
		{"exit:0", 0},
		{"exit:3", 3},
		{"exit:42", 42},
		{"selfkill", 128 + 9},
	}
	for _, tt := range tests {
		t.Run(tt.role, func(t *testing.T) {
			_, done, _ := start(t, tt.role, func(o *Options) { o.Ready = ReadyExec })
			err := result(t, done)
			got := 0
			var st *ExitStatus
			if errors.As(err, &st) {
				got = st.Code()
			} else if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if got != tt.want {
				t.Errorf("exit code %d, want %d (%v)", got, tt.want, err)
			}
		})
	}
}

func TestRunStartErrors(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "script")
	os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644)
	tests := []struct {
		argv0 string
		want  error
	}{
		{"graceshim-no-such-command", exec.ErrNotFound},
		{filepath.Join(dir, "missing"), exec.ErrNotFound},
		{notExec, fs.ErrPermission},
		{dir, fs.ErrPermission},
	}
	for _, tt := range tests {
		err := Run(context.Background(), Options{Argv: []string{tt.argv0}, Log: NewLogger(testWriter{t}, LevelDebug)})
		if !errors.Is(err, tt.want) {
			t.Errorf("Run(%s) = %v, want %v", tt.argv0, err, tt.want)
		}
	}
}

// TestRunGracefulStop: TERM becomes QUIT; the stop waits for the held
// connection; systemd hears READY, STOPPING, STATUS and extensions in order.
func TestRunGracefulStop(t *testing.T) {
	ns := newNotifySocket(t)
	ev, done, _ := start(t, "server", nil)
	_, port := ev.wait("ready ")
	c := dial(t, ev, port)
	waitNotify(t, ns, "READY=1")

	selfSignal(t, syscall.SIGTERM)
	ev.wait("got QUIT")
	// The server drains: the supervisor must still be waiting.
	ev.none("exit", 1500*time.Millisecond)
	select {
	case r := <-done:
		t.Fatalf("supervisor returned while a connection was open: %v", r.err)
	default:
	}
	c.Close()
	ev.wait("exit drained")
	if err := result(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
	// The socket is read asynchronously: wait for the last line rather
	// than take what has been read so far.
	msgs := collectUntil(t, ns, "STATUS=stopped:")
	order := []string{"STOPPING=1", "EXTEND_TIMEOUT_USEC=5000000", "STATUS=draining: 1 connection left", "STATUS=stopped:"}
	i := 0
	for _, m := range msgs {
		if i < len(order) && strings.HasPrefix(m, order[i]) {
			i++
		}
	}
	if i < len(order) {
		t.Errorf("notifications %q\nmissing %q (in this order: %q)", msgs, order[i], order)
	}
	if n := count(msgs, "EXTEND_TIMEOUT_USEC="); n < 2 {
		t.Errorf("%d extensions during a 1.5s drain, want one a second", n)
	}
}

func waitNotify(t *testing.T, ns *notifySocket, prefix string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case m := <-ns.msgs:
			if strings.HasPrefix(m, prefix) {
				return
			}
		case <-deadline:
			t.Fatalf("no %q notification within 10s", prefix)
		}
	}
}

func count(msgs []string, prefix string) int {
	n := 0
	for _, m := range msgs {
		if strings.HasPrefix(m, prefix) {
			n++
		}
	}
	return n
}

func TestRunForwardsSignals(t *testing.T) {
	m, err := signals.ParseMap("USR2:USR1")
	if err != nil {
		t.Fatal(err)
	}
	ev, done, _ := start(t, "server", func(o *Options) {
		o.Map = o.Preset.Map().Merge(m)
	})
	ev.wait("ready ")
	for _, tt := range []struct {
		send syscall.Signal
		want string
	}{
		{syscall.SIGHUP, "got HUP"},
		{syscall.SIGUSR1, "got USR1"},
		{syscall.SIGWINCH, "got WINCH"},
		{syscall.SIGUSR2, "got USR1"}, // translated by the map
	} {
		selfSignal(t, tt.send)
		ev.wait(tt.want)
	}
	// INT is a stop signal: with the nginx preset it becomes QUIT.
	selfSignal(t, syscall.SIGINT)
	ev.wait("got QUIT")
	if err := result(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestRunFollowsDaemon(t *testing.T) {
	for _, withPIDFile := range []bool{false, true} {
		t.Run(map[bool]string{false: "children", true: "pidfile"}[withPIDFile], func(t *testing.T) {
			pidfile := filepath.Join(t.TempDir(), "server.pid")
			t.Setenv("GRACESHIM_TEST_PIDFILE", pidfile)
			ev, done, _ := start(t, "daemon", func(o *Options) {
				if withPIDFile {
					o.PIDFile = pidfile
				}
			})
			parent, _ := ev.wait("forked ")
			pid, port := ev.wait("ready ")
			c := dial(t, ev, port)
			// The first process exits and is reaped; the supervisor must
			// stay and follow the daemonized master.
			waitGone(t, parent)
			select {
			case r := <-done:
				t.Fatalf("supervisor returned after the daemonizing parent exited: %v", r.err)
			case <-time.After(100 * time.Millisecond):
			}
			selfSignal(t, syscall.SIGTERM)
			if got, _ := ev.wait("got QUIT"); got != pid {
				t.Errorf("QUIT reached pid %d, want the daemonized master %d", got, pid)
			}
			c.Close()
			if err := result(t, done); err != nil {
				t.Fatalf("Run: %v", err)
			}
		})
	}
}

// TestRunPIDFileNeverAppears: the daemon runs on, but the pid file given
// never names it: after the ready timeout graceshim gives up with a setup
// error and stops what is left with the fast signal.
func TestRunPIDFileNeverAppears(t *testing.T) {
	dir := t.TempDir()
	pidfile := filepath.Join(dir, "never.pid")
	t.Setenv("GRACESHIM_TEST_PIDFILE", filepath.Join(dir, "elsewhere.pid")) // the daemon writes its pid there
	ev, done, _ := start(t, "daemon", func(o *Options) {
		o.PIDFile = pidfile
		o.ReadyTimeout = 300 * time.Millisecond
	})
	ev.wait("forked ")
	ev.wait("ready ")
	ev.wait("got TERM") // the fast signal, once the wait timed out
	err := result(t, done)
	if !errors.Is(err, ErrSetup) || !strings.Contains(err.Error(), pidfile) || !strings.Contains(err.Error(), "within 300ms") {
		t.Fatalf("Run = %v, want the timeout's setup error naming %s", err, pidfile)
	}
}

func TestRunReapsOrphans(t *testing.T) {
	ev, done, _ := start(t, "orphan", nil)
	gc, rest := ev.wait("reparented to ")
	if rest != itoa(os.Getpid()) {
		t.Errorf("grandchild reparented to %s, want the supervisor %d", rest, os.Getpid())
	}
	// It exits right after reporting; it must not stay a zombie.
	waitGone(t, gc)
	ev.wait("ready ")
	selfSignal(t, syscall.SIGTERM)
	if err := result(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestRunEscalates(t *testing.T) {
	ns := newNotifySocket(t)
	ev, done, _ := start(t, "server:stubborn", func(o *Options) {
		o.DrainTimeout = 500 * time.Millisecond
		o.KillTimeout = 500 * time.Millisecond
	})
	ev.wait("ready ")
	selfSignal(t, syscall.SIGTERM)
	ev.wait("got QUIT")
	ev.wait("got TERM") // the fast signal after the drain timeout
	err := result(t, done)
	var st *ExitStatus
	if !errors.As(err, &st) || st.Code() != 137 {
		t.Fatalf("Run = %v, want exit 137 (SIGKILL)", err)
	}
	msgs := ns.drain()
	if n := count(msgs, "STATUS=fast stop: drain timeout 500ms reached"); n == 0 {
		t.Errorf("no fast-stop STATUS in %q", msgs)
	}
}

func TestRunSecondTermEscalates(t *testing.T) {
	ev, done, _ := start(t, "server", nil)
	_, port := ev.wait("ready ")
	c := dial(t, ev, port)
	defer c.Close()
	selfSignal(t, syscall.SIGTERM)
	ev.wait("got QUIT")
	selfSignal(t, syscall.SIGTERM)
	ev.wait("got TERM")
	err := result(t, done)
	var st *ExitStatus
	if !errors.As(err, &st) || st.Code() != 3 {
		t.Fatalf("Run = %v, want the server's fast-exit status 3", err)
	}
}

func TestRunReadyTimeout(t *testing.T) {
	ns := newNotifySocket(t)
	// A child that never listens: READY=1 must still come, after the
	// ready timeout.
	t.Setenv("GRACESHIM_TEST_CHILD", "")
	began := time.Now()
	_, done, cancel := start(t, "server", func(o *Options) {
		o.Argv = []string{"sleep", "30"}
		o.ReadyTimeout = 200 * time.Millisecond
	})
	msgs := collectUntil(t, ns, "READY=1")
	if waited := time.Since(began); waited < 200*time.Millisecond {
		t.Errorf("READY=1 after %s, before the ready timeout", waited)
	}
	if n := count(msgs, "READY=1"); n != 1 {
		t.Errorf("notifications %q: want one READY=1", msgs)
	}
	if status := collectUntil(t, ns, "STATUS="); !strings.Contains(status[len(status)-1], "no listening socket seen") {
		t.Errorf("READY=1 came with %q, want the ready timeout's status", status)
	}
	cancel()
	err := result(t, done)
	var st *ExitStatus
	if !errors.As(err, &st) || st.Code() != 128+int(syscall.SIGQUIT) {
		t.Fatalf("Run = %v, want sleep killed by QUIT (the nginx preset's graceful signal)", err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestRunReload: HUP becomes the reload signal; systemd hears
// RELOADING=1 with MONOTONIC_USEC, then READY=1 once the master has a new
// worker.
func TestRunReload(t *testing.T) {
	ns := newNotifySocket(t)
	ev, done, cancel := start(t, "server:workers", nil)
	ev.wait("worker ")
	ev.wait("ready ")
	waitNotify(t, ns, "READY=1")
	selfSignal(t, syscall.SIGHUP)
	msgs := collectUntil(t, ns, "READY=1")
	ev.wait("got HUP")
	_, worker := ev.wait("worker ")
	for len(msgs) > 0 && msgs[0] != "RELOADING=1" {
		msgs = msgs[1:]
	}
	if len(msgs) < 3 || !strings.HasPrefix(msgs[1], "MONOTONIC_USEC=") {
		t.Errorf("notifications before READY=1: %q, want RELOADING=1 then MONOTONIC_USEC=", msgs)
	}
	status := collectUntil(t, ns, "STATUS=")
	if got := status[len(status)-1]; !strings.Contains(got, "new worker pid "+worker) {
		t.Errorf("status after the reload %q, want it to name the new worker %s", got, worker)
	}
	cancel()
	if err := result(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// collectUntil returns the notifications up to and including the first
// that starts with prefix.
func collectUntil(t *testing.T, ns *notifySocket, prefix string) []string {
	t.Helper()
	var out []string
	deadline := time.After(15 * time.Second)
	for {
		select {
		case m := <-ns.msgs:
			out = append(out, m)
			if strings.HasPrefix(m, prefix) {
				return out
			}
		case <-deadline:
			t.Fatalf("no %q notification within 15s; got %q", prefix, out)
		}
	}
}

// waitGone waits until pid has been reaped: not even a zombie is left.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile("/proc/" + itoa(pid) + "/stat")
		if err != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d not reaped within 10s: %s", pid, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRunHealthCheckWatchdog: READY=1 waits for the health check; the
// watchdog is fed while it passes and starved once it fails.
func TestRunHealthCheckWatchdog(t *testing.T) {
	ns := newNotifySocket(t)
	t.Setenv("WATCHDOG_USEC", "200000")
	t.Setenv("WATCHDOG_PID", "")
	probe, err := ParseProbe("tcp")
	if err != nil {
		t.Fatal(err)
	}
	ev, done, cancel := start(t, "server:flaky", func(o *Options) { o.HealthCheck = probe })
	ev.wait("ready ")
	msgs := collectUntil(t, ns, "READY=1")
	if status := collectUntil(t, ns, "STATUS="); !strings.Contains(status[len(status)-1], "health check tcp passes") {
		t.Errorf("READY=1 came with %q, want it after the health check passed", status)
	}
	if n := count(msgs, "WATCHDOG=1"); n != 0 {
		t.Errorf("%d watchdog pings before the first health check passed", n)
	}
	fed := collectFor(ns, time.Second)
	if n := count(fed, "WATCHDOG=1"); n < 3 {
		t.Errorf("%d watchdog pings in 1s at WATCHDOG_USEC=200ms while healthy, want about 10: %q", n, fed)
	}
	selfSignal(t, syscall.SIGUSR1) // the server closes its listener
	ev.wait("got USR1")
	collectUntil(t, ns, "STATUS=running: supervisor.test")
	if starved := collectFor(ns, time.Second); count(starved, "WATCHDOG=1") != 0 {
		t.Errorf("watchdog still fed while the health check fails: %q", starved)
	}
	cancel()
	if err := result(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// collectFor returns the notifications received within d.
func collectFor(ns *notifySocket, d time.Duration) []string {
	var out []string
	deadline := time.After(d)
	for {
		select {
		case m := <-ns.msgs:
			out = append(out, m)
		case <-deadline:
			return out
		}
	}
}

func TestParseProbe(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{"tcp", "tcp", false},
		{"tcp:127.0.0.1:80", "tcp:127.0.0.1:80", false},
		{"http://127.0.0.1/health", "http://127.0.0.1/health", false},
		{"tcp:80", "", true},
		{"ftp://x", "", true},
		{"health", "", true},
	}
	for _, tt := range tests {
		p, err := ParseProbe(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseProbe(%q) error %v, wantErr %v", tt.in, err, tt.wantErr)
			continue
		}
		if err == nil && p.String() != tt.want {
			t.Errorf("ParseProbe(%q) = %s", tt.in, p)
		}
	}
	for in, want := range map[string]string{"tcp4 0.0.0.0:80": "127.0.0.1:80", "tcp6 [::]:8080": "[::1]:8080", "tcp4 127.0.0.2:9": "127.0.0.2:9"} {
		if got := dialable(in); got != want {
			t.Errorf("dialable(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestRunStopWhileWaitingForPIDFile: a stop that comes before the pid file
// names the daemonized master still reaches that master, with the
// graceful signal, as soon as it is known.
func TestRunStopWhileWaitingForPIDFile(t *testing.T) {
	pidfile := filepath.Join(t.TempDir(), "late.pid")
	t.Setenv("GRACESHIM_TEST_PIDFILE", pidfile)
	t.Setenv("GRACESHIM_TEST_PIDFILE_DELAY", "700ms")
	ev, done, _ := start(t, "daemon", func(o *Options) { o.PIDFile = pidfile })
	parent, _ := ev.wait("forked ")
	waitGone(t, parent)
	selfSignal(t, syscall.SIGTERM) // the pid file is not written yet
	ev.wait("got QUIT")
	if err := result(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, rest := ev.waitAny("got "); rest != "" {
		t.Errorf("the server got %s too; want QUIT alone", rest)
	}
}

// TestRunGracefulSignalDuringDelay: the graceful signal itself, sent to
// graceshim during the drain delay, ends the delay gracefully.
func TestRunGracefulSignalDuringDelay(t *testing.T) {
	ev, done, _ := start(t, "server", func(o *Options) { o.DrainDelay = 10 * time.Second })
	ev.wait("ready ")
	selfSignal(t, syscall.SIGTERM)
	ev.none("got", 300*time.Millisecond) // still serving: the delay
	selfSignal(t, syscall.SIGQUIT)
	ev.wait("got QUIT")
	if err := result(t, done); err != nil {
		t.Fatalf("Run: %v (want the graceful exit, not the fast one)", err)
	}
}

// TestRunStopAfterTSTP: a master suspended with TSTP (Ctrl-Z) still gets
// and handles the stop: CONT follows the stop signal.
func TestRunStopAfterTSTP(t *testing.T) {
	ev, done, _ := start(t, "server", nil)
	pid, _ := ev.wait("ready ")
	selfSignal(t, syscall.SIGTSTP)
	deadline := time.Now().Add(10 * time.Second)
	for procState(pid) != "T" {
		if time.Now().After(deadline) {
			t.Fatalf("server %d not stopped by TSTP (state %q)", pid, procState(pid))
		}
		time.Sleep(10 * time.Millisecond)
	}
	selfSignal(t, syscall.SIGTERM)
	ev.wait("got QUIT")
	if err := result(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestRunLeftoverIsNoMaster: a foreground server that exits 0 on its own
// after start-up leaves a helper behind; the helper is not followed as
// if it were a new master, it is stopped, and graceshim exits.
func TestRunLeftoverIsNoMaster(t *testing.T) {
	var log strings.Builder
	t.Setenv("GRACESHIM_TEST_CHILD", "")
	_, done, _ := start(t, "", func(o *Options) {
		o.Argv = []string{"sh", "-c", "sleep 1000 & sleep 0.5; exit 0"}
		o.Ready = ReadyExec
		o.ReadyTimeout = 100 * time.Millisecond
		o.Preset, _ = signals.Lookup("generic")
		o.Map = nil
		o.Log = NewLogger(&log, LevelDebug)
	})
	if err := result(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if strings.Contains(log.String(), "following") {
		t.Errorf("a leftover sleep was followed as a master:\n%s", log.String())
	}
}

func procState(pid int) string {
	b, err := os.ReadFile("/proc/" + itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2 : i+3]
	}
	return ""
}

// TestRunUpgrade: the upgrade signal starts the handover (the old master
// starts a new one as its child), the old workers get WINCH, the old
// master gets the preset's graceful signal (QUIT for nginx, TERM for
// gunicorn, whose QUIT is a fast stop) and the new master is followed.
func TestRunUpgrade(t *testing.T) {
	for _, preset := range []string{"nginx", "gunicorn"} {
		t.Run(preset, func(t *testing.T) {
			p, _ := signals.Lookup(preset)
			t.Setenv("GRACESHIM_TEST_GRACEFUL", signals.Name(p.Graceful))
			ns := newNotifySocket(t)
			ev, done, cancel := start(t, "server:upgradable", func(o *Options) {
				o.Preset = p
				o.Map = p.Map()
			})
			old, _ := ev.wait("ready ")
			waitNotify(t, ns, "READY=1")
			selfSignal(t, syscall.SIGUSR2)
			_, next := ev.wait("new master ")
			ev.wait("got WINCH")
			if pid, _ := ev.wait("got " + signals.Name(p.Graceful)); pid != old {
				t.Errorf("%s went to pid %d, want the old master %d", signals.Name(p.Graceful), pid, old)
			}
			waitGone(t, old)
			msgs := collectUntil(t, ns, "STATUS=running: supervisor.test (pid "+next+"), upgraded")
			if count(msgs, "READY=1") == 0 {
				t.Errorf("no READY=1 after the upgrade: %q", msgs)
			}
			cancel()
			if err := result(t, done); err != nil {
				t.Fatalf("Run: %v", err)
			}
		})
	}
}

// TestRunHealthCheckHoldsReady: with a health check that never passes,
// the ready timer does not send READY=1; systemd's start timeout decides.
func TestRunHealthCheckHoldsReady(t *testing.T) {
	ns := newNotifySocket(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close() // nothing listens there now
	probe, err := ParseProbe("tcp:" + closed)
	if err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	ev, done, cancel := start(t, "server", func(o *Options) {
		o.HealthCheck = probe
		o.ReadyTimeout = 200 * time.Millisecond
		o.Log = NewLogger(&syncWriter{b: &log}, LevelDebug)
	})
	ev.wait("ready ")
	// The ready timer fires 200ms in; probes fail every second.
	msgs := collectFor(ns, 2500*time.Millisecond)
	if n := count(msgs, "READY=1"); n != 0 {
		t.Errorf("READY=1 though the health check never passed: %q", msgs)
	}
	cancel()
	if err := result(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !strings.Contains(log.String(), "READY=1 waits for it") {
		t.Errorf("the ready timer's expiry was not logged:\n%s", log.String())
	}
}

// TestRunExecHealthCheckFindsTarget: --ready=exec with a bare tcp health
// check: READY=1 waits for the check, which finds the server's listener.
func TestRunExecHealthCheckFindsTarget(t *testing.T) {
	ns := newNotifySocket(t)
	probe, err := ParseProbe("tcp")
	if err != nil {
		t.Fatal(err)
	}
	ev, done, cancel := start(t, "server", func(o *Options) {
		o.Ready = ReadyExec
		o.HealthCheck = probe
	})
	ev.wait("ready ")
	msgs := collectUntil(t, ns, "READY=1")
	if status := collectUntil(t, ns, "STATUS="); !strings.Contains(status[len(status)-1], "health check tcp passes") {
		t.Errorf("READY=1 came with %q (after %q), want it after the health check passed", status, msgs)
	}
	cancel()
	if err := result(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestRunLeftoverSleepIsStopped: a shell that exits 0 leaving a `sleep &`
// behind during start-up: the sleep is no master (no listener, no
// children, same session, another executable) and is stopped at once,
// not followed for the ready timeout.
func TestRunLeftoverSleepIsStopped(t *testing.T) {
	var log strings.Builder
	t.Setenv("GRACESHIM_TEST_CHILD", "")
	generic, _ := signals.Lookup("generic")
	_, done, _ := start(t, "", func(o *Options) {
		o.Argv = []string{"sh", "-c", "sleep 60 & sleep 0.2"}
		o.ReadyTimeout = time.Minute // the result's 30s hang guard fails a follow
		o.Preset = generic
		o.Map = nil
		o.Log = NewLogger(&syncWriter{b: &log}, LevelDebug)
	})
	if err := result(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if strings.Contains(log.String(), "following") || !strings.Contains(log.String(), "none looks like a master") {
		t.Errorf("want the leftover sleep not followed:\n%s", log.String())
	}
}

// syncWriter is a strings.Builder safe for the logger and the test.
type syncWriter struct {
	mu sync.Mutex
	b  *strings.Builder
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}
