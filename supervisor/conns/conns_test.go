package conns

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var sources = []string{SourceNetlink, SourceProc}

// countTimeout bounds the wait for the kernel to show a change the test
// has already caused (a close reaching the server). It is a hang guard,
// not a figure under test.
const countTimeout = 30 * time.Second

// waitCounts polls every tracker until each reports want, and fails with
// the last answers if that does not happen in countTimeout. All trackers
// must agree: that is how netlink and /proc are checked against each other.
func waitCounts(t *testing.T, trs map[string]*Tracker, pids []int, want Counts) {
	t.Helper()
	deadline := time.Now().Add(countTimeout)
	for {
		got := map[string]Counts{}
		ok := true
		for name, tr := range trs {
			c, err := tr.Count(context.Background(), pids)
			if err != nil {
				t.Fatalf("%s: Count: %v", name, err)
			}
			got[name] = c
			ok = ok && c == want
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("counts: got %+v, want %+v for every source", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// trackers returns one Tracker per source, each having observed pids.
func trackers(t *testing.T, mode Mode, pids []int) map[string]*Tracker {
	t.Helper()
	trs := map[string]*Tracker{}
	for _, src := range sources {
		tr := NewTracker(Options{Mode: mode, Source: src})
		if _, err := tr.Observe(pids); err != nil {
			t.Fatalf("%s: Observe: %v", src, err)
		}
		if name, reason := tr.Source(); name != src || reason != nil {
			t.Fatalf("Source() = %q, %v; want %q, nil", name, reason, src)
		}
		trs[src] = tr
	}
	return trs
}

func dial(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	var cs []net.Conn
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		cs = append(cs, c)
	}
	return cs
}

// needIPv6 skips a test on a machine whose loopback has no ::1.
func needIPv6(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	ln.Close()
}

func endpointsOf(t *testing.T, network string, addrs ...string) []Endpoint {
	t.Helper()
	var eps []Endpoint
	for _, a := range addrs {
		eps = append(eps, Endpoint{Network: network, Addr: netip.MustParseAddrPort(a)})
	}
	return eps
}

// TestCountLifecycle follows one server through a drain: connections
// open, the listener closes (nginx does on QUIT) and the count must
// survive it, the server half-closes, clients go away.
func TestCountLifecycle(t *testing.T) {
	tests := []struct {
		name    string
		network string
		listen  string
	}{
		{"ipv4", "tcp4", "127.0.0.1:0"},
		{"ipv6", "tcp6", "[::1]:0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.network == "tcp6" {
				needIPv6(t)
			}
			srv := startServer(t, 2, tt.listen)
			trs := trackers(t, ModeListen, srv.pids)
			for src, tr := range trs {
				if got, want := tr.Endpoints(), endpointsOf(t, tt.network, srv.addrs...); !slices.Equal(got, want) {
					t.Fatalf("%s: Endpoints() = %v, want %v", src, got, want)
				}
				again, err := tr.Observe(srv.pids)
				if err != nil || len(again) != 0 {
					t.Fatalf("%s: second Observe = %v, %v; want nothing new", src, again, err)
				}
			}
			waitCounts(t, trs, nil, Counts{})

			cs := dial(t, srv.addrs[0], 5)
			waitCounts(t, trs, nil, Counts{Established: 5})

			if got := srv.do("close-listeners"); got != "ok" {
				t.Fatalf("close-listeners: %s", got)
			}
			if c, err := net.Dial("tcp", srv.addrs[0]); err == nil {
				c.Close()
				t.Fatal("listener still accepts after close-listeners")
			}
			waitCounts(t, trs, nil, Counts{Established: 5})

			cs[0].Close()
			cs[1].Close()
			waitCounts(t, trs, nil, Counts{Established: 3})

			// The server shuts down its writing side and keeps the
			// descriptors (nginx's lingering close): still its connections.
			if got := srv.do("shutdown-wr"); got != "ok" {
				t.Fatalf("shutdown-wr: %s", got)
			}
			waitCounts(t, trs, nil, Counts{HalfClosed: 3})

			for _, c := range cs[2:] {
				c.Close()
			}
			waitCounts(t, trs, nil, Counts{})
		})
	}
}

// TestCountDualStack: a wildcard IPv6 listener carries IPv4 clients as
// v4-mapped addresses in the IPv6 table.
func TestCountDualStack(t *testing.T) {
	needIPv6(t)
	srv := startServer(t, 0, "[::]:0")
	trs := trackers(t, ModeListen, srv.pids)
	_, port, _ := net.SplitHostPort(srv.addrs[0])
	dial(t, "127.0.0.1:"+port, 2)
	dial(t, "[::1]:"+port, 3)
	waitCounts(t, trs, nil, Counts{Established: 5})
}

// TestCountIgnoresOthers: connections to other servers, on another port
// or on the same port at another address, and the server's own outbound
// connections are not inbound connections of the server.
func TestCountIgnoresOthers(t *testing.T) {
	// Two listeners in one family exercise the OR in the bytecode.
	a := startServer(t, 1, "127.0.0.1:0", "127.0.0.1:0")
	_, portA, _ := net.SplitHostPort(a.addrs[0])
	b := startServer(t, 0, "127.0.0.1:0")
	same := startServer(t, 0, "127.0.0.2:"+portA) // same port, other address

	dial(t, a.addrs[0], 2)
	dial(t, a.addrs[1], 1)
	dial(t, b.addrs[0], 4)
	dial(t, same.addrs[0], 6)
	if got := a.do("dial " + b.addrs[0]); got != "ok" { // a's own outbound connection
		t.Fatalf("dial: %s", got)
	}
	// Accepted soon: a's 3 and its outbound one, b's 4 and a's, same's 6.
	for i, s := range []*server{a, b, same} {
		want := []int{4, 5, 6}[i]
		for deadline := time.Now().Add(countTimeout); s.held() != want; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("server %d holds %d connections, want %d", i, s.held(), want)
			}
		}
	}

	t.Run("listen", func(t *testing.T) {
		waitCounts(t, trackers(t, ModeListen, a.pids), nil, Counts{Established: 3})
		waitCounts(t, trackers(t, ModeListen, b.pids), nil, Counts{Established: 5})
		waitCounts(t, trackers(t, ModeListen, same.pids), nil, Counts{Established: 6})
	})
	t.Run("all", func(t *testing.T) {
		waitCounts(t, trackers(t, ModeAll, a.pids), a.pids, Counts{Established: 4})
		waitCounts(t, trackers(t, ModeAll, b.pids), b.pids, Counts{Established: 5})
	})
}

