package conns

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
)

// Backend names, as Options.Source takes them and Tracker.Source reports.
const (
	SourceNetlink = "netlink"
	SourceProc    = "proc"
)

// Options configures a Tracker. The zero value counts inbound connections
// on the listening endpoints, over sock_diag with /proc/net as fallback.
type Options struct {
	Mode Mode
	// Source forces a backend, for tests: "" (automatic: netlink, falling
	// back to /proc/net when netlink is refused), "netlink" or "proc".
	Source string
}

// Tracker remembers a server tree's listening endpoints and counts the
// live connections on them.
//
// A Tracker is meant to be used from one goroutine (the supervisor's drain
// loop): its methods share reused buffers and must not be called
// concurrently. It starts no goroutines and holds no descriptors between
// calls, so it needs no Close.
type Tracker struct {
	mode     Mode
	source   string // backend in use
	forced   bool   // Options.Source was set: never fall back
	fallback error  // why an automatic Tracker left netlink
	// unixFallback is why unix sockets are read from /proc/net/unix
	// while TCP still goes through netlink (unix_diag may be missing
	// where inet_diag is not).
	unixFallback error
	badOpts      error // invalid Options, returned by every call
	// tcp and unix are the backend choices of the count under way when
	// netlink fails without refusing (see each).
	tcpPass, unixPass pass

	endpoints []Endpoint
	// listenOwned places each listener inode of the last descriptor
	// reading: the tree's (true) or another process's; scannedPids are
	// the pids read then.
	listenOwned map[uint64]bool
	scannedPids []int
	scans       int              // descriptor readings by Observe, for tests
	seen        map[Endpoint]int // the Observe that last saw each endpoint's listener
	observes    int
	progs       map[uint8][]byte // per family: compiled filter; absent when stale, nil when none
	hooks       drainHooks

	diag  diag
	proc  procNet
	fds   fdScanner
	owned map[uint64]struct{} // socket inodes of the pids, reused
}

// NewTracker returns a Tracker with no endpoints. It does no I/O: the
// backend is tried on the first Observe or Count. An unknown Source makes
// every call fail rather than silently picking a backend.
func NewTracker(opts Options) *Tracker {
	t := &Tracker{
		mode:   opts.Mode,
		source: SourceNetlink,
		progs:  map[uint8][]byte{},
		owned:  map[uint64]struct{}{},
		seen:   map[Endpoint]int{},
	}
	switch opts.Source {
	case "":
	case SourceNetlink, SourceProc:
		t.source, t.forced = opts.Source, true
	default:
		t.badOpts = fmt.Errorf("unknown connection counting source %q (want \"netlink\" or \"proc\")", opts.Source)
	}
	if opts.Mode != ModeListen && opts.Mode != ModeAll {
		t.badOpts = fmt.Errorf("unknown connection mode %d", int(opts.Mode))
	}
	return t
}

// Source reports the backend in use, "netlink" or "proc", and, when an
// automatic Tracker fell back from netlink, the error that made it (so the
// supervisor can log it once). Before the first Observe or Count it names
// the backend that will be tried first.
func (t *Tracker) Source() (name string, fallbackReason error) {
	if t.fallback == nil && t.unixFallback != nil {
		return t.source, t.unixFallback
	}
	return t.source, t.fallback
}

// Endpoints returns a copy of the remembered listening endpoints, in the
// order they were learned.
func (t *Tracker) Endpoints() []Endpoint {
	return slices.Clone(t.endpoints)
}

