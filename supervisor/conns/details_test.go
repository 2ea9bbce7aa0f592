package conns

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestTCPInfoOffsets: the offsets read match struct tcp_info as
// golang.org/x/sys/unix lays it out (generated from linux/tcp.h).
func TestTCPInfoOffsets(t *testing.T) {
	var i unix.TCPInfo
	for _, tt := range []struct {
		name      string
		got, want uintptr
	}{
		{"last_data_sent", tcpiLastDataSent, unsafe.Offsetof(i.Last_data_sent)},
		{"last_data_recv", tcpiLastDataRecv, unsafe.Offsetof(i.Last_data_recv)},
		{"rtt", tcpiRTT, unsafe.Offsetof(i.Rtt)},
		{"bytes_acked", tcpiBytesAcked, unsafe.Offsetof(i.Bytes_acked)},
		{"bytes_received", tcpiBytesRecv, unsafe.Offsetof(i.Bytes_received)},
		{"end of bytes_received", tcpiBytesLen, unsafe.Offsetof(i.Bytes_received) + 8},
		{"end of last_ack_recv", tcpiMinLen, unsafe.Offsetof(i.Last_ack_recv) + 4},
	} {
		if tt.got != tt.want {
			t.Errorf("%s at %d, want %d", tt.name, tt.got, tt.want)
		}
	}
}

