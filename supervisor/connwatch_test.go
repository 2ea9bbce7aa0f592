package supervisor

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/graceshim/graceshim/supervisor/conns"
)

// slowWatcher finds a listener at once while the server starts, then
// takes learnDelay for every later Learn, as a tree of thousands of
// processes or descriptors would.
type slowWatcher struct {
	learned    int
	learnDelay time.Duration
	release    chan struct{} // closed: the one connection closed
}

func (w *slowWatcher) Learn(int) ([]string, error) {
	if w.learned++; w.learned > 1 {
		time.Sleep(w.learnDelay)
	}
	return []string{"tcp4 127.0.0.1:1"}, nil
}

func (w *slowWatcher) Drain(context.Context, int) (DrainCounter, error) {
	return &scriptedDrain{release: w.release}, nil
}

// scriptedDrain counts one connection, then none once released.
type scriptedDrain struct {
	calls   int
	release chan struct{}
}

func (d *scriptedDrain) Next(ctx context.Context) (int, error) {
	d.calls++
	switch d.calls {
	case 1:
		return 1, nil
	case 2:
		select {
		case <-d.release:
			return 0, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	<-ctx.Done()
	return 0, ctx.Err()
}

func (d *scriptedDrain) Close() {}

// TestRunSlowLearnStillCounts: learning the listeners at the graceful
// signal takes longer than the 1s the event loop waits for it; the
// signal goes out on time and the drain is still counted.
func TestRunSlowLearnStillCounts(t *testing.T) {
	ns := newNotifySocket(t)
	w := &slowWatcher{learnDelay: 1500 * time.Millisecond, release: make(chan struct{})}
	ev, done, _ := start(t, "server", func(o *Options) { o.Watcher = w })
	_, port := ev.wait("ready ")
	c := dial(t, ev, port)
	waitNotify(t, ns, "READY=1")
	selfSignal(t, syscall.SIGTERM)
	ev.wait("got QUIT")
	waitNotify(t, ns, "STATUS=draining: 1 connection left")
	close(w.release)
	waitNotify(t, ns, "STATUS=draining: no connections left")
	c.Close()
	ev.wait("exit drained")
	if err := result(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestConnWatcherCountsTheWholeTree: a worker that its master left to
// graceshim (here: a server started beside the master, as a reparented
// worker is) still serves the drain's connections; --count=all and
// --count=listen both count them.
func TestConnWatcherCountsTheWholeTree(t *testing.T) {
	master := exec.Command("sleep", "60")
	if err := master.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { master.Process.Kill(); master.Wait() })

	ev := newEvents(t)
	worker := exec.Command(os.Args[0])
	worker.Env = append(os.Environ(), "GRACESHIM_TEST_CHILD=server", "GRACESHIM_TEST_EVENTS="+ev.path)
	if err := worker.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { worker.Process.Kill(); worker.Wait() })
	_, port := ev.wait("ready ")
	c := dial(t, ev, port)
	defer c.Close()

	for _, mode := range []conns.Mode{conns.ModeListen, conns.ModeAll} {
		t.Run(mode.String(), func(t *testing.T) {
			w := newConnWatcher(mode, NewLogger(testWriter{t}, LevelDebug))
			known, err := w.Learn(master.Process.Pid)
			if err != nil || !strings.Contains(strings.Join(known, " "), ":"+port) {
				t.Fatalf("Learn = %q, %v; want the worker's listener on port %s", known, err, port)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			d, err := w.Drain(ctx, master.Process.Pid)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			if n, err := d.Next(ctx); n != 1 || err != nil {
				t.Fatalf("count %d, %v; want the worker's 1 connection", n, err)
			}
		})
	}
}

// countingWatcher finds no listener and records each Learn.
type countingWatcher struct{ calls chan int }

func (w *countingWatcher) Learn(int) ([]string, error) {
	w.calls <- 1
	return nil, nil
}

func (w *countingWatcher) Drain(context.Context, int) (DrainCounter, error) {
	return nil, errNothingToCount
}

// TestWatchSleepsPastTheReadyBound: a server that never listens (a worker
// daemon) is looked at until the ready bound and never after: the watch
// actor keeps no timer. Learning on demand (a reload's end) still works.
// The wait below cannot make the test fail wrongly; it gives a timer that
// should not exist the time to fire several times over.
func TestWatchSleepsPastTheReadyBound(t *testing.T) {
	w := &countingWatcher{calls: make(chan int, 100)}
	cmds := make(chan watchCmd)
	startWatch(t, w, time.Now().Add(300*time.Millisecond), cmds, make(chan watchEvent, 4))
	polls := 0
	deadline := time.After(30 * time.Second)
	for polls < 3 { // polled until the bound: at 0, 10, 30, 70, 150 and 310 ms
		select {
		case <-w.calls:
			polls++
		case <-deadline:
			t.Fatalf("%d ready polls in 30s", polls)
		}
	}
	time.Sleep(4 * readyPollMax)
	for len(w.calls) > 0 {
		<-w.calls
		polls++
	}
	if polls > 7 {
		t.Fatalf("%d Learn calls: the watch actor still polls past the ready bound", polls)
	}
	reply := make(chan []string, 1)
	cmds <- watchCmd{learn: reply}
	<-reply
	if n := len(w.calls); n != 1 {
		t.Fatalf("learning on demand made %d Learn calls, want 1", n)
	}
}

// failingWatcher fails to start the first drains, then starts them.
type failingWatcher struct {
	fails  int // Drain calls left to fail
	drains int
}

func (w *failingWatcher) Learn(int) ([]string, error) { return []string{"tcp4 127.0.0.1:1"}, nil }

func (w *failingWatcher) Drain(context.Context, int) (DrainCounter, error) {
	w.drains++
	if w.fails > 0 {
		w.fails--
		return nil, errors.New("cannot list sockets of pid 7: too many open files")
	}
	return &scriptedDrain{release: make(chan struct{})}, nil
}

// TestWatchRetriesTheDrainStart: a drain whose start fails (a passing
// error) is reported as a failed count, and started again countRetry
// later: the rest of the stop is counted, and stall detection comes back.
func TestWatchRetriesTheDrainStart(t *testing.T) {
	w := &failingWatcher{fails: 2}
	cmds := make(chan watchCmd, 1)
	out := make(chan watchEvent, 4)
	startWatch(t, w, time.Time{}, cmds, out)
	cmds <- watchCmd{drain: true}
	guard := time.After(30 * time.Second) // a hang guard only
	for fails := 0; ; {
		select {
		case ev := <-out:
			switch {
			case ev.err != nil:
				fails++
			case ev.counted && ev.count == 1:
				if fails != 2 {
					t.Fatalf("counted after %d failed starts, want 2", fails)
				}
				return
			default:
				t.Fatalf("unexpected event %+v", ev)
			}
		case <-guard:
			t.Fatalf("no count after %d failed drain starts: the start is not retried", fails)
		}
	}
}

// busyWatcher records Learn calls made while one of its drains runs.
type busyWatcher struct {
	draining       atomic.Bool
	learnsDuringIt atomic.Int32
}

func (w *busyWatcher) Learn(int) ([]string, error) {
	if w.draining.Load() {
		w.learnsDuringIt.Add(1)
	}
	return []string{"tcp4 127.0.0.1:1"}, nil
}

func (w *busyWatcher) Drain(context.Context, int) (DrainCounter, error) {
	w.draining.Store(true)
	return &scriptedDrain{release: make(chan struct{})}, nil
}

// TestWatchLeavesTheWatcherToTheDrain: a learn asked for during a drain
// (a reload that ends during the stop) does not use the Watcher, whose
// state the drain's follower is using on another goroutine.
func TestWatchLeavesTheWatcherToTheDrain(t *testing.T) {
	w := &busyWatcher{}
	cmds := make(chan watchCmd, 1)
	out := make(chan watchEvent, 4)
	startWatch(t, w, time.Time{}, cmds, out)
	cmds <- watchCmd{drain: true}
	if ev := <-out; !ev.counted {
		t.Fatalf("first event %+v, want a count", ev)
	}
	reply := make(chan []string, 1)
	cmds <- watchCmd{learn: reply}
	<-reply
	if n := w.learnsDuringIt.Load(); n != 0 {
		t.Fatalf("%d Learn calls during the drain, want none", n)
	}
}

// TestConnDrainDetailsCadence: the first count of a drain comes with the
// connections named; counts within detailsEvery of that look come
// without; the next one after it names those left.
func TestConnDrainDetailsCadence(t *testing.T) {
	ev := newEvents(t)
	srv := exec.Command(os.Args[0])
	srv.Env = append(os.Environ(), "GRACESHIM_TEST_CHILD=server", "GRACESHIM_TEST_EVENTS="+ev.path)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	_, port := ev.wait("ready ")
	var clients []net.Conn
	for i := 0; i < 3; i++ {
		c := dial(t, ev, port)
		defer c.Close()
		clients = append(clients, c)
	}
	w := newConnWatcher(conns.ModeListen, NewLogger(testWriter{t}, LevelDebug))
	if _, err := w.Learn(srv.Process.Pid); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dc, err := w.Drain(ctx, srv.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	d := dc.(*connDrain)
	// next returns the report of the count that reached want, and
	// whether any count on the way (a count may come unchanged: a
	// re-dump) came with a new look.
	next := func(want int) (*drainReport, bool) {
		t.Helper()
		looked := false
		for {
			n, err := d.Next(ctx)
			if err != nil {
				t.Fatal(err)
			}
			r := d.report()
			looked = looked || r.fresh
			if n == want {
				return r, looked
			}
		}
	}
	peers := func(r *drainReport) []string {
		var out []string
		for _, c := range r.details.Conns {
			out = append(out, c.Peer.String())
		}
		sort.Strings(out)
		return out
	}
	local := func(c net.Conn) string { return c.LocalAddr().String() }
	r, looked := next(3)
	if !looked || r.details == nil || r.details.TCP != 3 || r.counts.Total() != 3 {
		t.Fatalf("first count: %+v, want the 3 connections named", r)
	}
	want := []string{local(clients[0]), local(clients[1]), local(clients[2])}
	sort.Strings(want)
	if got := peers(r); !slices.Equal(got, want) {
		t.Errorf("named %v, want %v", got, want)
	}
	clients[0].Close()
	r, looked = next(2)
	if looked || r.details == nil || r.details.TCP != 2 || len(r.details.Conns) != 2 || slices.Contains(peers(r), local(clients[0])) {
		t.Errorf("a count right after a look: %+v (new look: %v), want the last look without %s", r.details, looked, local(clients[0]))
	}
	d.looked = d.looked.Add(-detailsEvery) // as if detailsEvery had passed
	clients[1].Close()
	r, looked = next(1)
	if !looked || r.details == nil || r.details.TCP != 1 || !slices.Equal(peers(r), []string{local(clients[2])}) {
		t.Errorf("a count detailsEvery after the look: %+v (new look: %v), want %s named", r.details, looked, local(clients[2]))
	}
}

// startWatch runs the watch actor on w until the test ends.
func startWatch(t *testing.T, w Watcher, readyUntil time.Time, cmds <-chan watchCmd, out chan<- watchEvent) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		watch(ctx, w, 1, readyUntil, cmds, out)
	}()
	t.Cleanup(func() { cancel(); <-done })
}
