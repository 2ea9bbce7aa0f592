package supervisor

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/graceshim/graceshim/supervisor/conns"
)

// lineWriter passes log lines to the test log and to a channel.
type lineWriter struct {
	t     *testing.T
	lines chan string
}

func (w lineWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	select {
	case w.lines <- string(b):
	default: // a test that stopped reading does not block graceshim
	}
	return len(b), nil
}

func waitLog(t *testing.T, lines <-chan string, substr string) string {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case l := <-lines:
			if strings.Contains(l, substr) {
				return l
			}
		case <-deadline:
			t.Fatalf("no log line with %q within 20s", substr)
		}
	}
}

func waitStatus(t *testing.T, ns *notifySocket, substr string) string {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case m := <-ns.msgs:
			if strings.HasPrefix(m, "STATUS=") && strings.Contains(m, substr) {
				return m
			}
		case <-deadline:
			t.Fatalf("no STATUS= with %q within 20s", substr)
		}
	}
}

// freePort returns a loopback port free a moment ago, for the health
// endpoint, whose address Run does not report.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

func askStatus(t *testing.T) Status {
	t.Helper()
	r, err := control(t, "status")
	if err != nil || r.Status == nil {
		t.Fatalf("status: %+v, %v", r, err)
	}
	return *r.Status
}