func TestParseTCPInfo(t *testing.T) {
	var raw unix.TCPInfo
	raw.Last_data_sent, raw.Last_data_recv, raw.Rtt = 1500, 250, 2300
	raw.Bytes_acked, raw.Bytes_received = 1<<33+5, 77
	b := unsafe.Slice((*byte)(unsafe.Pointer(&raw)), unsafe.Sizeof(raw))
	for _, tt := range []struct {
		name string
		b    []byte
		ok   bool
		want TCPInfo
	}{
		{"whole", b, true, TCPInfo{HaveBytes: true, BytesAcked: 1<<33 + 5, BytesReceived: 77,
			LastDataSent: 1500 * time.Millisecond, LastDataRecv: 250 * time.Millisecond, RTT: 2300 * time.Microsecond}},
		{"before Linux 4.1: no byte counts", b[:104], true, TCPInfo{
			LastDataSent: 1500 * time.Millisecond, LastDataRecv: 250 * time.Millisecond, RTT: 2300 * time.Microsecond}},
		{"cut short", b[:40], false, TCPInfo{}},
		{"empty", nil, false, TCPInfo{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseTCPInfo(tt.b)
			if ok != tt.ok || got != tt.want {
				t.Errorf("parseTCPInfo = %+v, %v; want %+v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
	if got := (TCPInfo{LastDataSent: 3 * time.Second, LastDataRecv: time.Second}).Idle(); got != time.Second {
		t.Errorf("Idle = %s, want 1s", got)
	}
}

// TestDetails: a real server holding three connections from clients
// whose source ports are known, after a known number of bytes went each
// way: the details name the two oldest with the bytes, and count the
// third.
func TestDetails(t *testing.T) {
	for _, tt := range []struct{ name, listen, client, local string }{
		{"ipv4", "127.0.0.1:0", "127.0.0.1", "127.0.0.1"},
		{"ipv6", "[::1]:0", "::1", "::1"},
		// A dual-stack listener's IPv4 clients come as v4-mapped
		// addresses: they are named as IPv4.
		{"ipv4 on a dual-stack listener", "[::]:0", "127.0.0.1", "127.0.0.1"},
	} {
		t.Run(tt.name, func(t *testing.T) { testDetails(t, tt.listen, tt.client, tt.local) })
	}
}

func testDetails(t *testing.T, listen, client, local string) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const down, up = 100_000, 1234
	var servers []*net.TCPConn
	var ports []uint16
	for i := 0; i < 3; i++ {
		// The client binds first, so its source port is known.
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(client)}}
		c, s := connPair(t, ln, d, net.JoinHostPort(client, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)))
		servers = append(servers, s.(*net.TCPConn))
		ports = append(ports, uint16(c.LocalAddr().(*net.TCPAddr).Port))
		// down bytes to the client, read by it; then up bytes back, read
		// by the server: their segments carry the ACK of the last byte
		// down, so once the server read them, all down is acknowledged.
		go s.Write(bytes.Repeat([]byte("d"), down))
		if _, err := io.ReadFull(c, make([]byte, down)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(bytes.Repeat([]byte("u"), up+i)); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(s, make([]byte, up+i)); err != nil {
			t.Fatal(err)
		}
	}
	tr := NewTracker(Options{Source: SourceNetlink})
	if _, err := tr.Observe([]int{os.Getpid()}); err != nil {
		t.Fatal(err)
	}
	d, err := tr.Drain(context.Background(), []int{os.Getpid()})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if n := d.Counts().Total(); n != 3 {
		t.Fatalf("drain counts %d, want 3", n)
	}
	det, err := d.Details(context.Background(), 5)
	if err != nil {
		t.Fatal(err)
	}
	if det.TCP != 3 || det.Unix != 0 || len(det.Conns) != 3 {
		t.Fatalf("details: %d TCP, %d unix, %d listed; want 3, 0, 3: %+v", det.TCP, det.Unix, len(det.Conns), det)
	}
	wantLocal := netip.AddrPortFrom(netip.MustParseAddr(local), uint16(ln.Addr().(*net.TCPAddr).Port))
	byPort := map[uint16]Conn{}
	for i, c := range det.Conns {
		if i > 0 && c.Inode <= det.Conns[i-1].Inode {
			t.Errorf("not in inode order: %+v", det.Conns)
		}
		byPort[c.Peer.Port()] = c
	}
	for i, p := range ports {
		c, ok := byPort[p]
		if !ok {
			t.Errorf("client on port %d not named: %+v", p, det.Conns)
			continue
		}
		if c.Peer.Addr() != netip.MustParseAddr(client) || c.Local != wantLocal || c.State != "ESTAB" {
			t.Errorf("conn %d: %s -> %s %s, want %s port %d -> %s ESTAB", i, c.Peer, c.Local, c.State, client, p, wantLocal)
		}
		if c.Info == nil || !c.Info.HaveBytes {
			t.Fatalf("conn %d: no tcp_info byte counts: %+v", i, c.Info)
		}
		if c.Info.BytesAcked != down || c.Info.BytesReceived != uint64(up+i) {
			t.Errorf("conn %d: sent %d received %d, want %d %d", i, c.Info.BytesAcked, c.Info.BytesReceived, down, up+i)
		}
	}
	// With a limit: the oldest two, the third counted.
	two, err := d.Details(context.Background(), 2)
	if err != nil {
		t.Fatal(err)
	}
	if two.TCP != 3 || len(two.Conns) != 2 || two.Conns[0].Inode != det.Conns[0].Inode || two.Conns[1].Inode != det.Conns[1].Inode {
		t.Errorf("limit 2: %+v, want the first two of %+v", two, det)
	}
	// The oldest goes (reset, so that the kernel frees the socket at
	// once): the next details no longer name it.
	servers[0].SetLinger(0)
	servers[0].Close()
	for {
		c := next(t, d)
		if c.Total() == 2 {
			break
		}
	}
	det, err = d.Details(context.Background(), 5)
	if err != nil {
		t.Fatal(err)
	}
	if det.TCP != 2 || len(det.Conns) != 2 || det.Conns[0].Peer.Port() == ports[0] || det.Conns[1].Peer.Port() == ports[0] {
		t.Errorf("after a close: %+v, want the clients on ports %d and %d", det, ports[1], ports[2])
	}
}

// TestPerEndpoint: connections per listener, two listeners.
func TestPerEndpoint(t *testing.T) {
	var lns []net.Listener
	for i := 0; i < 2; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		lns = append(lns, ln)
		for j := 0; j <= i; j++ {
			connPair(t, ln, net.Dialer{}, ln.Addr().String())
		}
	}
	// A unix listener with one connection.
	sock := filepath.Join(t.TempDir(), "fpm.sock")
	uln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer uln.Close()
	connPair(t, uln, net.Dialer{}, sock)
	// One more on the first, still in the backlog: not counted.
	c, err := net.Dial("tcp", lns[0].Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, src := range sources {
		t.Run(src, func(t *testing.T) {
			tr := NewTracker(Options{Source: src})
			if _, err := tr.Observe([]int{os.Getpid()}); err != nil {
				t.Fatal(err)
			}
			got, err := tr.PerEndpoint(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]int{"tcp4 " + lns[0].Addr().String(): 1, "tcp4 " + lns[1].Addr().String(): 2, "unix " + sock: 1}
			if len(got) != len(want) {
				t.Fatalf("PerEndpoint = %v, want %v", got, want)
			}
			for _, g := range got {
				if n, ok := want[g.Endpoint.String()]; !ok || n != g.Conns {
					t.Errorf("PerEndpoint = %v, want %v", got, want)
				}
			}
		})
	}
}

// BenchmarkDetails measures one look at a drain's connections with their
// tcp_info (five listed) at 1k and 10k connections, beside a plain count
// of the same connections (what a drain's reconciling dump costs).
func BenchmarkDetails(b *testing.B) {
	for i, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("conns=%d", n), func(b *testing.B) {
			f := startFixture(b, n, 40+10*i)
			tr := f.tracker(b, SourceNetlink)
			ctx := context.Background()
			d, err := tr.Drain(ctx, f.srv.pids)
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			b.Run("details", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					det, err := d.Details(ctx, 5)
					if err != nil || det.TCP != n || len(det.Conns) != 5 {
						b.Fatalf("details: %d of %d, %v", det.TCP, n, err)
					}
				}
			})
			b.Run("count", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					c, err := tr.Count(ctx, nil)
					if err != nil || c.Total() != n {
						b.Fatalf("count: %d of %d, %v", c.Total(), n, err)
					}
				}
			})
		})
	}
}

// connPair dials addr with d and accepts the connection on ln; both ends
// are closed when the test ends.
func connPair(t *testing.T, ln net.Listener, d net.Dialer, addr string) (client, server net.Conn) {
	t.Helper()
	c, err := d.Dial(ln.Addr().Network(), addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return c, s
}
