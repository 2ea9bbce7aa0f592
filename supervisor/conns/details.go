package conns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"time"
)

// Details name the connections a drain still waits for: who the peer is,
// how much went each way and how long ago the last data did, from the
// kernel's struct tcp_info (sock_diag's INET_DIAG_INFO extension, what
// `ss -ti` prints). They cost a dump of the drain's endpoints with about
// 250 bytes more per socket, so the supervisor asks for them only every
// few seconds during a drain, never while the server serves.

// inet_diag extensions and tcp_info, from include/uapi/linux/inet_diag.h
// (enum INET_DIAG_INFO = 2; idiag_ext bit 1 << (INET_DIAG_x - 1)) and
// include/uapi/linux/tcp.h (struct tcp_info). Offsets are fixed: the
// struct only ever grew at its end, and the kernel sends as much of it as
// it has (inet_sk_diag_fill puts sizeof(struct tcp_info) of its own build).
const (
	inetDiagInfo = 2
	extInfo      = 1 << (inetDiagInfo - 1)

	msgDport = 6  // idiag_dport, big endian
	msgDst   = 24 // idiag_dst, 16 bytes, network order

	tcpiLastDataSent = 44  // __u32 ms, since Linux 2.6
	tcpiLastDataRecv = 52  // __u32 ms
	tcpiRTT          = 68  // __u32 us, smoothed
	tcpiBytesAcked   = 120 // __u64, Linux 4.1 (RFC 4898 tcpEStatsAppHCThruOctetsAcked)
	tcpiBytesRecv    = 128 // __u64, Linux 4.1 (tcpEStatsAppHCThruOctetsReceived)
	tcpiMinLen       = 60  // up to tcpi_last_ack_recv: every kernel sock_diag runs on
	tcpiBytesLen     = 136 // up to tcpi_bytes_received
)

// TCPInfo is what Details reads of a socket's struct tcp_info.
type TCPInfo struct {
	// HaveBytes says BytesAcked and BytesReceived are known (Linux 4.1+).
	HaveBytes bool
	// BytesAcked is what the server sent and the peer acknowledged;
	// BytesReceived what the server received.
	BytesAcked, BytesReceived uint64
	// LastDataSent and LastDataRecv are the time since data last went
	// out and came in (the kernel counts from the socket's creation
	// when none ever did).
	LastDataSent, LastDataRecv time.Duration
	// RTT is the smoothed round-trip time.
	RTT time.Duration
}

// parseTCPInfo reads a struct tcp_info as the kernel sent it; ok is false
// when it is too short to hold even the times.
func parseTCPInfo(b []byte) (TCPInfo, bool) {
	if len(b) < tcpiMinLen {
		return TCPInfo{}, false
	}
	ms := func(off int) time.Duration {
		return time.Duration(binary.NativeEndian.Uint32(b[off:])) * time.Millisecond
	}
	i := TCPInfo{LastDataSent: ms(tcpiLastDataSent), LastDataRecv: ms(tcpiLastDataRecv)}
	if len(b) >= tcpiRTT+4 {
		i.RTT = time.Duration(binary.NativeEndian.Uint32(b[tcpiRTT:])) * time.Microsecond
	}
	if len(b) >= tcpiBytesLen {
		i.HaveBytes = true
		i.BytesAcked = binary.NativeEndian.Uint64(b[tcpiBytesAcked:])
		i.BytesReceived = binary.NativeEndian.Uint64(b[tcpiBytesRecv:])
	}
	return i, true
}

// Idle is the time since data last went either way.
func (i TCPInfo) Idle() time.Duration { return min(i.LastDataSent, i.LastDataRecv) }

// Conn is one connection a drain waits for.
type Conn struct {
	// Local is the server's end, Peer the client's.
	Local, Peer netip.AddrPort
	// State is the TCP state, as ss(8) names it ("ESTAB", "CLOSE-WAIT").
	State string
	// Inode is the socket's inode number.
	Inode uint64
	// Info is nil when the kernel sent no tcp_info.
	Info *TCPInfo
}