// Observe finds the listening sockets (TCP and unix stream) held by pids and
// remembers their local endpoints, adding to what it already knows; it
// returns the endpoints newly learned. A listener belongs to the tree when
// its socket inode is one of the links in /proc/PID/fd of a pid. Pids that
// have exited are skipped.
//
// Endpoints outlive their listeners: nginx closes its listeners on QUIT,
// and the connections it still drains are found by the endpoint they
// came in on; a reload that moves a server to another port leaves old
// workers draining on the old one. But they are bounded: the endpoints
// listened on at the last Observe are all kept, and of those no longer
// listened on only the maxStaleEndpoints seen most recently. A server
// that opens short-lived listeners would otherwise grow the filter
// without end (inet_diag bytecode longer than 64 KiB, about 3,400
// endpoints, is refused). Call Observe once the server is up (and again
// after a reload or a binary upgrade). Listeners are few and cheap to
// list; reading the descriptors of every pid is not (about 4 us a
// descriptor: 0.2 s for a tree holding 50,000 connections), so that is
// done only when a listener appears that the last reading did not place
// (the tree's or another process's), or when pids changed. Learning again
// at the graceful signal then costs two small dumps.
//
// Unix stream listeners (a path, or "@name" for an abstract socket) are
// endpoints too, of Network "unix"; see unix.go for how their connections
// are found.
func (t *Tracker) Observe(pids []int) ([]Endpoint, error) {
	if t.badOpts != nil {
		return nil, t.badOpts
	}
	ls, err := t.listeners()
	if err != nil {
		return nil, err
	}
	scan := !slices.Equal(pids, t.scannedPids)
	for _, l := range ls {
		if _, ok := t.listenOwned[l.inode]; !ok {
			scan = true
			break
		}
	}
	if scan {
		if err := t.ownedSockets(pids); err != nil {
			return nil, err
		}
		t.scans++
		t.scannedPids = slices.Clone(pids)
		t.listenOwned = map[uint64]bool{}
		for _, l := range ls {
			_, owned := t.owned[l.inode]
			t.listenOwned[l.inode] = owned
		}
	}
	var found []Endpoint
	t.observes++
	for _, l := range ls {
		if !t.listenOwned[l.inode] {
			continue
		}
		t.seen[l.ep] = t.observes
		if slices.Contains(t.endpoints, l.ep) || slices.Contains(found, l.ep) {
			continue // SO_REUSEPORT workers each hold a socket on one endpoint
		}
		found = append(found, l.ep)
	}
	for _, e := range found {
		t.endpoints = append(t.endpoints, e)
		delete(t.progs, e.family())
	}
	t.forgetStale()
	t.release()
	return found, nil
}

// listener is a listening socket of the host.
type listener struct {
	ep    Endpoint
	inode uint64
}

// listeners lists the host's TCP and unix stream listening sockets.
func (t *Tracker) listeners() ([]listener, error) {
	var ls []listener
	add := func(network string, a netip.Addr, port uint16, inode uint64) {
		if inode != 0 {
			ls = append(ls, listener{Endpoint{Network: network, Addr: netip.AddrPortFrom(a.WithZone(""), port)}, inode})
		}
	}
	ctx := context.Background()
	fams := []uint8{afInet, afInet6}
	t.tcpPass.begin()
	for i := 0; i < len(fams); i++ {
		fam := fams[i]
		network := "tcp4"
		if fam == afInet6 {
			network = "tcp6"
		}
		err := t.each(ctx, fam, listenStates, nil,
			func(msg []byte) {
				a, p := msgLocal(msg)
				add(network, a, p, msgInodeOf(msg))
			},
			func(e *procEntry) {
				if e.state == tcpListen {
					add(network, e.addr, e.port, e.inode)
				}
			})
		if errors.Is(err, errFellBack) {
			ls, i = nil, -1 // again from the start (see each)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("cannot list listening sockets: %w", err)
		}
	}
	n := len(ls)
	unixListeners := func(e *unixEntry) {
		if len(e.name) > 0 && e.inode != 0 {
			ls = append(ls, listener{Endpoint{Network: "unix", Path: string(e.name)}, e.inode})
		}
	}
	t.unixPass.begin()
	err := t.eachUnix(ctx, true, unixListeners)
	for errors.Is(err, errFellBack) {
		ls = ls[:n]
		err = t.eachUnix(ctx, true, unixListeners)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot list unix listening sockets: %w", err)
	}
	return ls, nil
}

