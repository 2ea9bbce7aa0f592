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
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/graceshim/graceshim/signals"
)

// configTestPreset is nginx's preset with a config test that fails, the way
// nginx -t does, while the file bad exists.
func configTestPreset(bad string) signals.Preset {
	p := testBinaryAs("nginx")
	p.ConfigTest = func(argv []string) []string {
		return []string{"sh", "-c", `if [ -e "$0" ]; then
echo 'nginx: [emerg] unknown directive "bogus" in /etc/nginx/nginx.conf:3' >&2
echo 'nginx: configuration file /etc/nginx/nginx.conf test failed' >&2
exit 1
fi`, bad}
	}
	return p
}

// testBinaryAs is the named preset, with the test binary, which plays the
// daemon, counted as the daemon's command: a preset's config test and
// reload command apply only to the daemon itself.
func testBinaryAs(name string) signals.Preset {
	p, _ := signals.Lookup(name)
	p.Commands = append(slices.Clone(p.Commands), filepath.Base(os.Args[0]))
	return p
}

func control(t *testing.T, cmd string) (ControlReply, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return Control(ctx, os.Getpid(), cmd)
}

// TestReloadRefused: with a broken config, a reload asked for over the
// control socket, or by HUP, is refused with the config test's message:
// no signal reaches the server, STATUS says so. With the config fixed the
// same request reloads and answers once the new worker runs.
func TestReloadRefused(t *testing.T) {
	ns := newNotifySocket(t)
	bad := filepath.Join(t.TempDir(), "bad")
	ev, _, _ := start(t, "server:workers", func(o *Options) { o.Preset = configTestPreset(bad) })
	ev.wait("worker")
	ev.wait("ready")
	ns.waitLine(t, "READY=1")
	ns.waitLine(t, "STATUS=") // sent with READY=1
	if err := os.WriteFile(bad, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	r, err := control(t, "reload")
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("reload with a broken config: %v, want it refused", err)
	}
	for _, want := range []string{"reload refused", `unknown directive "bogus"`} {
		if !strings.Contains(r.Message, want) {
			t.Errorf("reply %q does not say %q", r.Message, want)
		}
	}
	if !strings.Contains(r.Output, "test failed") {
		t.Errorf("reply output %q, want the config test's whole output", r.Output)
	}
	st, _ := ns.waitLine(t, "STATUS=")
	if !strings.Contains(st, "reload refused: config test") || !strings.Contains(st, "[emerg]") {
		t.Errorf("status %q, want the refusal with the test's message", st)
	}

	selfSignal(t, syscall.SIGHUP)
	st, before := ns.waitLine(t, "STATUS=")
	if !strings.Contains(st, "reload refused") {
		t.Errorf("status after HUP %q, want the refusal", st)
	}
	for _, l := range before {
		if strings.HasPrefix(l, "RELOADING=1") {
			t.Errorf("RELOADING=1 sent for a refused reload")
		}
	}
	// Both refusals are decided before anything would be sent.
	ev.none("got HUP", 500*time.Millisecond)

	if err := os.Remove(bad); err != nil {
		t.Fatal(err)
	}
	r, err = control(t, "reload")
	if err != nil {
		t.Fatalf("reload with the config fixed: %v", err)
	}
	ev.wait("got HUP")
	_, worker := ev.wait("worker")
	if want := "new worker pid " + worker; !strings.Contains(r.Message, want) {
		t.Errorf("reply %q, want it to name %s", r.Message, want)
	}
	ns.waitLine(t, "RELOADING=1")
	ns.waitLine(t, "READY=1")
}