// Details is a look at the connections a drain still waits for.
type Details struct {
	// At is when the kernel was asked.
	At time.Time
	// Conns are the TCP connections, oldest first, at most as many as
	// asked for.
	Conns []Conn
	// TCP is how many TCP connections are left, listed or not; Unix how
	// many unix ones (named by their endpoint alone: unix_diag gives
	// the server's end the listener's path and the peer an inode with
	// no name).
	TCP, Unix int
	// UnixPaths are the unix endpoints they came in on.
	UnixPaths []string
}

// ErrNoDetails is returned by Details where sock_diag is refused: /proc/net
// has no byte counts and no times.
var ErrNoDetails = errors.New("connection details need netlink sock_diag")

// Details looks up the TCP connections of the drain's set that are still
// there, with their tcp_info, and returns at most limit of them, oldest
// first. Neither sock_diag nor tcp_info tells when a connection was
// opened (and a socket's inode carries no times: sockfs leaves them
// zero), but inode numbers are handed out in increasing order (get_next_ino
// in fs/inode.c, in per-CPU batches of 1024): the lower inode is the older
// socket, give or take sockets made at the same moment on other CPUs.
// It does not change the drain's count; it must be called from the
// drain's goroutine, between calls of Next.
func (d *Drain) Details(ctx context.Context, limit int) (Details, error) {
	det := Details{At: time.Now(), Unix: len(d.unixSet)}
	if len(d.unixSet) > 0 {
		for p := range d.t.unixPaths() {
			det.UnixPaths = append(det.UnixPaths, p)
		}
		sort.Strings(det.UnixPaths)
	}
	if len(d.set) == 0 {
		return det, nil
	}
	if d.t.source != SourceNetlink {
		det.TCP = len(d.set)
		return det, fmt.Errorf("%w (counting through %s)", ErrNoDetails, d.t.source)
	}
	seen := 0
	for _, fam := range d.fams {
		err := d.t.diag.dumpExt(ctx, fam, extInfo, d.states, d.progs[fam], func(msg []byte) {
			ino := msgInodeOf(msg)
			if _, ok := d.set[ino]; !ok || ino == 0 {
				return
			}
			seen++
			if len(det.Conns) == limit && (limit == 0 || ino > det.Conns[limit-1].Inode) {
				return // younger than every one kept
			}
			c := connOf(msg)
			// Keep the limit oldest, in order: a handful, so an
			// insertion is cheaper than sorting thousands.
			i := sort.Search(len(det.Conns), func(i int) bool { return det.Conns[i].Inode > ino })
			if len(det.Conns) < limit {
				det.Conns = append(det.Conns, Conn{})
			}
			copy(det.Conns[i+1:], det.Conns[i:])
			det.Conns[i] = c
		})
		if err != nil {
			return Details{}, fmt.Errorf("cannot look up connection details: %w", err)
		}
	}
	// A socket freed since the last count is gone from the dump but may
	// still be in the set until its destroy message is read.
	det.TCP = seen
	return det, nil
}

// connOf reads one inet_diag_msg and its attributes.
func connOf(msg []byte) Conn {
	local, lport := msgLocal(msg)
	var peer netip.Addr
	if msg[msgFamily] == afInet {
		peer = netip.AddrFrom4([4]byte(msg[msgDst : msgDst+4]))
	} else {
		peer = netip.AddrFrom16([16]byte(msg[msgDst : msgDst+16])).Unmap()
		local = local.Unmap()
	}
	c := Conn{
		Local: netip.AddrPortFrom(local, lport),
		Peer:  netip.AddrPortFrom(peer, binary.BigEndian.Uint16(msg[msgDport:])),
		State: stateName(msg[msgState]),
		Inode: msgInodeOf(msg),
	}
	// Attributes: struct rtattr {u16 len; u16 type}, 4-byte aligned.
	for a := msg[inetDiagMsgLen:]; len(a) >= nlattrHdrLen; {
		l := int(binary.NativeEndian.Uint16(a[0:2]))
		if l < nlattrHdrLen || l > len(a) {
			break
		}
		if binary.NativeEndian.Uint16(a[2:4]) == inetDiagInfo {
			if i, ok := parseTCPInfo(a[nlattrHdrLen:l]); ok {
				c.Info = &i
			}
		}
		a = a[min((l+3)&^3, len(a)):]
	}
	return c
}

