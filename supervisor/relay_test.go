package supervisor

import (
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/graceshim/graceshim/supervisor/proctab"
)

// notifier plays a daemon that speaks sd_notify itself, on the socket
// NOTIFY_SOCKET names. It listens on TCP at once (a listener would make
// graceshim guess readiness) but says READY=1 only when USR1 tells it to.
// Once ready, HUP is a reload it announces (RELOADING=1, then READY=1);
// in mode "watchdog" it pings WATCHDOG=1 every 50ms while ready, after
// reporting whether the watchdog variables were meant for it. In mode
// "silent" it says nothing on HUP; in mode "dieonhup" HUP makes it exit 78;
// in mode "status" it says STATUS=starting at once; in mode "workers" it
// runs a worker and replaces it on HUP, saying nothing (as gunicorn).
// In modes "heartbeat" and "heartbeat-reloading" it repeats READY=1 with
// a STATUS= every 50ms while ready, as php-fpm's heartbeat does
// (sapi/fpm/fpm/fpm_systemd.c); on HUP it sends a heartbeat and then
// WATCHDOG=1, reports "got HUP" and finishes the reload only on WINCH:
// with php-fpm's restart announcement (READY=1 with MAINPID=) in mode
// "heartbeat", with RELOADING=1 then READY=1 in "heartbeat-reloading".
// Mode "announce" is "heartbeat" without the periodic heartbeats: its
// first after the start comes after the reload signal.
func notifier(mode string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		report("error %v", err)
		os.Exit(1)
	}
	defer ln.Close()
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGHUP, syscall.SIGWINCH, syscall.SIGQUIT, syscall.SIGTERM)
	report("notifier listening %d %s", ln.Addr().(*net.TCPAddr).Port, os.Getenv("NOTIFY_SOCKET"))
	if mode == "watchdog" {
		report("notifier watchdog usec=%s mine=%v", os.Getenv("WATCHDOG_USEC"), os.Getenv("WATCHDOG_PID") == strconv.Itoa(os.Getpid()))
	}
	notify := func(state string) {
		if ok, err := daemon.SdNotify(false, state); !ok || err != nil {
			report("error notify %q: %v %v", state, ok, err)
		}
	}
	if mode == "status" {
		notify("STATUS=starting")
		report("notifier said starting")
	}
	var worker *exec.Cmd
	spawn := func() {
		old := worker
		worker = exec.Command(os.Args[0])
		worker.Env = append(os.Environ(), "GRACESHIM_TEST_CHILD=worker")
		if err := worker.Start(); err == nil {
			report("worker %d", worker.Process.Pid)
		}
		if old != nil {
			old.Process.Kill()
			old.Wait()
		}
	}
	if mode == "workers" {
		spawn()
	}
	ready := false
	heartbeat := strings.HasPrefix(mode, "heartbeat") || mode == "announce"
	beat := func() {
		notify("READY=1\nSTATUS=Processes active: 0, idle: 1, Requests: 0, slow: 0, Traffic: 0req/sec")
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case sig := <-sigs:
			switch sig {
			case syscall.SIGUSR1:
				ready = true
				notify("READY=1\nSTATUS=serving from the child\nMAINPID=" + strconv.Itoa(os.Getpid()))
				report("notifier ready")
			case syscall.SIGHUP:
				if heartbeat {
					// A heartbeat after the signal, before the reload.
					beat()
					notify("WATCHDOG=1")
					report("got HUP")
					continue
				}
				report("got HUP")
				if mode == "workers" {
					spawn() // a new worker, and nothing said
					continue
				}
				if mode == "dieonhup" {
					// A daemon that re-executes itself into a config
					// it cannot load.
					os.Exit(78)
				}
				if ready && mode != "silent" {
					notify("RELOADING=1\nMONOTONIC_USEC=1")
					notify("READY=1\nSTATUS=reloaded by the child")
					report("notifier reloaded")
				}
			case syscall.SIGWINCH:
				if mode == "heartbeat" || mode == "announce" {
					// php-fpm's re-executed master starting up.
					notify("READY=1\nSTATUS=Ready to handle connections\nMAINPID=" + strconv.Itoa(os.Getpid()))
					report("notifier reloaded")
					continue
				}
				if mode == "heartbeat-reloading" {
					notify("RELOADING=1\nMONOTONIC_USEC=1")
					notify("READY=1\nSTATUS=reloaded by the child")
					report("notifier reloaded")
					continue
				}
				// A reload of its own accord (as HAProxy's master
				// announces one).
				notify("RELOADING=1\nMONOTONIC_USEC=1")
				notify("READY=1\nSTATUS=reloaded on its own")
				report("notifier reloaded itself")
			default:
				report("exit drained")
				os.Exit(0)
			}
		case <-tick.C:
			if mode == "watchdog" && ready {
				notify("WATCHDOG=1")
			}
			if heartbeat && ready && mode != "announce" {
				beat()
			}
		}
	}
}

