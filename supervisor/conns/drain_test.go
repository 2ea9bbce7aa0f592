package conns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// needEvents skips a test of the destroy subscription where the kernel
// refuses it to us. The subscription works as root (CI runs as root, and
// so does this project's reference machine: FACTS §5).
func needEvents(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the destroy subscription needs root here")
	}
}

// startDrain learns srv's listeners and starts a drain of pids. Re-dumps
// are pushed an hour away, so that every count the test sees after the
// first comes from a destroy message.
func startDrain(t *testing.T, tr *Tracker, srvPids, pids []int) *Drain {
	t.Helper()
	tr.hooks.reconcile = time.Hour
	if _, err := tr.Observe(srvPids); err != nil {
		t.Fatal(err)
	}
	d, err := tr.Drain(context.Background(), pids)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// next waits for the drain's next count, with a hang guard.
func next(t *testing.T, d *Drain) Counts {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), countTimeout)
	defer cancel()
	c, err := d.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return c
}

// fallTo waits until the drain counts want, and fails if it counts fewer
// on the way: the count must fall one close at a time. (A count may come
// unchanged: a re-dump after an overrun returns one.)
func fallTo(t *testing.T, d *Drain, want int) {
	t.Helper()
	for {
		got := next(t, d).Total()
		if got < want {
			t.Fatalf("count fell to %d, want %d", got, want)
		}
		if got == want {
			return
		}
	}
}

// TestDrainEvents: the count falls with each close, announced by the
// kernel's destroy messages, with no dump after the first; closes on
// another server's port change nothing.
func TestDrainEvents(t *testing.T) {
	needEvents(t)
	for _, tt := range []struct{ name, listen string }{
		{"ipv4", "127.0.0.1:0"},
		{"ipv6", "[::1]:0"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if strings.HasPrefix(tt.listen, "[") {
				needIPv6(t)
			}
			srv := startServer(t, 2, tt.listen)
			other := startServer(t, 0, tt.listen)
			cs := dial(t, srv.addrs[0], 4)
			os := dial(t, other.addrs[0], 3)
			for srv.held() != 4 || other.held() != 3 {
				time.Sleep(10 * time.Millisecond) // accepted by a worker soon
			}
			d := startDrain(t, NewTracker(Options{}), srv.pids, srv.pids)
			if ok, why := d.Events(); !ok {
				t.Fatalf("drain polls: %v", why)
			}
			if got := next(t, d); got != (Counts{Established: 4}) {
				t.Fatalf("first count %+v, want 4 established", got)
			}
			for i, c := range cs {
				// Another server's connections close first: the next
				// count must be ours, one less.
				if i < len(os) {
					os[i].Close()
				}
				c.Close()
				fallTo(t, d, len(cs)-i-1)
			}
			// An overrun re-dumps, and other tests on the machine may
			// cause one (every socket freed after TIME_WAIT passes the
			// port filter): those dumps are not polls.
			if d.dumps-d.overruns != 1 {
				t.Errorf("%d dumps (%d after overruns), want only the first: the count must follow destroy messages", d.dumps, d.overruns)
			}

			// The server closes first: its socket is freed when it
			// goes on to TIME_WAIT, once the client closes too, and is
			// announced without its port.
			cs = dial(t, srv.addrs[0], 2)
			for srv.held() != 2 {
				time.Sleep(10 * time.Millisecond)
			}
			d = startDrain(t, NewTracker(Options{}), srv.pids, srv.pids)
			if got := next(t, d).Total(); got != 2 {
				t.Fatalf("first count %d, want 2", got)
			}
			if got := srv.do("close-conns"); got != "ok" {
				t.Fatalf("close-conns: %s", got)
			}
			for _, c := range cs {
				c.Close()
			}
			for next(t, d).Total() != 0 {
			}
			if d.dumps-d.overruns != 1 {
				t.Errorf("%d dumps (%d after overruns), want only the first: server-side closes must be seen by destroy messages", d.dumps, d.overruns)
			}
		})
	}
}