// maxStaleEndpoints bounds the endpoints kept after their listener is
// gone; maxBytecodeEndpoints bounds those matched in the kernel. Beyond
// it (a server with a thousand live listeners) a family is dumped whole
// and matched here: slower, but never refused.
const (
	maxStaleEndpoints    = 64
	maxBytecodeEndpoints = 1000
)

// forgetStale drops the endpoints whose listener was last seen longest
// ago, beyond maxStaleEndpoints of them.
func (t *Tracker) forgetStale() {
	var stale []Endpoint
	for _, e := range t.endpoints {
		if t.seen[e] != t.observes {
			stale = append(stale, e)
		}
	}
	if len(stale) <= maxStaleEndpoints {
		return
	}
	slices.SortStableFunc(stale, func(a, b Endpoint) int { return t.seen[a] - t.seen[b] })
	for _, e := range stale[:len(stale)-maxStaleEndpoints] {
		delete(t.seen, e)
		delete(t.progs, e.family())
	}
	t.endpoints = slices.DeleteFunc(t.endpoints, func(e Endpoint) bool {
		_, ok := t.seen[e]
		return !ok
	})
}

// release drops the read buffers between the rare calls made while the
// server runs, so an idle graceshim keeps none of them.
func (t *Tracker) release() {
	t.diag.rbuf, t.proc.buf, t.proc.seen, t.fds.dent, t.fds.link = nil, nil, nil, nil, nil
	t.owned = map[uint64]struct{}{}
}

// matchEndpoint reports whether a socket of family fam with local
// address a and port p is on a remembered endpoint.
func (t *Tracker) matchEndpoint(fam uint8, a netip.Addr, p uint16) bool {
	for _, ep := range t.endpoints {
		if ep.family() == fam && ep.matches(a, p) {
			return true
		}
	}
	return false
}

// onEndpoint is matchEndpoint for an inet_diag_msg.
func (t *Tracker) onEndpoint(fam uint8, msg []byte) bool {
	a, p := msgLocal(msg)
	return t.matchEndpoint(fam, a, p)
}

// Count returns the live connections of the tree.
//
// In ModeListen (pids unused) these are the sockets in the counted states
// whose local address and port are a remembered endpoint: inbound
// connections only, not the server's own outbound ones. Over netlink the
// match runs in the kernel as inet_diag bytecode and only the families the
// endpoints use are dumped. Connections on unix endpoints count as
// Established. With no endpoints the count is zero. Count does not look
// at who holds the sockets; Drain does.
//
// In ModeAll they are the TCP sockets, in any state but LISTEN, TIME_WAIT
// and CLOSE, whose inode is held by one of pids (read from /proc/PID/fd on
// every call).
//
// See Counts for which states count and why.
func (t *Tracker) Count(ctx context.Context, pids []int) (Counts, error) {
	var c Counts
	if t.badOpts != nil {
		return c, t.badOpts
	}
	if err := ctx.Err(); err != nil {
		return c, err
	}
	if t.mode == ModeAll {
		return t.countAll(ctx, pids)
	}
	fams := []uint8{afInet, afInet6}
	t.tcpPass.begin()
	for i := 0; i < len(fams); i++ {
		fam := fams[i]
		n := 0
		for _, e := range t.endpoints {
			if e.family() == fam {
				n++
			}
		}
		if n == 0 {
			continue // no listener of this family: do not dump it
		}
		prog, ok := t.progs[fam]
		if !ok && n <= maxBytecodeEndpoints {
			var eps []Endpoint
			for _, e := range t.endpoints {
				if e.family() == fam {
					eps = append(eps, e)
				}
			}
			prog = appendBytecode(nil, eps)
			t.progs[fam] = prog
		}
		err := t.each(ctx, fam, countStates, prog,
			func(msg []byte) {
				if prog == nil && !t.onEndpoint(fam, msg) {
					return
				}
				c.add(msg[msgState], msgInodeOf(msg) != 0)
			},
			func(e *procEntry) {
				if countStates&(1<<e.state) == 0 && e.state != tcpNewSynRecv {
					return
				}
				if t.matchEndpoint(fam, e.addr, e.port) {
					c.add(e.state, e.inode != 0)
				}
			})
		if errors.Is(err, errFellBack) {
			c, i = Counts{}, -1 // again from the start (see each)
			continue
		}
		if err != nil {
			return Counts{}, fmt.Errorf("cannot count connections: %w", err)
		}
	}
	n, err := t.countUnix(ctx, nil)
	if err != nil {
		return Counts{}, err
	}
	c.Established += n
	return c, nil
}