// notifierRun starts the supervisor over the notifier with the relay
// forced on (the test binary is no preset that speaks sd_notify).
func notifierRun(t *testing.T, mode string, tweak func(*Options)) (*events, *notifySocket, int) {
	ev, ns, pid, _ := notifierRunAddr(t, mode, tweak)
	return ev, ns, pid
}

// notifierRunAddr is notifierRun that also returns the child's
// NOTIFY_SOCKET.
func notifierRunAddr(t *testing.T, mode string, tweak func(*Options)) (*events, *notifySocket, int, string) {
	t.Helper()
	ns := newNotifySocket(t)
	ev, _, _ := start(t, "notifier:"+mode, func(o *Options) {
		o.Notify = NotifyRelay
		if tweak != nil {
			tweak(o)
		}
	})
	pid, rest := ev.wait("notifier listening")
	f := strings.Fields(rest)
	// A path, not an abstract name: Debian 12's puma cannot send to one.
	if len(f) != 2 || !strings.HasPrefix(filepath.Base(filepath.Dir(f[1])), "graceshim-notify-") {
		t.Fatalf("the child's NOTIFY_SOCKET is %q, want a socket in a directory of graceshim's", rest)
	}
	return ev, ns, pid, f[1]
}

// waitLine waits for a datagram line from graceshim that starts with
// prefix, returning it and the lines before it.
func (n *notifySocket) waitLine(t *testing.T, prefix string) (string, []string) {
	t.Helper()
	var before []string
	deadline := time.After(20 * time.Second)
	for {
		select {
		case m, ok := <-n.msgs:
			if !ok {
				t.Fatalf("notify socket closed before %q (seen %q)", prefix, before)
			}
			if strings.HasPrefix(m, prefix) {
				return m, before
			}
			before = append(before, m)
		case <-deadline:
			t.Fatalf("no %q from graceshim within 20s (seen %q)", prefix, before)
		}
	}
}

// noLine checks that no line starting with prefix reaches systemd within d.
func (n *notifySocket) noLine(t *testing.T, prefix string, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case m := <-n.msgs:
			if strings.HasPrefix(m, prefix) {
				t.Fatalf("unexpected %q sent to systemd", m)
			}
		case <-deadline:
			return
		}
	}
}

// TestRelayReady: a child that speaks sd_notify gets graceshim's socket;
// graceshim's READY=1 is the child's (not its listening socket), with the
// child's STATUS after graceshim's words; the child's MAINPID is dropped.
func TestRelayReady(t *testing.T) {
	ev, ns, pid := notifierRun(t, "", nil)
	// The child listens already; the listen guess would have said READY=1
	// within 100ms. Only the child's word counts.
	ns.noLine(t, "READY=1", 500*time.Millisecond)
	selfSignal(t, syscall.SIGUSR1)
	ev.wait("notifier ready")
	_, before := ns.waitLine(t, "READY=1")
	status, _ := ns.waitLine(t, "STATUS=")
	if want := "STATUS=running: " + shortName() + " (pid " + strconv.Itoa(pid) + "): serving from the child"; status != want {
		t.Errorf("status with READY=1 %q, want %q", status, want)
	}
	for _, l := range append(before, ns.drain()...) {
		if strings.HasPrefix(l, "MAINPID=") {
			t.Errorf("the child's %q was relayed: graceshim must stay the main process", l)
		}
	}
}