// TestDrainCut: connections closed in order (the client's close, then the
// server's) are not cut; connections the server resets with data the
// client has not received are, as the destroy messages say.
func TestDrainCut(t *testing.T) {
	needEvents(t)
	srv := startServer(t, 0, "127.0.0.1:0")
	cs := dial(t, srv.addrs[0], 3)
	for srv.held() != 3 {
		time.Sleep(10 * time.Millisecond) // accepted soon
	}
	d := startDrain(t, NewTracker(Options{}), srv.pids, srv.pids)
	if got := next(t, d).Total(); got != 3 {
		t.Fatalf("first count %d, want 3", got)
	}
	cs[0].Close()
	fallTo(t, d, 2)
	if d.Cut() != 0 {
		t.Errorf("an orderly close counted as cut (%d)", d.Cut())
	}
	if got := srv.do("cut-conns"); got != "ok" {
		t.Fatalf("cut-conns: %s", got)
	}
	fallTo(t, d, 0)
	if d.Cut() != 2 {
		t.Errorf("%d connections counted as cut, want the 2 the server reset with data unread", d.Cut())
	}
}

// TestDrainCountsTheTreeOnly: a second server on the same port
// (SO_REUSEPORT, as in a handover to a new instance) holds connections on
// the same endpoint; they are not the tree's and do not count.
func TestDrainCountsTheTreeOnly(t *testing.T) {
	// On a port outside the ephemeral range, where a drain would take
	// every connection on the port for the tree's were b not listening
	// there too.
	a := startServerEnv(t, 1, []string{reuseEnv + "=1"}, lowPortAddr(t))
	b := startServerEnv(t, 0, []string{reuseEnv + "=1"}, a.addrs[0])
	// The kernel spreads connections over both by a hash of the client's
	// address and port: dial until each holds some.
	var cs []net.Conn
	for i := 0; i < 200 && (a.held() == 0 || b.held() == 0); i++ {
		cs = append(cs, dial(t, a.addrs[0], 4)...)
	}
	if a.held() == 0 || b.held() == 0 {
		t.Fatalf("connections not spread over both servers: %d and %d", a.held(), b.held())
	}
	for a.held()+b.held() != len(cs) {
		time.Sleep(10 * time.Millisecond)
	}
	for _, src := range sources {
		t.Run(src, func(t *testing.T) {
			tr := NewTracker(Options{Source: src})
			d := startDrain(t, tr, a.pids, a.pids)
			if got, want := next(t, d).Total(), a.held(); got != want {
				t.Errorf("drain of server a counts %d, want the %d it holds (b holds %d)", got, want, b.held())
			}
			if d.anyOwner {
				t.Error("the drain took every connection on the port though b listens there too")
			}
		})
	}
}

// TestDrainWithoutDescriptors: a server alone on its port (outside the
// ephemeral range) is drained without reading its descriptors; its
// connections count, another server's do not, and the count falls with
// each close.
func TestDrainWithoutDescriptors(t *testing.T) {
	needEvents(t)
	srv := startServer(t, 2, lowPortAddr(t))
	other := startServer(t, 0, "127.0.0.1:0")
	cs := dial(t, srv.addrs[0], 4)
	dial(t, other.addrs[0], 3)
	for srv.held() != 4 || other.held() != 3 {
		time.Sleep(10 * time.Millisecond) // accepted soon
	}
	tr := NewTracker(Options{})
	d := startDrain(t, tr, srv.pids, srv.pids)
	if !d.anyOwner {
		t.Fatal("the drain read the descriptors of a server alone on its port")
	}
	if got := next(t, d); got != (Counts{Established: 4}) {
		t.Fatalf("first count %+v, want 4 established", got)
	}
	cs[0].Close()
	cs[1].Close()
	fallTo(t, d, 2)

	// The same with the descriptors read: the same count.
	tr = NewTracker(Options{})
	tr.hooks.readFds = true
	d = startDrain(t, tr, srv.pids, srv.pids)
	if d.anyOwner {
		t.Fatal("readFds hook ignored")
	}
	if got := next(t, d).Total(); got != 2 {
		t.Fatalf("count with descriptors read: %d, want 2", got)
	}
}

// lowPortAddr is a free loopback address on a port below the kernel's
// ephemeral range, where a drain may skip reading descriptors.
func lowPortAddr(t testing.TB) string {
	t.Helper()
	lo, _, err := ephemeralPorts()
	if err != nil {
		t.Fatal(err)
	}
	for p := 20000 + os.Getpid()%5000; p < lo; p += 7 {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err == nil {
			l.Close()
			return l.Addr().String()
		}
	}
	t.Fatalf("no free port below %d", lo)
	return ""
}

