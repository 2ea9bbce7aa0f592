package conns

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"

	psnet "github.com/shirou/gopsutil/v3/net"
	"github.com/shirou/gopsutil/v3/process"
)

// fixture is a server tree like nginx's (a master and 8 workers sharing
// one listening socket) holding n established loopback connections from
// several client processes.
type fixture struct {
	srv  *server
	port uint32
	n    int
}

// perClient keeps each client process under the 20,000 descriptor hard
// limit (FACTS §5) and each source address well inside the 28,232 ports
// of the ephemeral range (32768-60999).
const perClient = 12500

// startFixture builds the fixture; firstIP is the last byte of the first
// client source address (127.0.0.firstIP, then up), so fixtures of
// different sizes do not share source ports. The server is torn down
// before the clients, so the server's sockets, not the clients', end in
// TIME_WAIT and a later run finds the client ports free.
func startFixture(b *testing.B, n, firstIP int) *fixture {
	b.Helper()
	srv := startServer(b, 8, "127.0.0.1:0")
	_, p, _ := net.SplitHostPort(srv.addrs[0])
	port, _ := strconv.Atoi(p)
	var clients []*helper
	for i := 0; n-i*perClient > 0; i++ {
		k := min(perClient, n-i*perClient)
		clients = append(clients, startClient(b, srv.addrs[0], fmt.Sprintf("127.0.0.%d", firstIP+i), k))
	}
	b.Cleanup(func() {
		srv.stop()
		for _, c := range clients {
			c.stop()
		}
	})
	deadline := time.Now().Add(hangGuard)
	for srv.held() != n {
		if time.Now().After(deadline) {
			b.Fatalf("server holds %d connections, want %d", srv.held(), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return &fixture{srv: srv, port: uint32(port), n: n}
}

func (f *fixture) tracker(b *testing.B, source string) *Tracker {
	b.Helper()
	tr := NewTracker(Options{Source: source})
	if _, err := tr.Observe(f.srv.pids); err != nil {
		b.Fatal(err)
	}
	return tr
}

// BenchmarkDrainLoop measures what the supervisor's drain loop costs the
// machine: Tracker.Count at 1 Hz against 10k connections. Each op is
// dlTicks seconds of polling; the figure is the process's CPU time
// (getrusage, user + system) per wall-clock second, in % of one core.
//
// It comes before BenchmarkCount in this file so that it runs first:
// sock_diag walks the whole TCP hash, TIME_WAIT sockets included, and the
// 50k fixture's teardown leaves 50,000 of them for a minute, which about
// doubles this figure.
func BenchmarkDrainLoop(b *testing.B) {
	const n, dlTicks = 10000, 5
	if testing.Short() {
		b.Skip("large fixture skipped in -short mode")
	}
	f := startFixture(b, n, 50)
	tr := f.tracker(b, "")
	ctx := context.Background()
	var cpu, wall time.Duration
	polls := 0
	for b.Loop() {
		before, start := rusage(b), time.Now()
		tick := time.NewTicker(time.Second)
		for i := 0; i < dlTicks; i++ {
			c, err := tr.Count(ctx, nil)
			if err != nil {
				b.Fatal(err)
			}
			if c.Total() != n {
				b.Fatalf("counted %+v, want %d", c, n)
			}
			polls++
			<-tick.C
		}
		tick.Stop()
		cpu += rusage(b) - before
		wall += time.Since(start)
	}
	b.ReportMetric(100*cpu.Seconds()/wall.Seconds(), "%core")
	b.ReportMetric(float64(cpu.Microseconds())/float64(polls), "cpu-us/poll")
}

// BenchmarkCount measures one count of the fixture's connections at 1k,
// 10k and 50k: Tracker.Count over netlink, over /proc/net, and gopsutil's
// net.ConnectionsPid summed over the tree (what the design card started
// from; FACTS §5).
func BenchmarkCount(b *testing.B) {
	for i, n := range []int{1000, 10000, 50000} {
		b.Run(fmt.Sprintf("conns=%d", n), func(b *testing.B) {
			if n > 1000 && testing.Short() {
				b.Skip("large fixture skipped in -short mode")
			}
			f := startFixture(b, n, 10+10*i)
			for _, src := range sources {
				b.Run(src, func(b *testing.B) {
					tr := f.tracker(b, src)
					ctx := context.Background()
					b.ReportAllocs()
					for b.Loop() {
						c, err := tr.Count(ctx, nil)
						if err != nil {
							b.Fatal(err)
						}
						if c.Total() != n {
							b.Fatalf("counted %+v, want %d", c, n)
						}
					}
				})
			}
			b.Run("gopsutil", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					total := 0
					for _, pid := range f.srv.pids {
						cs, err := psnet.ConnectionsPid("tcp", int32(pid))
						if err != nil {
							b.Fatal(err)
						}
						for _, c := range cs {
							if c.Laddr.Port == f.port && (c.Status == "ESTABLISHED" || c.Status == "CLOSE_WAIT") {
								total++
							}
						}
					}
					if total != n {
						b.Fatalf("counted %d, want %d", total, n)
					}
				}
			})
		})
	}
}

func rusage(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkTreePids compares TreePids (one /proc/*/stat scan) with
// walking the same master + 8 workers tree with gopsutil's
// Process.Children, which runs pgrep -P per process.
func BenchmarkTreePids(b *testing.B) {
	srv := startServer(b, 8, "127.0.0.1:0")
	b.Run("proc-scan", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			pids, err := TreePids(srv.pid)
			if err != nil || len(pids) != len(srv.pids) {
				b.Fatalf("TreePids = %v, %v", pids, err)
			}
		}
	})
	b.Run("gopsutil", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			pids := gopsutilTree(int32(srv.pid))
			if len(pids) != len(srv.pids) {
				b.Fatalf("gopsutil tree = %v", pids)
			}
		}
	})
}

func gopsutilTree(root int32) []int32 {
	pids := []int32{root}
	for i := 0; i < len(pids); i++ {
		p, err := process.NewProcess(pids[i])
		if err != nil {
			continue
		}
		children, err := p.Children() // pgrep exits 1 for a leaf: an error
		if err != nil {
			continue
		}
		for _, c := range children {
			pids = append(pids, c.Pid)
		}
	}
	return pids
}