func shortName() string {
	n := os.Args[0]
	return n[strings.LastIndexByte(n, '/')+1:]
}

// TestRelayReload: HUP to graceshim is the child's reload; its own
// RELOADING=1 then READY=1 end it, and systemd hears RELOADING=1 then
// READY=1 with a status saying so.
func TestRelayReload(t *testing.T) {
	ev, ns, _ := notifierRun(t, "", nil)
	selfSignal(t, syscall.SIGUSR1)
	ns.waitLine(t, "READY=1")
	selfSignal(t, syscall.SIGHUP)
	ev.wait("got HUP")
	ns.waitLine(t, "RELOADING=1")
	_, before := ns.waitLine(t, "READY=1")
	if slices.ContainsFunc(before, func(l string) bool { return strings.HasPrefix(l, "RELOADING=1") }) {
		t.Errorf("RELOADING=1 sent twice (the child's own and graceshim's): %q", before)
	}
	status, _ := ns.waitLine(t, "STATUS=")
	if !strings.Contains(status, "reloaded: "+shortName()+" said READY=1") {
		t.Errorf("status after the reload %q, want it to say the child's READY=1 ended it", status)
	}
}

// TestRelayNoReadyBeforeReady: a reload asked for while the service is
// still starting sends neither RELOADING=1 nor READY=1: READY=1 would end
// the start-up before the daemon is ready (issue 10).
func TestRelayNoReadyBeforeReady(t *testing.T) {
	ev, ns, _ := notifierRun(t, "", nil)
	selfSignal(t, syscall.SIGHUP)
	ev.wait("got HUP")
	// The reload ends at once (the child has no workers): whatever
	// graceshim sends for it is on the socket before the child's READY.
	selfSignal(t, syscall.SIGUSR1)
	ev.wait("notifier ready")
	_, before := ns.waitLine(t, "READY=1")
	for _, l := range before {
		if strings.HasPrefix(l, "RELOADING=1") || strings.HasPrefix(l, "READY=1") {
			t.Errorf("%q sent for a reload while the service was not ready (seen %q)", l, before)
		}
	}
	status, _ := ns.waitLine(t, "STATUS=")
	if !strings.Contains(status, "serving from the child") {
		t.Errorf("READY=1 came with %q, want the child's own status", status)
	}
}

// TestRelayWatchdog: systemd's watchdog is the child's once it pings it:
// graceshim relays the pings and sends none of its own, so a stopped
// (hung) child starves the watchdog; its pings resume with it. The child
// gets WATCHDOG_USEC, and WATCHDOG_PID is its own pid.
func TestRelayWatchdog(t *testing.T) {
	t.Setenv("WATCHDOG_USEC", "400000") // graceshim feeds every 200ms
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	ev, ns, pid, addr := notifierRunAddr(t, "watchdog", nil)
	if _, rest := ev.wait("notifier watchdog"); rest != "usec=400000 mine=true" {
		t.Fatalf("the child's watchdog variables: %s, want usec=400000 mine=true", rest)
	}
	// Not ready yet, the child does not ping: graceshim feeds the
	// watchdog itself.
	ns.waitLine(t, "WATCHDOG=1")
	selfSignal(t, syscall.SIGUSR1)
	ev.wait("notifier ready")
	ns.waitLine(t, "READY=1")
	ns.waitLine(t, "WATCHDOG=1")
	// The child hangs: no ping may reach systemd any more, for many of
	// graceshim's own feeding intervals.
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	defer func() {
		if stopped {
			syscall.Kill(pid, syscall.SIGCONT)
		}
	}()
	waitStopped(t, pid)
	// Pings sent before the stop took hold may still wait in the relay's
	// socket: a marker sent now comes out after them (a datagram socket
	// keeps the order), and from then on nothing may feed the watchdog.
	marker := newChildCmd(t, "sendnotify:marker", ev.path, "NOTIFY_SOCKET="+addr)
	if err := marker.Start(); err != nil {
		t.Fatal(err)
	}
	defer marker.Process.Kill() // the supervisor reaps it
	ev.wait("marker sent")
	if st, _ := ns.waitLine(t, "STATUS=running:"); !strings.HasSuffix(st, ": marker") {
		t.Fatalf("status %q, want the marker", st)
	}
	ns.noLine(t, "WATCHDOG=1", 2*time.Second)
	syscall.Kill(pid, syscall.SIGCONT)
	stopped = false
	ns.waitLine(t, "WATCHDOG=1")
}