// TestDrainOverrun: destroy messages that overflow the subscription's
// receive buffer (made tiny here) are made up for by a re-dump.
func TestDrainOverrun(t *testing.T) {
	needEvents(t)
	const n = 300
	srv := startServer(t, 0, "127.0.0.1:0")
	cs := dial(t, srv.addrs[0], n)
	for srv.held() != n {
		time.Sleep(10 * time.Millisecond)
	}
	tr := NewTracker(Options{})
	tr.hooks.rcvBuf = 1 // the kernel's minimum, a few messages
	d := startDrain(t, tr, srv.pids, srv.pids)
	if got := next(t, d).Total(); got != n {
		t.Fatalf("first count %d, want %d", got, n)
	}
	for _, c := range cs {
		c.Close()
	}
	for srv.held() != 0 {
		time.Sleep(10 * time.Millisecond)
	}
	for next(t, d).Total() != 0 {
	}
	if d.overruns == 0 {
		t.Errorf("no overrun with a %d-byte buffer and %d closes", tr.hooks.rcvBuf, n)
	}
	if d.dumps < 2 {
		t.Errorf("%d dumps: the overrun was not made up by a re-dump", d.dumps)
	}
}

// TestDrainPollsWhenRefused: where the subscription is refused the drain
// polls, and says why.
func TestDrainPollsWhenRefused(t *testing.T) {
	srv := startServer(t, 0, "127.0.0.1:0")
	cs := dial(t, srv.addrs[0], 3)
	for srv.held() != 3 {
		time.Sleep(10 * time.Millisecond)
	}
	tr := NewTracker(Options{})
	tr.hooks.subscribe = func() (int, error) { return -1, unix.EPERM }
	d := startDrain(t, tr, srv.pids, srv.pids)
	if ok, why := d.Events(); ok || !errors.Is(why, unix.EPERM) {
		t.Fatalf("Events() = %v, %v; want polling because of EPERM", ok, why)
	}
	if got := next(t, d).Total(); got != 3 {
		t.Fatalf("first count %d, want 3", got)
	}
	for _, c := range cs {
		c.Close()
	}
	for next(t, d).Total() != 0 {
	}
	if d.dumps < 2 {
		t.Errorf("%d dumps: a polling drain must poll", d.dumps)
	}
}

// TestDrainNetlinkFailsMidDrain: netlink dumps that fail during a drain
// (ENOBUFS, not a refusal) are not taken for counts: each count tries
// netlink twice, then goes through /proc/net, and the count goes on. The
// Tracker does not leave netlink for good: once it works again, the
// counts go through it.
func TestDrainNetlinkFailsMidDrain(t *testing.T) {
	srv := startServer(t, 0, "127.0.0.1:0")
	cs := dial(t, srv.addrs[0], 3)
	for srv.held() != 3 {
		time.Sleep(10 * time.Millisecond)
	}
	tr := NewTracker(Options{})
	tr.hooks.subscribe = func() (int, error) { return -1, unix.EPERM } // poll: every count dumps
	d := startDrain(t, tr, srv.pids, srv.pids)
	if got := next(t, d).Total(); got != 3 {
		t.Fatalf("first count %d, want 3", got)
	}
	failOpens(tr, 1<<30, unix.ENOBUFS)
	cs[0].Close()
	fallTo(t, d, 2)
	if tr.proc.scans == 0 {
		t.Errorf("no /proc/net scan: the count after netlink failed did not go through it")
	}
	if name, why := tr.Source(); name != SourceNetlink || why != nil {
		t.Errorf("Source() = %q, %v; want netlink still: ENOBUFS passes", name, why)
	}
	tr.diag.open = nil // netlink works again
	scans := tr.proc.scans
	cs[1].Close()
	fallTo(t, d, 1)
	if tr.proc.scans != scans {
		t.Errorf("%d /proc/net scans once netlink worked again, want none", tr.proc.scans-scans)
	}
}