// TestReloadOneAtATime: a second request while a reload's config test
// runs hears the outcome of that reload; one signal is sent.
func TestReloadOneAtATime(t *testing.T) {
	dir := t.TempDir()
	gate := filepath.Join(dir, "gate")
	started := filepath.Join(dir, "started")
	p := testBinaryAs("nginx")
	// The test waits until the file gate exists: both requests arrive
	// while it runs.
	p.ConfigTest = func([]string) []string {
		return []string{"sh", "-c", `: > "$1"; while [ ! -e "$0" ]; do sleep 0.01; done`, gate, started}
	}
	joined := make(chan struct{}, 1)
	ev, _, _ := start(t, "server:workers", func(o *Options) {
		o.Preset = p
		o.Log = NewLogger(io.MultiWriter(testWriter{t}, lineWatch{"a reload is under way", joined}), LevelDebug)
	})
	ev.wait("worker")
	ev.wait("ready")
	replies := make(chan error, 2)
	go func() { _, err := control(t, "reload"); replies <- err }()
	for !exists(started) {
		time.Sleep(5 * time.Millisecond)
	}
	go func() { _, err := control(t, "reload"); replies <- err }()
	select {
	case <-joined:
	case <-time.After(20 * time.Second):
		t.Fatal("the second request did not join the reload under way")
	}
	os.WriteFile(gate, nil, 0o644)
	for i := 0; i < 2; i++ {
		select {
		case err := <-replies:
			if err != nil {
				t.Errorf("reload %d: %v", i, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("no reply")
		}
	}
	ev.wait("got HUP")
	ev.none("got HUP", 300*time.Millisecond)
}

// lineWatch signals on c each time a log line contains sub.
type lineWatch struct {
	sub string
	c   chan struct{}
}

func (w lineWatch) Write(b []byte) (int, error) {
	if strings.Contains(string(b), w.sub) {
		select {
		case w.c <- struct{}{}:
		default:
		}
	}
	return len(b), nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// TestReloadRefusedWhileStopping: no reload once a stop began.
func TestReloadDuringStop(t *testing.T) {
	ev, _, _ := start(t, "server", nil)
	_, port := ev.wait("ready")
	c := dial(t, ev, port) // holds the drain open
	defer c.Close()
	selfSignal(t, syscall.SIGTERM)
	ev.wait("got QUIT")
	r, err := control(t, "reload")
	if !errors.Is(err, ErrRefused) || !strings.Contains(r.Message, "stop") {
		t.Errorf("reload during a stop: %v (%q), want it refused because of the stop", err, r.Message)
	}
}

// TestControlAddrErrors: clear errors for a pid that is no graceshim.
func TestControlAddrErrors(t *testing.T) {
	sleep := exec.Command("sleep", "30")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sleep.Process.Kill(); sleep.Wait() }()
	_, err := ControlAddr(sleep.Process.Pid)
	if !errors.Is(err, ErrNoControl) || !strings.Contains(err.Error(), "(sleep) has no graceshim control socket") {
		t.Errorf("ControlAddr(sleep) = %v, want no control socket", err)
	}
	// The largest pid the kernel can hand out, plus one: no such process.
	_, err = ControlAddr(1 << 22)
	if !errors.Is(err, ErrNoControl) || !strings.Contains(err.Error(), "no process") {
		t.Errorf("ControlAddr(no such pid) = %v, want no process", err)
	}
}

// TestReloadNotConfirmed: a daemon that speaks sd_notify and says nothing
// after the reload signal: the reload is reported as failed at the bound,
// and systemd hears READY=1 again (the service still serves).
func TestReloadNotConfirmed(t *testing.T) {
	old := reloadTimeout
	reloadTimeout = 500 * time.Millisecond
	t.Cleanup(func() { reloadTimeout = old }) // after the supervisor returned
	ev, ns, _ := notifierRun(t, "silent", nil)
	selfSignal(t, syscall.SIGUSR1)
	ev.wait("notifier ready")
	ns.waitLine(t, "READY=1")
	r, err := control(t, "reload")
	if !errors.Is(err, ErrRefused) || !strings.Contains(r.Message, "no READY=1 nor new worker from") {
		t.Fatalf("reload of a silent daemon: %v (%q), want it not confirmed", err, r.Message)
	}
	ev.wait("got HUP")
	ns.waitLine(t, "RELOADING=1")
	ns.waitLine(t, "READY=1")
	if st, _ := ns.waitLine(t, "STATUS="); !strings.Contains(st, "reload failed: no READY=1") {
		t.Errorf("status %q, want the failed reload", st)
	}
}

// TestReloadDaemonDies: the daemon dies of the reload; the asker hears it.
func TestReloadDaemonDies(t *testing.T) {
	ev, ns, _ := notifierRun(t, "dieonhup", nil)
	selfSignal(t, syscall.SIGUSR1)
	ev.wait("notifier ready")
	ns.waitLine(t, "READY=1") // graceshim knows it speaks sd_notify
	r, err := control(t, "reload")
	if !errors.Is(err, ErrRefused) || !strings.Contains(r.Message, "exited with status 78") {
		t.Fatalf("reload that killed the daemon: %v (%q), want its exit reported", err, r.Message)
	}
}

// TestReloadCommand: a preset whose reload is a command (caddy reload)
// runs it instead of a signal; its failure is the reload's.
func TestReloadCommand(t *testing.T) {
	fail := filepath.Join(t.TempDir(), "fail")
	p := testBinaryAs("nginx")
	p.Reload = 0
	p.ConfigTest = nil // nginx -t would be the test binary here
	p.ReloadCommand = func([]string) []string {
		return []string{"sh", "-c", `if [ -e "$0" ]; then echo "reload: admin endpoint refused the config" >&2; exit 1; fi`, fail}
	}
	ns := newNotifySocket(t)
	ev, _, _ := start(t, "server:workers", func(o *Options) { o.Preset = p })
	ev.wait("worker")
	ev.wait("ready")
	ns.waitLine(t, "READY=1")
	ns.waitLine(t, "STATUS=") // sent with READY=1
	r, err := control(t, "reload")
	if err != nil || !strings.Contains(r.Message, "reloaded by sh -c") {
		t.Errorf("reload by command: %v (%q), want done", err, r.Message)
	}
	ns.waitLine(t, "STATUS=running:") // the reload's end
	// HUP reloads the same way: the daemon gets no HUP.
	selfSignal(t, syscall.SIGHUP)
	if st, _ := ns.waitLine(t, "STATUS=running:"); !strings.Contains(st, "reloaded by sh -c") {
		t.Errorf("status after HUP %q, want the reload command's", st)
	}
	os.WriteFile(fail, nil, 0o644)
	r, err = control(t, "reload")
	if !errors.Is(err, ErrRefused) || !strings.Contains(r.Message, "admin endpoint refused the config") {
		t.Errorf("failing reload command: %v (%q), want its message", err, r.Message)
	}
	ev.none("got HUP", 300*time.Millisecond)
}

// TestNoReadyForUpgradeBeforeReady: an upgrade while the service is not
// ready yet (its health check never passed) tells systemd neither
// RELOADING=1 nor READY=1: READY=1 would end the start-up (issue 10).
func TestNoReadyForUpgradeBeforeReady(t *testing.T) {
	ns := newNotifySocket(t)
	ev, _, _ := start(t, "server:upgradable", func(o *Options) {
		var err error
		if o.HealthCheck, err = ParseProbe("tcp:127.0.0.1:1"); err != nil { // nothing listens: never healthy
			t.Fatal(err)
		}
		o.ReadyTimeout = time.Minute
	})
	ev.wait("ready ")
	selfSignal(t, syscall.SIGUSR2)
	_, next := ev.wait("new master ")
	ev.wait("got WINCH")
	ev.wait("got QUIT")
	// The status that goes with the hand-over is sent with READY=1 when
	// the service was ready, before the old master's QUIT.
	st, before := ns.waitLine(t, "STATUS=running: supervisor.test, new master pid "+next)
	for _, l := range before {
		if strings.HasPrefix(l, "READY=1") || strings.HasPrefix(l, "RELOADING=1") {
			t.Errorf("%q sent for an upgrade of a service that was not ready (before %q)", l, st)
		}
	}
}

// controlClient sends "reload" to the control socket GRACESHIM_TEST_CONTROL
// names and prints the answer.
func controlClient() {
	c, err := net.Dial("unix", os.Getenv("GRACESHIM_TEST_CONTROL"))
	if err != nil {
		fmt.Println("dial:", err)
		os.Exit(1)
	}
	fmt.Fprintln(c, "reload")
	line, _ := bufio.NewReader(c).ReadString('\n')
	fmt.Print(line)
	os.Exit(0)
}

// TestControlPeerCheck: the control socket answers a client of another
// uid with a refusal and never passes its request on; graceshim's own
// user gets through.
func TestControlPeerCheck(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to run a client as another user")
	}
	ln, err := listenControl()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	reqs := make(chan controlReq, 4)
	done := make(chan struct{})
	go func() { defer close(done); serveControl(ctx, ln, NewLogger(testWriter{t}, LevelDebug), reqs) }()
	defer func() { cancel(); <-done }()

	// The test binary, where user nobody may run it.
	dir, err := os.MkdirTemp("", "gsctl")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "client")
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "GRACESHIM_TEST_CHILD=controlclient", "GRACESHIM_TEST_CONTROL="+ln.Addr().String())
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("client as nobody: %v: %s", err, out)
	}
	var r ControlReply
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("answer %q: %v", out, err)
	}
	if r.OK || !strings.Contains(r.Message, "permission denied") {
		t.Errorf("answer to uid 65534: %+v, want permission denied", r)
	}
	select {
	case req := <-reqs:
		t.Errorf("a request of uid 65534 reached the loop: %q", req.cmd)
	default:
	}

	// Our own uid gets through to the loop.
	go func() {
		req := <-reqs
		req.reply <- ControlReply{OK: true, Message: "done: " + req.cmd}
	}()
	c, err := net.Dial("unix", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintln(c, "reload")
	line, _ := bufio.NewReader(c).ReadString('\n')
	if err := json.Unmarshal([]byte(line), &r); err != nil || !r.OK || r.Message != "done: reload" {
		t.Errorf("answer to our uid: %q (%v)", line, err)
	}
}