// TestRelayWatchdogNotFed: a child that never pings leaves the watchdog
// to graceshim, which feeds it as without a relay.
func TestRelayWatchdogNotFed(t *testing.T) {
	t.Setenv("WATCHDOG_USEC", "400000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	ev, ns, _ := notifierRun(t, "", nil)
	selfSignal(t, syscall.SIGUSR1)
	ev.wait("notifier ready")
	ns.waitLine(t, "READY=1")
	for i := 0; i < 3; i++ {
		ns.waitLine(t, "WATCHDOG=1")
	}
}

// waitStopped waits until pid is in the stopped state.
func waitStopped(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err == nil {
			s := string(b)
			if f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]); len(f) > 0 && f[0] == "T" {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("pid %d did not stop", pid)
}

// TestRelayDropsStrangers: datagrams from graceshim itself or any process
// outside its tree are dropped; a descendant's pass with its pid.
func TestRelayDropsStrangers(t *testing.T) {
	r, err := openRelay()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan childNote, 4)
	done := make(chan struct{})
	go func() { defer close(done); r.serve(ctx, os.Getpid(), NewLogger(testWriter{t}, LevelDebug), out) }()
	defer func() { cancel(); <-done }()

	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: r.addr, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("READY=1\nSTATUS=from a stranger")); err != nil {
		t.Fatal(err)
	}
	c.Close()
	// A descendant: sh, told to send through a helper would need socat;
	// the test binary's own role does it.
	ev := newEvents(t)
	cmd := newChildCmd(t, "sendnotify:", ev.path, "NOTIFY_SOCKET="+r.addr)
	began := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-out:
		if n.pid != cmd.Process.Pid || !slices.Equal(n.lines, []string{"READY=1", "STATUS=from a descendant"}) {
			t.Errorf("got %+v, want the descendant's datagram from pid %d", n, cmd.Process.Pid)
		}
		// The kernel's timestamp: after the child was started.
		if n.at.Before(began) || n.at.After(time.Now()) {
			t.Errorf("datagram queued at %s, want between %s and now", n.at, began)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the descendant's datagram was not passed on")
	}
	cmd.Wait()
	select {
	case n := <-out:
		t.Errorf("a second datagram passed: %+v", n)
	default:
	}
}