// unixPaths returns the remembered unix endpoints' names, nil when there
// are none.
func (t *Tracker) unixPaths() map[string]bool {
	var m map[string]bool
	for _, e := range t.endpoints {
		if e.Network == "unix" {
			if m == nil {
				m = map[string]bool{}
			}
			m[e.Path] = true
		}
	}
	return m
}

// countUnix counts the connections on the unix endpoints: the
// non-listening stream sockets named like one (see unix.go). When into
// is not nil, their inodes are added to it.
func (t *Tracker) countUnix(ctx context.Context, into map[uint64]struct{}) (int, error) {
	paths := t.unixPaths()
	if paths == nil {
		return 0, nil
	}
	n := 0
	each := func(e *unixEntry) {
		if len(e.name) > 0 && paths[string(e.name)] {
			n++
			if into != nil {
				into[e.inode] = struct{}{}
			}
		}
	}
	t.unixPass.begin()
	err := t.eachUnix(ctx, false, each)
	for errors.Is(err, errFellBack) {
		n = 0
		clear(into)
		err = t.eachUnix(ctx, false, each)
	}
	if err != nil {
		return 0, fmt.Errorf("cannot count unix connections: %w", err)
	}
	return n, nil
}

func (t *Tracker) countAll(ctx context.Context, pids []int) (Counts, error) {
	var c Counts
	if err := t.ownedSockets(pids); err != nil {
		return c, err
	}
	if len(t.owned) == 0 {
		return c, nil
	}
	fams := []uint8{afInet, afInet6}
	t.tcpPass.begin()
	for i := 0; i < len(fams); i++ {
		fam := fams[i]
		err := t.each(ctx, fam, allStates, nil,
			func(msg []byte) {
				if _, ok := t.owned[msgInodeOf(msg)]; ok {
					c.add(msg[msgState], true)
				}
			},
			func(e *procEntry) {
				if allStates&(1<<e.state) == 0 {
					return
				}
				if _, ok := t.owned[e.inode]; ok {
					c.add(e.state, true)
				}
			})
		if errors.Is(err, errFellBack) {
			c, i = Counts{}, -1 // again from the start (see each)
			continue
		}
		if err != nil {
			return Counts{}, fmt.Errorf("cannot count connections: %w", err)
		}
	}
	return c, nil
}

// ownedSockets fills t.owned with the socket inodes held by pids.
// listenersExclusive says whether a drain may take every connection a
// process holds on the endpoints for the tree's, without reading the
// tree's descriptors (about 3 us each: 130 ms of CPU for a tree holding
// 50,000 connections, most of a drain's cost). That holds when nothing
// but the tree can hold such a connection:
//   - no listener of another process on an endpoint's port, checked by a
//     dump of the listeners now (a few sockets): a connection on a local
//     port was accepted from a listener on it, and the tree's are those
//     the last Observe placed as its own (a SO_REUSEPORT neighbour, a new
//     instance taking over, is another's);
//   - no port in the ephemeral range, where an outgoing connection of any
//     process may take the port once the server's listener has closed
//     (the kernel does not give out a port a listener holds);
//   - only TCP endpoints: unix connections are placed by descriptors;
//   - ModeListen: ModeAll counts outgoing connections too.
//
// Connections in a listener's backlog have no inode and are left out
// either way. Any doubt, or a failure, takes the descriptors.
func (t *Tracker) listenersExclusive() bool {
	if t.mode != ModeListen || t.hooks.readFds || len(t.endpoints) == 0 || t.listenOwned == nil {
		return false
	}
	lo, hi, err := ephemeralPorts()
	if err != nil {
		return false
	}
	ports := map[uint16]bool{}
	for _, e := range t.endpoints {
		if e.Network == "unix" {
			return false
		}
		p := e.Addr.Port()
		if int(p) >= lo && int(p) <= hi {
			return false
		}
		ports[p] = true
	}
	ls, err := t.listeners()
	if err != nil {
		return false
	}
	for _, l := range ls {
		if l.ep.Network != "unix" && ports[l.ep.Addr.Port()] && !t.listenOwned[l.inode] {
			return false
		}
	}
	return true
}