func getMetrics(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("/metrics: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return string(b)
}

// TestStatusNamesTheConnection: a client whose source port is known holds
// a drain; the log, STATUS=, the status request and /metrics name it.
// While serving, status counts it on its listener; two status clients at
// once both get an answer.
func TestStatusNamesTheConnection(t *testing.T) {
	ns := newNotifySocket(t)
	lines := make(chan string, 256)
	health := "127.0.0.1:" + freePort(t)
	ev, done, _ := start(t, "server", func(o *Options) {
		o.Log = NewLogger(lineWriter{t, lines}, LevelDebug)
		o.HealthListen = health
	})
	_, port := ev.wait("ready ")
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}}
	c, err := d.Dial("tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ev.wait("accepted")
	peer := c.LocalAddr().String()
	waitNotify(t, ns, "READY=1")

	// Serving: the connection counted on its listener, by two clients
	// at once.
	var wg sync.WaitGroup
	got := make([]Status, 2)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = askStatus(t)
		}()
	}
	wg.Wait()
	for _, st := range got {
		if st.State != "serving" || len(st.Listeners) != 1 || st.Listeners[0].Listener != "tcp4 127.0.0.1:"+port || st.Listeners[0].Connections != 1 || st.Drain != nil {
			t.Errorf("status while serving: %+v, want serving with 1 connection on tcp4 127.0.0.1:%s", st, port)
		}
	}
	if m := getMetrics(t, health); !strings.Contains(m, `graceshim_state{state="serving"} 1`) || !strings.Contains(m, `graceshim_stop_outcome{outcome="none"} 1`) {
		t.Errorf("/metrics while serving:\n%s", m)
	}

	selfSignal(t, syscall.SIGTERM)
	ev.wait("got QUIT")
	line := waitLog(t, lines, "waiting for "+peer+" (")
	if !strings.Contains(line, "ESTAB, open >=") || !strings.Contains(line, "sent 0B, received 0B") {
		t.Errorf("log line %q does not describe the connection", line)
	}
	waitStatus(t, ns, "; waiting for "+peer+" (")

	st := askStatus(t)
	if st.State != "draining" || st.Drain == nil || st.Drain.Left != 1 || len(st.Drain.Connections) != 1 || st.Drain.More != 0 {
		t.Fatalf("status while draining: %+v", st)
	}
	cs := st.Drain.Connections[0]
	if cs.Peer != peer || cs.Local != "127.0.0.1:"+port || cs.State != "ESTAB" || cs.Sent == nil || *cs.Sent != 0 || cs.LastRecvSeconds == nil {
		t.Errorf("connection in status: %+v, want %s -> 127.0.0.1:%s", cs, peer, port)
	}
	if _, err := netip.ParseAddrPort(cs.Peer); err != nil {
		t.Error(err)
	}
	m := getMetrics(t, health)
	for _, want := range []string{
		`graceshim_state{state="draining"} 1`,
		`graceshim_drain_connections{state="established"} 1`,
		`graceshim_stop_outcome{outcome="graceful"} 1`,
		"graceshim_stop_escalations_total 0",
		"# TYPE graceshim_drain_closed_connections_total counter",
		`graceshim_drain_oldest_connection_sent_bytes{peer="` + peer + `",local="127.0.0.1:` + port + `"} 0`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics during the drain has no %q:\n%s", want, m)
		}
	}
	if strings.Contains(m, "graceshim_drain_start_time_seconds 0\n") {
		t.Errorf("/metrics: no drain start time during a drain:\n%s", m)
	}
	// The root answers as before.
	resp, err := http.Get("http://" + health + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || strings.TrimSpace(string(b)) != "stopping" {
		t.Errorf("/ during the drain: %d %q", resp.StatusCode, b)
	}

	c.Close()
	ev.wait("exit drained")
	if err := result(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestHoldersText(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 30, 0, time.UTC)
	began := at.Add(-12 * time.Second)
	conn := func(port uint16, sent, recv uint64) conns.Conn {
		return conns.Conn{
			Peer: netip.AddrPortFrom(netip.MustParseAddr("192.0.2.7"), port), Local: netip.MustParseAddrPort("10.0.0.1:80"), State: "ESTAB",
			Info: &conns.TCPInfo{HaveBytes: true, BytesAcked: sent, BytesReceived: recv, LastDataSent: 300 * time.Millisecond, LastDataRecv: 11 * time.Second},
		}
	}
	det := &conns.Details{At: at, TCP: 4, Conns: []conns.Conn{conn(40000, 3<<20, 85), conn(40001, 1536, 0), conn(40002, 0, 0)}}
	for _, tt := range []struct {
		name  string
		det   *conns.Details
		keep  int
		short bool
		want  string
	}{
		{"log", det, 2, false, "192.0.2.7:40000 (ESTAB, open >=12s, sent 3.0MiB, received 85B, last data sent 300ms ago, received 11s ago), " +
			"192.0.2.7:40001 (ESTAB, open >=12s, sent 1.5KiB, received 0B, last data sent 300ms ago, received 11s ago) and 2 more"},
		{"status", det, 1, true, "192.0.2.7:40000 (12s, 3.0MiB/85B, idle 300ms) and 3 more"},
		// STATUS= between two looks: the time open goes on, bytes and
		// idle time are the look's.
		{"status later", det, 1, true, "192.0.2.7:40000 (16s, 3.0MiB/85B, idle 300ms) and 3 more"},
		{"unix too", &conns.Details{At: at, TCP: 1, Unix: 2, UnixPaths: []string{"/run/php/fpm.sock"}, Conns: det.Conns[:1]}, 5, false,
			"192.0.2.7:40000 (ESTAB, open >=12s, sent 3.0MiB, received 85B, last data sent 300ms ago, received 11s ago), 2 unix connections on /run/php/fpm.sock"},
		{"unix only", &conns.Details{At: at, Unix: 1}, 5, true, "1 unix connection"},
		{"none listed", &conns.Details{At: at, TCP: 3}, 5, true, "3 TCP connections"},
		{"none left", &conns.Details{At: at}, 5, true, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			now := tt.det.At
			if tt.name == "status later" {
				now = now.Add(4 * time.Second)
			}
			if got := holdersText(tt.det, began, now, tt.keep, tt.short); got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestSizeText(t *testing.T) {
	for n, want := range map[uint64]string{0: "0B", 1023: "1023B", 1024: "1.0KiB", 1536: "1.5KiB", 5 << 30: "5.0GiB", 1 << 60: "1024.0PiB"} {
		if got := SizeText(n); got != want {
			t.Errorf("SizeText(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestStatusWhileStarting: a server that has not said READY=1 is
// reported as starting.
func TestStatusWhileStarting(t *testing.T) {
	ev, _, cancel := start(t, "server", func(o *Options) { o.Ready = ReadyNotify; o.ReadyTimeout = time.Minute })
	ev.wait("ready ")
	ctx, stop := context.WithTimeout(context.Background(), 30*time.Second)
	defer stop()
	r, err := Control(ctx, syscall.Getpid(), "status")
	if err != nil || r.Status == nil || r.Status.State != "starting" || r.Status.Since.IsZero() {
		t.Fatalf("status while starting: %+v, %v", r, err)
	}
	cancel()
}

// TestStatusDuringDrainDelay: while the drain delay keeps the server
// serving, status says "stopping" and still counts per listener.
func TestStatusDuringDrainDelay(t *testing.T) {
	ns := newNotifySocket(t)
	ev, done, _ := start(t, "server", func(o *Options) { o.DrainDelay = time.Hour })
	_, port := ev.wait("ready ")
	c := dial(t, ev, port)
	defer c.Close()
	waitNotify(t, ns, "READY=1")
	selfSignal(t, syscall.SIGTERM)
	waitStatus(t, ns, "stopping: still serving")
	st := askStatus(t)
	if st.State != "stopping" || st.Since.IsZero() || len(st.Listeners) != 1 || st.Listeners[0].Connections != 1 || st.Drain != nil {
		t.Errorf("status during the drain delay: %+v, want stopping with 1 connection on its listener", st)
	}
	// The graceful signal itself ends the delay (see onSignal).
	selfSignal(t, syscall.SIGQUIT)
	ev.wait("got QUIT")
	c.Close()
	ev.wait("exit drained")
	if err := result(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// stuckListeners is the real watcher whose count per listener blocks
// until released, whatever its context says: a count that takes long
// (a /proc read of a huge table, a stalled netlink socket).
type stuckListeners struct {
	*connWatcher
	entered chan struct{} // one per call, as it begins
	release chan struct{} // closed to let every call return
}

func (w *stuckListeners) PerListener(ctx context.Context) ([]conns.ListenerCount, error) {
	w.entered <- struct{}{}
	<-w.release
	return w.connWatcher.PerListener(ctx)
}

// TestStatusFloodDoesNotHoldTheStop: status requests while the count per
// listener is slow neither block the event loop nor hold the graceful
// signal, and clients that ask at once share one count.
func TestStatusFloodDoesNotHoldTheStop(t *testing.T) {
	w := &stuckListeners{entered: make(chan struct{}, 16), release: make(chan struct{})}
	ev, done, _ := start(t, "server", func(o *Options) {
		w.connWatcher = newConnWatcher(conns.ModeListen, o.Log)
		o.Watcher = w
	})
	ev.wait("ready ")
	const clients = 8
	answers := make(chan Status, clients)
	for range clients {
		go func() {
			r, err := control(t, "status")
			if err != nil || r.Status == nil {
				t.Errorf("status: %+v, %v", r, err)
				answers <- Status{}
				return
			}
			answers <- *r.Status
		}()
	}
	select {
	case <-w.entered:
	case <-time.After(20 * time.Second):
		t.Fatal("no count per listener began within 20s")
	}
	// The requests reach the loop one by one: wait until it has seen
	// them all (each is logged at debug level) before the stop.
	for range clients - 1 {
		ev.waitAny("never") // a pause for the other clients, not a synchronisation
	}
	selfSignal(t, syscall.SIGTERM)
	// The graceful signal goes out while the count is still stuck.
	ev.wait("got QUIT")
	close(w.release)
	for range clients {
		select {
		case st := <-answers:
			if st.State == "" {
				t.Error("a status client got no answer")
			}
		case <-time.After(20 * time.Second):
			t.Fatal("a status client got no answer within 20s")
		}
	}
	if n := len(w.entered); n > 1 {
		t.Errorf("%d more counts per listener for %d clients asking at once, want them to share one", n, clients)
	}
	if err := result(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestStatusWhileReloading: while a reload's config test runs, status
// answers at once, "reloading", and counts per listener; once the reload
// is done, "serving" again.
func TestStatusWhileReloading(t *testing.T) {
	dir := t.TempDir()
	began, finish := filepath.Join(dir, "began"), filepath.Join(dir, "finish")
	for _, f := range []string{began, finish} {
		if err := unix.Mkfifo(f, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p := testBinaryAs("nginx")
	// The config test says it began, then waits for the test.
	p.ConfigTest = func([]string) []string {
		return []string{"sh", "-c", `echo >"$0"; read x <"$1"`, began, finish}
	}
	ns := newNotifySocket(t)
	ev, done, _ := start(t, "server", func(o *Options) { o.Preset = p })
	_, port := ev.wait("ready ")
	c := dial(t, ev, port)
	defer c.Close()
	waitNotify(t, ns, "READY=1")
	reloaded := make(chan error, 1)
	go func() { _, err := control(t, "reload"); reloaded <- err }()
	if _, err := os.ReadFile(began); err != nil { // returns once the config test wrote
		t.Fatal(err)
	}
	st := askStatus(t)
	if st.State != "reloading" || len(st.Listeners) != 1 || st.Listeners[0].Connections != 1 {
		t.Errorf("status during the config test: %+v, want reloading with 1 connection on its listener", st)
	}
	if err := os.WriteFile(finish, []byte("go\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := <-reloaded; err != nil {
		t.Fatalf("reload: %v", err)
	}
	if st := askStatus(t); st.State != "serving" {
		t.Errorf("status after the reload: %+v, want serving", st)
	}
	c.Close()
	selfSignal(t, syscall.SIGTERM)
	ev.wait("exit drained")
	if err := result(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestStatusListenersReadyExec: with a READY=1 that does not wait for a
// listener (--ready=exec; notify and pid files take the same path in
// the watch actor, which looks for listeners only for --ready=listen), status
// still counts the connections per listener while the server serves.
func TestStatusListenersReadyExec(t *testing.T) {
	ns := newNotifySocket(t)
	ev, done, _ := start(t, "server", func(o *Options) { o.Ready = ReadyExec })
	_, port := ev.wait("ready ")
	c := dial(t, ev, port)
	defer c.Close()
	waitNotify(t, ns, "READY=1")
	st := askStatus(t)
	if st.State != "serving" || st.ListenersError != "" || len(st.Listeners) != 1 || st.Listeners[0].Connections != 1 {
		t.Errorf("status: %+v, want serving with 1 connection on its listener", st)
	}
	c.Close()
	selfSignal(t, syscall.SIGTERM)
	ev.wait("exit drained")
	if err := result(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
}