func TestParseNotifyMode(t *testing.T) {
	for in, want := range map[string]NotifyMode{"": NotifyAuto, "auto": NotifyAuto, "relay": NotifyRelay, "off": NotifyOff} {
		if got, err := ParseNotifyMode(in); err != nil || got != want {
			t.Errorf("ParseNotifyMode(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseNotifyMode("yes"); err == nil {
		t.Error("ParseNotifyMode(yes): no error")
	}
}

// sendNotify sends one datagram to NOTIFY_SOCKET and exits; in mode
// "marker" it sends STATUS=marker and stays until killed, so that its
// datagram is never read after it is gone (the relay drops datagrams of
// processes it cannot place in graceshim's tree).
func sendNotify(mode string) {
	state := "READY=1\nSTATUS=from a descendant"
	if mode == "marker" {
		state = "STATUS=marker"
	}
	if mode == "watchdog" {
		state = "WATCHDOG=1"
	}
	if ok, err := daemon.SdNotify(false, state); !ok || err != nil {
		os.Exit(1)
	}
	if mode == "marker" {
		report("marker sent")
		select {}
	}
	os.Exit(0)
}

// newChildCmd is the test binary playing role, reporting to events.
func newChildCmd(t *testing.T, role, events string, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(append(os.Environ(), "GRACESHIM_TEST_CHILD="+role, "GRACESHIM_TEST_EVENTS="+events), env...)
	return cmd
}

// nativeNotify is nginx's preset marked as a daemon that speaks sd_notify,
// so that --notify=auto gives the test binary a relay.
func nativeNotify(o *Options) {
	o.Preset.NativeNotify = true
	o.Notify = NotifyAuto
}

// TestRelayAutoSilentDaemon: under --notify=auto a daemon of a preset that
// speaks sd_notify, started without its notify option (haproxy without
// -Ws), says nothing: its listening socket makes it ready.
func TestRelayAutoSilentDaemon(t *testing.T) {
	old := notifyGrace
	notifyGrace = 200 * time.Millisecond
	t.Cleanup(func() { notifyGrace = old })
	ns := newNotifySocket(t)
	ev, _, _ := start(t, "server", nativeNotify)
	_, port := ev.wait("ready")
	ns.waitLine(t, "READY=1")
	if st, _ := ns.waitLine(t, "STATUS="); !strings.Contains(st, "listening on tcp4 127.0.0.1:"+port) {
		t.Errorf("status %q, want the listener", st)
	}
}

// TestRelayAutoSpeakingDaemon: under --notify=auto a daemon that has
// spoken on its socket is ready when it says so, however long it
// listened before.
func TestRelayAutoSpeakingDaemon(t *testing.T) {
	ns := newNotifySocket(t)
	ev, _, _ := start(t, "notifier:status", nativeNotify)
	ev.wait("notifier said starting")
	// Three times the grace (1s, which its STATUS=starting reaches
	// however loaded the machine): a listener-made READY=1 would be here.
	ns.noLine(t, "READY=1", 3*notifyGrace)
	selfSignal(t, syscall.SIGUSR1)
	ns.waitLine(t, "READY=1")
	if st, _ := ns.waitLine(t, "STATUS="); !strings.Contains(st, "serving from the child") {
		t.Errorf("status %q, want the child's", st)
	}
}

// TestRelayDaemonReloads: a reload the daemon announces itself is
// systemd's too: RELOADING=1 (with graceshim's MONOTONIC_USEC), then
// READY=1 when the daemon says so.
func TestRelayDaemonReloads(t *testing.T) {
	ev, ns, _ := notifierRun(t, "", nil)
	selfSignal(t, syscall.SIGUSR1)
	ns.waitLine(t, "READY=1")
	selfSignal(t, syscall.SIGWINCH) // passed on to the child
	ev.wait("notifier reloaded itself")
	ns.waitLine(t, "RELOADING=1")
	if m, _ := ns.waitLine(t, "MONOTONIC_USEC="); m == "MONOTONIC_USEC=1" {
		t.Errorf("the child's own %q was relayed, want graceshim's clock", m)
	}
	ns.waitLine(t, "READY=1")
	if st, _ := ns.waitLine(t, "STATUS="); !strings.Contains(st, "reloaded: "+shortName()+" said READY=1") {
		t.Errorf("status %q, want the reload ended by the child's READY=1", st)
	}
}

// TestInTree: descendants are in, graceshim itself and others are out.
func TestInTree(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 30 & wait")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Process.Kill(); cmd.Wait() }()
	var grandchild int
	for deadline := time.Now().Add(10 * time.Second); grandchild == 0 && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if table, err := proctab.Read(); err == nil {
			if kids := proctab.Children(table, cmd.Process.Pid); len(kids) > 0 {
				grandchild = kids[0]
			}
		}
	}
	if grandchild == 0 {
		t.Fatal("no grandchild")
	}
	self := os.Getpid()
	for _, tt := range []struct {
		pid  int
		want bool
	}{{cmd.Process.Pid, true}, {grandchild, true}, {self, false}, {os.Getppid(), false}, {1, false}, {1 << 22, false}} {
		if got := inTree(self, tt.pid); got != tt.want {
			t.Errorf("inTree(self, %d) = %v, want %v", tt.pid, got, tt.want)
		}
		if got := inTreeByTable(self, tt.pid); got != tt.want {
			t.Errorf("inTreeByTable(self, %d) = %v, want %v", tt.pid, got, tt.want)
		}
	}
}

// BenchmarkInTree: the check each relayed datagram costs, by walking up
// the sender's parents against reading the whole process table, for a
// grandchild (a daemon's worker).
func BenchmarkInTree(b *testing.B) {
	cmd := exec.Command("sh", "-c", "sleep 60 & wait")
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	var grandchild int
	for deadline := time.Now().Add(10 * time.Second); grandchild == 0 && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if table, err := proctab.Read(); err == nil {
			if kids := proctab.Children(table, cmd.Process.Pid); len(kids) > 0 {
				grandchild = kids[0]
			}
		}
	}
	defer syscall.Kill(grandchild, syscall.SIGKILL)
	self := os.Getpid()
	for _, bm := range []struct {
		name string
		f    func(int, int) bool
	}{{"walk-up", inTree}, {"table", inTreeByTable}} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if !bm.f(self, grandchild) {
					b.Fatal("not in tree")
				}
			}
		})
	}
}