// TestPassingNetlinkFailure: a netlink failure that is no refusal is
// retried on a fresh socket and the count goes through netlink; a second
// failure in a row sends that count (only) through /proc/net; a refusal
// leaves netlink for good. TCP and unix counts alike.
func TestPassingNetlinkFailure(t *testing.T) {
	srv := startServer(t, 0, "127.0.0.1:0")
	dial(t, srv.addrs[0], 2)
	for srv.held() != 2 {
		time.Sleep(10 * time.Millisecond)
	}
	usrv := startUnixServer(t, filepath.Join(t.TempDir(), "fpm.sock"))
	c, err := net.Dial("unix", usrv.addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for usrv.held() != 1 {
		time.Sleep(10 * time.Millisecond)
	}
	pids := append(slices.Clone(srv.pids), usrv.pids...)
	want := Counts{Established: 3}
	for _, errno := range []unix.Errno{unix.ENOBUFS, unix.EMFILE, unix.ENOMEM} {
		t.Run(errno.Error(), func(t *testing.T) {
			tr := NewTracker(Options{})
			if _, err := tr.Observe(pids); err != nil {
				t.Fatal(err)
			}
			count := func() Counts {
				t.Helper()
				c, err := tr.Count(context.Background(), nil)
				if err != nil {
					t.Fatal(err)
				}
				return c
			}
			// One failure: retried over netlink.
			failOpens(tr, 1, errno)
			if got := count(); got != want {
				t.Fatalf("count %+v, want %+v", got, want)
			}
			if tr.proc.scans != 0 {
				t.Errorf("%d /proc/net scans after one %v, want a netlink retry", tr.proc.scans, errno)
			}
			// Every try fails: this count through /proc/net.
			failOpens(tr, 1<<30, errno)
			if got := count(); got != want {
				t.Fatalf("count through /proc/net %+v, want %+v", got, want)
			}
			if tr.proc.scans != 2 { // /proc/net/tcp and /proc/net/unix
				t.Errorf("%d /proc/net scans when netlink keeps failing, want 2", tr.proc.scans)
			}
			if name, why := tr.Source(); name != SourceNetlink || why != nil {
				t.Errorf("Source() = %q, %v; want netlink still", name, why)
			}
			// Netlink works again: the next count uses it.
			opens := failOpens(tr, 0, errno)
			if got := count(); got != want {
				t.Fatalf("count %+v, want %+v", got, want)
			}
			if tr.proc.scans != 2 || *opens != 2 {
				t.Errorf("%d /proc/net scans, %d netlink dumps once netlink works again, want 2 and 2", tr.proc.scans, *opens)
			}
		})
	}
	t.Run("refused", func(t *testing.T) {
		tr := NewTracker(Options{})
		if _, err := tr.Observe(pids); err != nil {
			t.Fatal(err)
		}
		opens := failOpens(tr, 1, unix.EPERM)
		if got, err := tr.Count(context.Background(), nil); err != nil || got != want {
			t.Fatalf("count %+v, %v, want %+v", got, err, want)
		}
		if name, why := tr.Source(); name != SourceProc || !errors.Is(why, unix.EPERM) {
			t.Errorf("Source() = %q, %v; want proc for good because of EPERM", name, why)
		}
		if _, err := tr.Count(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
		if *opens != 1 {
			t.Errorf("%d netlink opens, want only the refused one", *opens)
		}
	})
}

// TestDrainAll: ModeAll counts every connection the given processes hold,
// inbound and outbound, and follows their closes.
func TestDrainAll(t *testing.T) {
	needEvents(t)
	a := startServer(t, 0, "127.0.0.1:0")
	b := startServer(t, 0, "127.0.0.1:0")
	cs := dial(t, a.addrs[0], 2)
	if got := a.do("dial " + b.addrs[0]); got != "ok" {
		t.Fatalf("dial: %s", got)
	}
	for a.held() != 3 {
		time.Sleep(10 * time.Millisecond)
	}
	tr := NewTracker(Options{Mode: ModeAll})
	d := startDrain(t, tr, a.pids, a.pids)
	if got := next(t, d).Total(); got != 3 {
		t.Fatalf("first count %d, want 3 (2 inbound, 1 outbound)", got)
	}
	cs[0].Close()
	fallTo(t, d, 2)
}

// TestEndpointsBounded: a server that keeps replacing its listener does
// not grow the filter without end, and counting keeps working.
func TestEndpointsBounded(t *testing.T) {
	srv := startServer(t, 0, "127.0.0.1:0")
	tr := NewTracker(Options{})
	addr := srv.addrs[0]
	for i := 0; i < maxStaleEndpoints+20; i++ {
		if _, err := tr.Observe(srv.pids); err != nil {
			t.Fatal(err)
		}
		r := srv.do("relisten")
		a, ok := strings.CutPrefix(r, "ok ")
		if !ok {
			t.Fatalf("relisten: %s", r)
		}
		addr = a
	}
	if _, err := tr.Observe(srv.pids); err != nil {
		t.Fatal(err)
	}
	eps := tr.Endpoints()
	if len(eps) != maxStaleEndpoints+1 {
		t.Errorf("%d endpoints remembered, want %d stale and the live one", len(eps), maxStaleEndpoints)
	}
	// The live listener is remembered, though not always last: the kernel
	// may give a relisten a port an earlier listener had, and that
	// endpoint is then already known.
	if !slices.ContainsFunc(eps, func(e Endpoint) bool { return e.Addr.String() == addr }) {
		t.Errorf("endpoints %v do not hold the live listener %s", eps, addr)
	}
	dial(t, addr, 2)
	waitCounts(t, map[string]*Tracker{"bounded": tr}, nil, Counts{Established: 2})
}

// TestDrainCanceled: a drain waiting for destroy messages returns when
// its context ends (the supervisor ends it when the tree is gone).
func TestDrainCanceled(t *testing.T) {
	needEvents(t)
	srv := startServer(t, 0, "127.0.0.1:0")
	dial(t, srv.addrs[0], 1)
	for srv.held() != 1 {
		time.Sleep(10 * time.Millisecond)
	}
	d := startDrain(t, NewTracker(Options{}), srv.pids, srv.pids)
	next(t, d)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := d.Next(ctx)
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Next = %v, want context.Canceled", err)
		}
	case <-time.After(countTimeout):
		t.Fatal("Next did not return after its context ended")
	}
}