// stateName names a TCP state as ss(8) does.
func stateName(st uint8) string {
	switch st {
	case tcpEstablished:
		return "ESTAB"
	case tcpSynSent:
		return "SYN-SENT"
	case tcpSynRecv, tcpNewSynRecv:
		return "SYN-RECV"
	case tcpFinWait1:
		return "FIN-WAIT-1"
	case tcpFinWait2:
		return "FIN-WAIT-2"
	case tcpTimeWait:
		return "TIME-WAIT"
	case tcpClose:
		return "CLOSE"
	case tcpCloseWait:
		return "CLOSE-WAIT"
	case tcpLastAck:
		return "LAST-ACK"
	case tcpListen:
		return "LISTEN"
	case tcpClosing:
		return "CLOSING"
	}
	return fmt.Sprintf("STATE-%d", st)
}

// ListenerCount is how many connections one endpoint has.
type ListenerCount struct {
	Endpoint Endpoint
	Conns    int
}

// PerEndpoint counts the connections on each remembered endpoint, for
// a look at a serving server: the sockets in the counted states that a
// process holds (a connection still in the backlog has no inode), by the
// endpoint they came in on. Unix endpoints are counted as in Count. It
// costs what Count costs.
func (t *Tracker) PerEndpoint(ctx context.Context) ([]ListenerCount, error) {
	if t.badOpts != nil {
		return nil, t.badOpts
	}
	out := make([]ListenerCount, len(t.endpoints))
	for i, e := range t.endpoints {
		out[i].Endpoint = e
	}
	fams := map[uint8]bool{}
	for _, e := range t.endpoints {
		if e.Network != "unix" {
			fams[e.family()] = true
		}
	}
	for _, fam := range []uint8{afInet, afInet6} {
		if !fams[fam] {
			continue
		}
		tally := func(a netip.Addr, p uint16, st uint8, owned bool) {
			if !owned || (countStates&(1<<st) == 0) || st == tcpSynRecv {
				return
			}
			for i, e := range t.endpoints {
				if e.family() == fam && e.matches(a, p) {
					out[i].Conns++
					return
				}
			}
		}
		t.tcpPass.begin()
		err := errFellBack
		for errors.Is(err, errFellBack) {
			// Again from the start when netlink failed (see each).
			for i := range out {
				if out[i].Endpoint.Network != "unix" && out[i].Endpoint.family() == fam {
					out[i].Conns = 0
				}
			}
			err = t.each(ctx, fam, countStates, nil,
				func(msg []byte) {
					a, p := msgLocal(msg)
					tally(a, p, msg[msgState], msgInodeOf(msg) != 0)
				},
				func(e *procEntry) { tally(e.addr, e.port, e.state, e.inode != 0) })
		}
		if err != nil {
			return nil, fmt.Errorf("cannot count connections per listener: %w", err)
		}
	}
	if paths := t.unixPaths(); paths != nil {
		per := map[string]int{}
		t.unixPass.begin()
		each := func(e *unixEntry) {
			if len(e.name) > 0 && paths[string(e.name)] {
				per[string(e.name)]++
			}
		}
		err := t.eachUnix(ctx, false, each)
		for errors.Is(err, errFellBack) {
			clear(per)
			err = t.eachUnix(ctx, false, each)
		}
		if err != nil {
			return nil, fmt.Errorf("cannot count unix connections per listener: %w", err)
		}
		for i, e := range t.endpoints {
			if e.Network == "unix" {
				out[i].Conns = per[e.Path]
			}
		}
	}
	return out, nil
}

// Prune returns det without the connections the drain no longer waits
// for, and with the drain's counts of now: between two looks, the
// connections named stay true as they close. The times and byte counts
// are still those of det.At.
func (d *Drain) Prune(det Details) Details {
	out := det
	out.Conns = make([]Conn, 0, len(det.Conns))
	for _, c := range det.Conns {
		if _, ok := d.set[c.Inode]; ok {
			out.Conns = append(out.Conns, c)
		}
	}
	out.TCP, out.Unix = len(d.set), len(d.unixSet)
	return out
}