// TestRelayHeartbeatNotReload: a daemon that repeats READY=1 as a
// heartbeat (php-fpm) and sends one after the reload signal, before its
// reload is done: that READY=1 does not end the reload; the daemon's
// restart announcement (READY=1 with MAINPID=) or RELOADING=1 then
// READY=1 does. In mode "announce" no heartbeat came before the reload:
// the daemon's start announcement (MAINPID=, as php-fpm's) says how it
// announces a restart.
func TestRelayHeartbeatNotReload(t *testing.T) {
	for _, mode := range []string{"heartbeat", "heartbeat-reloading", "announce"} {
		t.Run(mode, func(t *testing.T) {
			ev, ns, _ := notifierRun(t, mode, nil)
			selfSignal(t, syscall.SIGUSR1)
			ev.wait("notifier ready")
			ns.waitLine(t, "READY=1")
			// A heartbeat while nothing reloads: its STATUS= is shown.
			for mode != "announce" {
				st, _ := ns.waitLine(t, "STATUS=")
				if strings.Contains(st, "Processes active") {
					break
				}
			}
			type result struct {
				r   ControlReply
				err error
			}
			done := make(chan result, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				r, err := Control(ctx, os.Getpid(), "reload")
				done <- result{r, err}
			}()
			ev.wait("got HUP")
			// The child sent a heartbeat, then WATCHDOG=1: graceshim
			// relays the WATCHDOG=1 after acting on the heartbeat.
			_, before := ns.waitLine(t, "WATCHDOG=1")
			for _, l := range before {
				if strings.HasPrefix(l, "READY=1") {
					t.Fatalf("a heartbeat READY=1 after the reload signal ended the reload: %q", before)
				}
			}
			select {
			case r := <-done:
				t.Fatalf("reload answered before the child finished it: %+v", r)
			default:
			}
			selfSignal(t, syscall.SIGWINCH)
			ev.wait("notifier reloaded")
			ns.waitLine(t, "READY=1")
			select {
			case r := <-done:
				if r.err != nil || !strings.Contains(r.r.Message, "said READY=1") {
					t.Errorf("reload: %+v, %v; want it done by the child's READY=1", r.r, r.err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("no answer to the reload")
			}
		})
	}
}

// wdaemon daemonizes as a forking daemon does: it starts its master
// (wmaster) in a session of its own and exits 0.
func wdaemon() {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "GRACESHIM_TEST_CHILD=wmaster")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		report("error %v", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// wmaster is a daemonized master: it writes its pid file, reports whether
// the watchdog variables are its own by sd_watchdog_enabled(3)'s rule
// (WATCHDOG_USEC set, WATCHDOG_PID unset or its pid), and on USR1 has a
// worker ping (a descendant that is not the master), says
// STATUS=worker pinged, pings itself and says STATUS=master pinged.
func wmaster() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGQUIT, syscall.SIGTERM)
	wpid := os.Getenv("WATCHDOG_PID")
	mine := os.Getenv("WATCHDOG_USEC") != "" && (wpid == "" || wpid == strconv.Itoa(os.Getpid()))
	pf := os.Getenv("GRACESHIM_TEST_PIDFILE")
	os.WriteFile(pf+".tmp", []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
	os.Rename(pf+".tmp", pf)
	report("wmaster watchdog mine=%v", mine)
	notify := func(state string) {
		if ok, err := daemon.SdNotify(false, state); !ok || err != nil {
			report("error notify %q: %v %v", state, ok, err)
		}
	}
	for sig := range sigs {
		if sig != syscall.SIGUSR1 {
			os.Exit(0)
		}
		worker := exec.Command(os.Args[0])
		worker.Env = append(os.Environ(), "GRACESHIM_TEST_CHILD=sendnotify:watchdog")
		if err := worker.Run(); err != nil {
			report("error worker %v", err)
		}
		notify("STATUS=worker pinged")
		notify("WATCHDOG=1")
		notify("STATUS=master pinged")
		report("master pinged")
	}
}

// TestRelayWatchdogDaemonized: a daemon that forks its master (--pidfile)
// gets no WATCHDOG_PID naming the process that exits, so the master's
// sd_watchdog_enabled(3) finds the watchdog its own; graceshim relays the
// master's pings and drops a worker's, as systemd drops any but the main
// pid's.
func TestRelayWatchdogDaemonized(t *testing.T) {
	// An hour: graceshim's own feeding (every half of it) never comes
	// during the test, so every WATCHDOG=1 seen is a relayed one.
	t.Setenv("WATCHDOG_USEC", "3600000000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	pidfile := filepath.Join(t.TempDir(), "master.pid")
	t.Setenv("GRACESHIM_TEST_PIDFILE", pidfile)
	following := make(chan struct{}, 1)
	ns := newNotifySocket(t)
	ev, _, _ := start(t, "wdaemon", func(o *Options) {
		o.Notify = NotifyRelay
		o.Ready = ReadyExec
		o.PIDFile = pidfile
		o.Log = NewLogger(io.MultiWriter(testWriter{t}, lineWatch{"following", following}), LevelDebug)
	})
	if _, rest := ev.wait("wmaster watchdog"); rest != "mine=true" {
		t.Errorf("the daemonized master's watchdog: %s, want mine=true (WATCHDOG_PID=%s names another process)", rest, os.Getenv("WATCHDOG_PID"))
	}
	select {
	case <-following:
	case <-time.After(20 * time.Second):
		t.Fatal("graceshim did not follow the daemonized master")
	}
	selfSignal(t, syscall.SIGUSR1)
	ev.wait("master pinged")
	st, before := ns.waitLine(t, "STATUS=running")
	for !strings.HasSuffix(st, "worker pinged") {
		st, before = ns.waitLine(t, "STATUS=running")
	}
	for _, l := range before {
		if l == "WATCHDOG=1" {
			t.Errorf("a worker's WATCHDOG=1 was relayed: %q", before)
		}
	}
	ns.waitLine(t, "WATCHDOG=1")
	if st, _ := ns.waitLine(t, "STATUS=running"); !strings.HasSuffix(st, "master pinged") {
		t.Errorf("status %q after the master's ping, want master pinged", st)
	}
}