// TestObserveReadsDescriptorsOnlyWhenNeeded: learning again with nothing
// new listening does not read the tree's descriptors (0.2 s at 50,000
// connections, at the graceful signal); a new listener, or a new process
// in the tree, does.
func TestObserveReadsDescriptorsOnlyWhenNeeded(t *testing.T) {
	srv := startServer(t, 0, "127.0.0.1:0")
	// Another server, outside the tree for now: its listener is placed
	// as another process's.
	other := startServer(t, 0, "127.0.0.1:0")
	tr := NewTracker(Options{})
	observe := func(pids []int) {
		t.Helper()
		if _, err := tr.Observe(pids); err != nil {
			t.Fatal(err)
		}
	}
	observe(srv.pids)
	observe(srv.pids)
	if tr.scans != 1 {
		t.Fatalf("%d descriptor readings for two Observes with nothing new, want 1", tr.scans)
	}
	r := srv.do("relisten")
	addr, ok := strings.CutPrefix(r, "ok ")
	if !ok {
		t.Fatalf("relisten: %s", r)
	}
	observe(srv.pids)
	if tr.scans != 2 {
		t.Fatalf("%d descriptor readings after a new listener, want 2", tr.scans)
	}
	if eps := tr.Endpoints(); eps[len(eps)-1].Addr.String() != addr {
		t.Fatalf("endpoints %v, want the new listener %s last", eps, addr)
	}
	observe(append(slices.Clone(srv.pids), other.pids...))
	if tr.scans != 3 {
		t.Fatalf("%d descriptor readings after the tree changed, want 3", tr.scans)
	}
	if eps := tr.Endpoints(); eps[len(eps)-1].Addr.String() != other.addrs[0] {
		t.Fatalf("endpoints %v, want the new process's listener %s last", eps, other.addrs[0])
	}
}

// TestManyListeners: a tree with more live listeners than one inet_diag
// filter may hold is matched here rather than refused by the kernel.
func TestManyListeners(t *testing.T) {
	addrs := make([]string, maxBytecodeEndpoints+10)
	for i := range addrs {
		addrs[i] = "127.0.0.1:0"
	}
	srv := startServer(t, 0, addrs...)
	other := startServer(t, 0, "127.0.0.1:0")
	dial(t, srv.addrs[0], 1)
	dial(t, srv.addrs[len(srv.addrs)-1], 2)
	dial(t, other.addrs[0], 4)
	for srv.held() != 3 {
		time.Sleep(10 * time.Millisecond)
	}
	trs := trackers(t, ModeListen, srv.pids)
	for src, tr := range trs {
		if n := len(tr.Endpoints()); n != len(addrs) {
			t.Fatalf("%s: %d endpoints, want %d", src, n, len(addrs))
		}
	}
	waitCounts(t, trs, nil, Counts{Established: 3})
	for src, tr := range trs {
		d, err := tr.Drain(context.Background(), srv.pids)
		if err != nil {
			t.Fatalf("%s: Drain: %v", src, err)
		}
		if got := d.Counts().Total(); got != 3 {
			t.Errorf("%s: drain counts %d, want 3", src, got)
		}
		d.Close()
	}
}

// failOpens makes the next n netlink dump sockets fail with err, then
// opens real ones again. It returns how many opens were made.
func failOpens(tr *Tracker, n int, err error) *int {
	opens := new(int)
	tr.diag.open = func() (int, error) {
		*opens++
		if *opens <= n {
			return -1, err
		}
		return openSockDiag()
	}
	return opens
}

