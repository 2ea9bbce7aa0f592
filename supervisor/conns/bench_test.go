package conns

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	psnet "github.com/shirou/gopsutil/v3/net"
	"github.com/shirou/gopsutil/v3/process"
	"golang.org/x/sys/unix"
)

// fixture is a server tree like nginx's (a master and 8 workers sharing
// one listening socket) holding n established loopback connections from
// several client processes.
type fixture struct {
	srv     *server
	port    uint32
	n       int
	clients []*helper
}

// perClient keeps each client process under the 20,000 descriptor hard
// limit (FACTS §5) and each source address well inside the 28,232 ports
// of the ephemeral range (32768-60999).
const perClient = 12500

// startFixture builds the fixture; firstIP numbers the first client
// source address (127.0.firstIP/256.firstIP%256, then up), so fixtures
// do not share source ports.
func startFixture(b *testing.B, n, firstIP int) *fixture {
	b.Helper()
	// A server port below the ephemeral range, as servers' ports are: a
	// drain may then skip reading the tree's descriptors.
	srv := startServer(b, 8, lowPortAddr(b))
	_, p, _ := net.SplitHostPort(srv.addrs[0])
	port, _ := strconv.Atoi(p)
	var clients []*helper
	for i := 0; n-i*perClient > 0; i++ {
		k := min(perClient, n-i*perClient)
		ip := firstIP + i
		clients = append(clients, startClient(b, srv.addrs[0], fmt.Sprintf("127.0.%d.%d", ip/256, ip%256), k))
	}
	b.Cleanup(func() {
		// The clients reset their connections as they go (SO_LINGER 0):
		// no side is left in TIME_WAIT, whose sockets every later dump
		// of the socket table would walk for a minute.
		for _, c := range clients {
			c.stop()
		}
		srv.stop()
	})
	deadline := time.Now().Add(hangGuard)
	for srv.held() != n {
		if time.Now().After(deadline) {
			b.Fatalf("server holds %d connections, want %d", srv.held(), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return &fixture{srv: srv, port: uint32(port), n: n, clients: clients}
}

func (f *fixture) tracker(b *testing.B, source string) *Tracker {
	b.Helper()
	tr := NewTracker(Options{Source: source})
	if _, err := tr.Observe(f.srv.pids); err != nil {
		b.Fatal(err)
	}
	return tr
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
	// A server port below the ephemeral range, as servers' ports are: a
	// drain may then skip reading the tree's descriptors.
	srv := startServer(b, 8, lowPortAddr(b))
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

// BenchmarkCountUnix measures one count of a unix-socket server's
// connections (1,000 held, as a php-fpm pool's children would), through
// unix_diag and through /proc/net/unix. Neither can filter in the kernel:
// each walks every unix socket of the host, which a drain polls.
func BenchmarkCountUnix(b *testing.B) {
	const n = 1000
	srv := startUnixServer(b, filepath.Join(b.TempDir(), "fpm.sock"))
	for i := 0; i < n; i++ {
		c, err := net.Dial("unix", srv.addrs[0])
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
	}
	for srv.held() != n {
		time.Sleep(10 * time.Millisecond)
	}
	for _, src := range sources {
		b.Run(src, func(b *testing.B) {
			tr := NewTracker(Options{Source: src})
			if _, err := tr.Observe(srv.pids); err != nil {
				b.Fatal(err)
			}
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
}

// BenchmarkDrain measures the drain as the supervisor runs it: a Drain
// started on the fixture's n connections, the clients closing all of them
// evenly over drainOver, Next called until it reports zero. Following the
// kernel's destroy messages ("events") is compared with polling ("poll":
// the subscription refused). Figures:
//   - %core: this process's CPU time (getrusage, user + system) per
//     wall-clock second of the drain, in % of one core;
//   - last-close-us: from the server's last close(2) of a connection to
//     Next reporting zero (the kernel's teardown included: the socket is
//     freed when the client's ACK of the server's FIN arrives);
//   - start-ms: CPU time of starting the drain (the tree's descriptors
//     read, the first dump);
//   - dumps: full walks of the socket table.
//
// Each op builds a fresh fixture, so run it with -benchtime=1x. The client
// ends go to TIME_WAIT, so every fixture dials from addresses of its own.
func BenchmarkDrain(b *testing.B) {
	const drainOver = 10 * time.Second
	// Clients close first, so their ends stay in TIME_WAIT for a minute:
	// a run started soon after another dials from other addresses.
	firstIP := 256 * (1 + os.Getpid()%200)
	for _, n := range []int{10000, 50000} {
		for _, how := range []string{"events", "events-fds", "poll"} {
			b.Run(fmt.Sprintf("conns=%d/%s", n, how), func(b *testing.B) {
				if testing.Short() {
					b.Skip("large fixture skipped in -short mode")
				}
				var cpu, wall, late, startCPU time.Duration
				dumps := 0
				for b.Loop() {
					b.StopTimer()
					f := startFixture(b, n, firstIP)
					firstIP += (n + perClient - 1) / perClient
					tr := NewTracker(Options{})
					switch how {
					case "poll":
						tr.hooks.subscribe = func() (int, error) { return -1, unix.EPERM }
					case "events-fds":
						// As before: the tree's 50,000 descriptors read.
						tr.hooks.readFds = true
					}
					if _, err := tr.Observe(f.srv.pids); err != nil {
						b.Fatal(err)
					}
					ctx := context.Background()
					b.StartTimer()
					before, start := rusage(b), time.Now()
					d, err := tr.Drain(ctx, f.srv.pids)
					if err != nil {
						b.Fatal(err)
					}
					startCPU += rusage(b) - before
					if ok, why := d.Events(); ok != (how != "poll") {
						b.Fatalf("Events() = %v, %v", ok, why)
					}
					closed := make(chan int64, len(f.clients))
					for _, c := range f.clients {
						go func() {
							fmt.Fprintf(c.in, "close %s\n", drainOver)
							var t int64
							fmt.Sscanf(<-c.lines, "closed %d", &t)
							closed <- t
						}()
					}
					for {
						c, err := d.Next(ctx)
						if err != nil {
							b.Fatal(err)
						}
						if c.Total() == 0 {
							break
						}
					}
					zero := time.Now()
					cpu += rusage(b) - before
					wall += zero.Sub(start)
					dumps += d.dumps
					d.Close()
					b.StopTimer()
					for range f.clients {
						<-closed
					}
					var last int64
					if _, err := fmt.Sscanf(f.srv.do("last-close"), "last-close %d", &last); err != nil || last == 0 {
						b.Fatalf("no last close from the server: %v", err)
					}
					late += zero.Sub(time.Unix(0, last))
					f.srv.stop()
					b.StartTimer()
				}
				b.ReportMetric(100*cpu.Seconds()/wall.Seconds(), "%core")
				b.ReportMetric(float64(late.Microseconds())/float64(b.N), "last-close-us")
				b.ReportMetric(float64(dumps)/float64(b.N), "dumps")
				b.ReportMetric(float64(startCPU.Microseconds())/1000/float64(b.N), "start-ms")
			})
		}
	}
}
