package conns

import (
	"fmt"
	"net/netip"
)

// TCP states as the kernel numbers them (include/net/tcp_states.h). Both
// sock_diag and /proc/net/tcp report these numbers.
const (
	tcpEstablished = 1
	tcpSynSent     = 2
	tcpSynRecv     = 3
	tcpFinWait1    = 4
	tcpFinWait2    = 5
	tcpTimeWait    = 6
	tcpClose       = 7
	tcpCloseWait   = 8
	tcpLastAck     = 9
	tcpListen      = 10
	tcpClosing     = 11
	tcpNewSynRecv  = 12 // request sockets; sock_diag dumps them when SYN_RECV is asked for
)

// Counts is one poll's tally of live connections, by TCP state.
//
// A connection counts (is part of Total) while the server still holds work
// for it:
//   - Established: the normal case, a request in flight or a keep-alive
//     connection the server has not closed yet.
//   - CloseWait: the client has closed its side but the server has not
//     called close yet; the socket, and usually a request, is still the
//     server's.
//   - HalfClosed: FIN_WAIT1, FIN_WAIT2, CLOSING or LAST_ACK on a socket a
//     process still owns (it has an inode). That is a server that shut
//     down its writing side and keeps the descriptor open, as nginx's
//     lingering close does for up to lingering_time. The same states on an
//     orphaned socket (closed by the process, the kernel finishing the
//     handshake alone) are not counted: nothing is left for the server to do.
//   - SynSent: outbound connects in progress. Only ModeAll sees them.
//
// SynRecv is reported but is not part of Total: a half-open handshake has
// not been accepted, the server holds no work for it, and when the server
// closes its listener (nginx does on QUIT) the kernel drops it. Counting it
// would let a SYN flood, or a client that never finishes its handshake,
// hold a drain open.
//
// TIME_WAIT, CLOSE and LISTEN never count.
type Counts struct {
	Established int
	CloseWait   int
	HalfClosed  int
	SynSent     int
	SynRecv     int
}

// Total is the number of connections the server still holds: everything
// but SynRecv.
func (c Counts) Total() int {
	return c.Established + c.CloseWait + c.HalfClosed + c.SynSent
}

// add tallies one socket in state st; owned says whether a process still
// holds it (its inode is not 0).
func (c *Counts) add(st uint8, owned bool) { c.tally(st, owned, 1) }

// sub takes back one owned socket tallied in state st.
func (c *Counts) sub(st uint8) { c.tally(st, true, -1) }

func (c *Counts) tally(st uint8, owned bool, n int) {
	switch st {
	case tcpEstablished:
		c.Established += n
	case tcpCloseWait:
		c.CloseWait += n
	case tcpFinWait1, tcpFinWait2, tcpClosing, tcpLastAck:
		if owned {
			c.HalfClosed += n
		}
	case tcpSynSent:
		c.SynSent += n
	case tcpSynRecv, tcpNewSynRecv:
		c.SynRecv += n
	}
}

// Endpoint is a listening socket's local address.
type Endpoint struct {
	// Network is "tcp4", "tcp6" or "unix", the socket's address family. A
	// dual-stack "tcp6" listener on [::] also carries IPv4 clients, as
	// v4-mapped addresses in the IPv6 table.
	Network string
	// Addr is the bound address and port of a TCP listener; the address
	// is unspecified (0.0.0.0 or ::) for a wildcard bind.
	Addr netip.AddrPort
	// Path is the name of a unix stream listener: a path, or an abstract
	// name written "@name".
	Path string
}

func (e Endpoint) String() string {
	if e.Network == "unix" {
		return "unix " + e.Path
	}
	return fmt.Sprintf("%s %s", e.Network, e.Addr)
}

// matches reports whether a socket of e's family with local address a and
// port p belongs to e: same port, and same address unless e is a wildcard.
func (e Endpoint) matches(a netip.Addr, p uint16) bool {
	return e.Addr.Port() == p && (e.Addr.Addr().IsUnspecified() || e.Addr.Addr() == a)
}

func (e Endpoint) family() uint8 {
	switch e.Network {
	case "tcp6":
		return afInet6
	case "unix":
		return afUnix
	}
	return afInet
}