// TestDrainFirstDumpThroughProc: when the subscription works but the
// first dump goes through /proc/net (netlink failed), the set has no
// socket cookies, so no destroy message can name a member: the drain
// must poll (and say why) rather than wait for the next re-dump.
func TestDrainFirstDumpThroughProc(t *testing.T) {
	needEvents(t)
	srv := startServer(t, 0, "127.0.0.1:0")
	cs := dial(t, srv.addrs[0], 2)
	for srv.held() != 2 {
		time.Sleep(10 * time.Millisecond)
	}
	tr := NewTracker(Options{})
	tr.hooks.reconcile = time.Hour // a re-dump would hide the bug
	if _, err := tr.Observe(srv.pids); err != nil {
		t.Fatal(err)
	}
	failOpens(tr, 2, unix.ENOBUFS) // the first try and its retry
	d, err := tr.Drain(context.Background(), srv.pids)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if ok, why := d.Events(); ok || why == nil {
		t.Fatalf("Events() = %v, %v; want polling, with the reason", ok, why)
	}
	if got := next(t, d).Total(); got != 2 {
		t.Fatalf("first count %d, want 2", got)
	}
	cs[0].Close()
	fallTo(t, d, 1)
}

// TestDrainLateWakeUp: the callback that wakes a waiting drain when its
// context ends runs on a goroutine of its own and may run late, after
// Next returned for another reason and the drain was closed. It must then
// write nowhere: not to the closed eventfd, not to a descriptor that
// reused its number, and without a data race on it (go test -race).
func TestDrainLateWakeUp(t *testing.T) {
	needEvents(t)
	srv := startServer(t, 0, "127.0.0.1:0")
	cs := dial(t, srv.addrs[0], 2)
	for srv.held() != 2 {
		time.Sleep(10 * time.Millisecond)
	}
	tr := NewTracker(Options{})
	d := startDrain(t, tr, srv.pids, srv.pids)
	next(t, d)

	// The callback is held until the test lets it go. The pipe is read
	// and written with bare system calls (unix.Syscall, not unix.Read),
	// which the race detector does not take for synchronisation: only the
	// Drain's own can order the callback's use of the eventfd after Close.
	// Not RawSyscall: a goroutine blocked in a raw read never tells the
	// scheduler, and a garbage collection waiting to stop the world then
	// waits for it for good (a CI run hung 10 minutes so).
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	started, finished := make(chan struct{}), make(chan struct{})
	tr.hooks.wake = func() {
		close(started)
		var b [1]byte
		unix.Syscall(unix.SYS_READ, uintptr(p[0]), uintptr(unsafe.Pointer(&b[0])), 1)
	}
	tr.hooks.woke = func() { close(finished) }

	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the callback runs as soon as Next waits
	type result struct {
		c   Counts
		err error
	}
	got := make(chan result, 1)
	go func() {
		c, err := d.Next(ctx)
		got <- result{c, err}
	}()
	select {
	case <-started:
	case <-time.After(countTimeout):
		t.Fatal("the wake-up callback did not run")
	}
	// A close wakes Next before the held callback can.
	cs[0].Close()
	var r result
	select {
	case r = <-got:
	case <-time.After(countTimeout):
		t.Fatal("Next did not return on a destroy message")
	}
	if r.err != nil || r.c.Total() != 1 {
		t.Fatalf("Next = %+v, %v; want 1 left", r.c, r.err)
	}
	wakeFd := d.wakeFd
	d.Close()
	// An eventfd that takes the closed eventfd's number, as the next
	// descriptor the process opens may: open them until one does.
	reused := -1
	for i := 0; i < 1024 && reused < 0; i++ {
		fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		if fd == wakeFd {
			reused = fd
		}
	}
	if reused < 0 {
		t.Fatalf("descriptor %d not reused", wakeFd)
	}
	one := []byte{1}
	unix.Syscall(unix.SYS_WRITE, uintptr(p[1]), uintptr(unsafe.Pointer(&one[0])), 1)
	select {
	case <-finished:
	case <-time.After(countTimeout):
		t.Fatal("the wake-up callback did not finish")
	}
	var b [8]byte
	if n, err := unix.Read(reused, b[:]); err != unix.EAGAIN {
		t.Errorf("read of descriptor %d, opened after Close: %d, %v; want EAGAIN: the late callback wrote to it", reused, n, err)
	}
}