// TestFallback: an automatic Tracker whose netlink socket is refused
// counts from /proc/net and says why; a forced one fails.
func TestFallback(t *testing.T) {
	srv := startServer(t, 0, "127.0.0.1:0")
	dial(t, srv.addrs[0], 2)
	refuse := func() (int, error) { return -1, unix.EPERM }

	auto := NewTracker(Options{})
	auto.diag.open = refuse
	if name, reason := auto.Source(); name != SourceNetlink || reason != nil {
		t.Fatalf("before use: Source() = %q, %v; want netlink, nil", name, reason)
	}
	if _, err := auto.Observe(srv.pids); err != nil {
		t.Fatal(err)
	}
	name, reason := auto.Source()
	if name != SourceProc || !errors.Is(reason, unix.EPERM) {
		t.Fatalf("Source() = %q, %v; want proc, EPERM", name, reason)
	}
	waitCounts(t, map[string]*Tracker{"auto": auto}, nil, Counts{Established: 2})

	forced := NewTracker(Options{Source: SourceNetlink})
	forced.diag.open = refuse
	if _, err := forced.Observe(srv.pids); !errors.Is(err, unix.EPERM) {
		t.Fatalf("forced netlink Observe: %v, want EPERM", err)
	}
	if name, reason := forced.Source(); name != SourceNetlink || reason != nil {
		t.Fatalf("forced: Source() = %q, %v; want netlink, nil", name, reason)
	}
}

func TestBadOptions(t *testing.T) {
	for _, opts := range []Options{{Source: "ss"}, {Mode: Mode(7)}} {
		tr := NewTracker(opts)
		if _, err := tr.Observe([]int{1}); err == nil {
			t.Errorf("%+v: Observe succeeded", opts)
		}
		if _, err := tr.Count(context.Background(), nil); err == nil {
			t.Errorf("%+v: Count succeeded", opts)
		}
	}
}

func TestCountCanceled(t *testing.T) {
	for _, src := range sources {
		tr := NewTracker(Options{Mode: ModeAll, Source: src})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := tr.Count(ctx, []int{unix.Getpid()}); !errors.Is(err, context.Canceled) {
			t.Errorf("%s: Count with a canceled context: %v", src, err)
		}
	}
}

func TestParseMode(t *testing.T) {
	tests := []struct {
		in      string
		want    Mode
		wantErr bool
	}{
		{"listen", ModeListen, false},
		{"all", ModeAll, false},
		{"", 0, true},
		{"Listen", 0, true},
		{"established", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseMode(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseMode(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err == nil && got.String() != tt.in {
			t.Errorf("%v.String() = %q, want %q", got, got.String(), tt.in)
		}
	}
}

func TestTreePids(t *testing.T) {
	srv := startServer(t, 3, "127.0.0.1:0")
	got, err := TreePids(srv.pid)
	if err != nil {
		t.Fatal(err)
	}
	if got[0] != srv.pid {
		t.Errorf("TreePids(%d)[0] = %d, want the root first", srv.pid, got[0])
	}
	if !sameSet(got, srv.pids) {
		t.Errorf("TreePids(%d) = %v, want %v", srv.pid, got, srv.pids)
	}

	// Grandchildren count too: the test process is the master's parent.
	mine, err := TreePids(unix.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range srv.pids {
		if !slices.Contains(mine, p) {
			t.Errorf("TreePids(self) = %v, missing %d", mine, p)
		}
	}

	if _, err := TreePids(1 << 30); err == nil {
		t.Error("TreePids of a missing process succeeded")
	}
}

func sameSet(a, b []int) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