// ephemeralPorts reads the range the kernel picks local ports of outgoing
// connections from (ip(7), ip_local_port_range; IPv6 shares it).
func ephemeralPorts() (lo, hi int, err error) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0, err
	}
	if _, err := fmt.Sscan(string(b), &lo, &hi); err != nil {
		return 0, 0, fmt.Errorf("ip_local_port_range %q: %w", b, err)
	}
	return lo, hi, nil
}

func (t *Tracker) ownedSockets(pids []int) error {
	clear(t.owned)
	for _, pid := range pids {
		if err := t.fds.sockets(pid, t.owned); err != nil {
			return fmt.Errorf("cannot list sockets of pid %d: %w", pid, err)
		}
	}
	return nil
}

// each runs one pass over the TCP sockets of a family with the backend in
// use: a sock_diag dump (states and bytecode applied in the kernel; nl
// sees each inet_diag_msg) or a scan of /proc/net/tcp{,6} (pr sees every
// line and filters itself).
//
// When the netlink request of an automatic Tracker fails, each returns
// errFellBack: a dump cut short has visited some sockets already, so the
// caller throws away what the pass saw and runs it again from its first
// family, and each decides how. A refusal (see refused) switches to
// /proc/net for good and records why. Any other failure (ENOBUFS, ENOMEM,
// EMFILE: passing) is tried once more over netlink, on a fresh socket as
// every dump is; if that fails too, the rest of this count goes through
// /proc/net, and the next one tries netlink again: a failed count during
// a drain would otherwise look like a drain that stalled, and one passing
// failure must not cost every later count /proc/net's price (six times
// netlink's) and later drains their destroy messages. The caller starts
// each count with t.tcpPass.begin().
func (t *Tracker) each(ctx context.Context, fam uint8, states uint32, bytecode []byte, nl func([]byte), pr func(*procEntry)) error {
	if t.source == SourceNetlink && !t.tcpPass.proc {
		err := t.diag.dump(ctx, fam, states, bytecode, nl)
		if err == nil || t.forced || ctx.Err() != nil {
			return err
		}
		if refused(err) {
			t.source, t.fallback = SourceProc, err
		} else {
			t.tcpPass.failed(err)
		}
		return errFellBack
	}
	return t.proc.scan(ctx, fam, pr)
}

// errFellBack tells a caller of each or eachUnix that the netlink pass
// failed: what the pass visited must be thrown away and the pass run
// again from the start, over netlink once more or through /proc/net.
var errFellBack = errors.New("netlink pass failed, run it again")

// pass is the backend choice of one count, for TCP or for unix sockets,
// when netlink fails without refusing.
type pass struct {
	retried bool  // netlink failed once in this count and is being tried again
	proc    bool  // it failed again: the rest of the count reads /proc/net
	err     error // the last failure, kept for Drain to report
}

// begin starts a count: netlink again, whatever the last count met.
func (p *pass) begin() { p.retried, p.proc = false, false }

// failed records a passing netlink failure: the first one of a count is
// retried, the second sends the count to /proc/net.
func (p *pass) failed(err error) {
	p.err = err
	if p.retried {
		p.proc = true
	}
	p.retried = true
}

// viaProc reports whether the count just made went (partly) through
// /proc/net, and why.
func (t *Tracker) viaProc() (bool, error) {
	if t.source != SourceNetlink {
		return true, t.fallback
	}
	if t.tcpPass.proc {
		return true, t.tcpPass.err
	}
	return false, nil
}