func TestFirstLine(t *testing.T) {
	tests := []struct{ in, want string }{
		{"nginx: [emerg] unknown directive \"x\" in /a:1\nnginx: configuration file /a test failed", `nginx: [emerg] unknown directive "x" in /a:1`},
		{"[NOTICE]   (1) : haproxy version is 2.6.12\n[NOTICE]   (1) : path to executable is /usr/sbin/haproxy\n[ALERT]    (1) : config : parsing [a.cfg:5] : unknown keyword 'x' in 'frontend' section\n[ALERT]    (1) : config : Fatal errors found in configuration.", "[ALERT]    (1) : config : parsing [a.cfg:5] : unknown keyword 'x' in 'frontend' section"},
		{"\n  just this\nand that", "just this"},
		{"", "(no output)"},
	}
	for _, tt := range tests {
		if got := firstLine(tt.in); got != tt.want {
			t.Errorf("firstLine(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestReloadMappedHUPTested: a HUP that --map translates to another
// signal is a reload too, and its config test runs first: with a broken
// config nothing is sent.
func TestReloadMappedHUPTested(t *testing.T) {
	ns := newNotifySocket(t)
	bad := filepath.Join(t.TempDir(), "bad")
	p := configTestPreset(bad)
	ev, _, _ := start(t, "server:workers", func(o *Options) {
		o.Preset = p
		o.Map = signals.Map{syscall.SIGTERM: p.Graceful, syscall.SIGHUP: syscall.SIGUSR1}
	})
	ev.wait("worker")
	ev.wait("ready")
	ns.waitLine(t, "READY=1")
	ns.waitLine(t, "STATUS=") // sent with READY=1
	if err := os.WriteFile(bad, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	selfSignal(t, syscall.SIGHUP)
	st, _ := ns.waitLine(t, "STATUS=")
	if !strings.Contains(st, "reload refused") {
		t.Errorf("status after a mapped HUP %q, want the refusal", st)
	}
	ev.none("got USR1", 500*time.Millisecond)
}

// TestReloadNotifyDaemonNewWorkers: a daemon that speaks sd_notify but
// says nothing after a reload (gunicorn says READY=1 only when it boots)
// is seen reloaded by its new worker.
func TestReloadNotifyDaemonNewWorkers(t *testing.T) {
	ev, ns, _ := notifierRun(t, "workers", nil)
	ev.wait("worker")
	selfSignal(t, syscall.SIGUSR1)
	ev.wait("notifier ready")
	ns.waitLine(t, "READY=1")
	r, err := control(t, "reload")
	if err != nil {
		t.Fatalf("reload: %v", err)
	}
	_, worker := ev.wait("worker")
	if !strings.Contains(r.Message, "new worker pid "+worker) {
		t.Errorf("reply %q, want it to name the new worker %s", r.Message, worker)
	}
}
