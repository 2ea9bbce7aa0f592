package conns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sock_diag multicast groups, from include/uapi/linux/sock_diag.h (enum
// sknetlink_groups, Linux 4.10+). The kernel sends one SOCK_DIAG_BY_FAMILY
// message, an inet_diag_msg, on the group of the socket's family each time
// it frees a TCP socket (__sk_free calls sock_diag_broadcast_destroy when
// a listener is subscribed; net/core/sock.c). The message is sent from a
// workqueue (sock_diag_events, net/core/sock_diag.c), so on a loaded
// machine it can come some milliseconds after the socket went.
const (
	sknlgrpInetTCPDestroy  = 1
	sknlgrpInet6TCPDestroy = 3

	msgCookie = 44 // idiag_cookie: two host-order u32s in inet_diag_sockid
	// msgWqueue is idiag_wqueue: for a TCP socket, write_seq - snd_una,
	// the bytes (and FIN) sent or queued that the peer has not
	// acknowledged (tcp_diag_get_info, net/ipv4/tcp_diag.c). A destroy
	// message carries it as the socket was freed (inet_diag_handler_get_info,
	// net/ipv4/inet_diag.c): 0 after an orderly close, whoever closed
	// first (the FIN was acknowledged), and more than 0 when the socket
	// was reset or aborted with data the peer never got.
	msgWqueue = 60
)

// Timing of a drain.
const (
	// reconcileMin and reconcileCostMul space the full dumps of an
	// event-driven drain: at least reconcileMin apart, and at least
	// reconcileCostMul times what the last one took, so re-dumping costs at
	// most 1/reconcileCostMul of a core. Destroy messages do the counting;
	// a re-dump only catches what they cannot announce: a socket the server
	// closed first and the kernel keeps as an orphan (FIN_WAIT2 towards a
	// silent client) until tcp_fin_timeout.
	reconcileMin     = 5 * time.Second
	reconcileCostMul = 200
	// The polling fallback: the first poll soon after the start, then
	// backing off to pollMax, never spending more than 1/pollCostMul of
	// the time counting.
	pollFirst   = 20 * time.Millisecond
	pollMax     = 250 * time.Millisecond
	pollCostMul = 5
	// While more than batchAbove sockets are left, destroy messages that
	// come in a stream are read in batches, at most every batchEvery: a
	// wake-up per message cost about 15 us of CPU (measured), which at
	// 5,000 closes a second is 8% of a core. The window shrinks as the
	// set empties at the rate closes come (never more than half the time
	// the rest would take at that rate), and the last batchAbove are read
	// as they come (a thousand wake-ups: about 15 ms of CPU), so the
	// last close is seen at once. A close after a quiet spell is read at
	// once: the window only follows a read. A burst of more than
	// batchAbove in the middle of a stream may be seen up to a window
	// late.
	batchAbove = 1000
	batchEvery = 100 * time.Millisecond
	// eventRcvBuf is the receive buffer asked for the destroy subscription.
	// At 2,000 closes in one burst (and as many client ends on loopback)
	// the default 208 KiB overruns; an overrun costs one re-dump.
	eventRcvBuf = 4 << 20
	// maxFilterPorts bounds the classic BPF program that keeps other
	// ports' destroy messages out of the subscription (jump offsets are
	// one byte).
	maxFilterPorts = 200
)

// member is one socket a drain waits for.
type member struct {
	state  uint8
	cookie uint64 // 0 when learned from /proc/net, which has no cookies
}

// Drain follows the connections a drain waits for, from the moment it
// starts until the last one goes. The set is fixed at the start: the
// sockets the tree's processes hold then (by inode, from /proc/PID/fd),
// and in ModeListen only those on a remembered endpoint (the endpoint
// match runs in the kernel as bytecode). It only shrinks. Connections the
// server accepts after the start are not counted: the servers a graceful
// stop is for close their listeners on the graceful signal. Connections
// still in a listener's backlog belong to no process and do not count
// either: the kernel resets them when the listener closes, or the next
// process to accept them (a new instance sharing the socket) owns them.
//
// Where the kernel allows it, the count follows the kernel's destroy
// messages: Next returns as soon as a socket of the set is freed, without
// walking the socket table again. A full dump now and then reconciles
// (an orphaned socket, a message lost to an overrun). Where the
// subscription is refused it polls; Events says which.
//
// A Drain is used from one goroutine, like its Tracker, and must be
// closed.
type Drain struct {
	t      *Tracker
	fams   []uint8
	states uint32
	progs  map[uint8][]byte
	set    map[uint64]member // by inode
	byCook map[uint64]uint64 // cookie -> inode
	counts Counts
	// The unix connections, by inode; polled (see unix.go).
	unixSet      map[uint64]struct{}
	unixInterval time.Duration
	nextUnixPoll time.Time
	unixScratch  map[uint64]struct{}

	// The destroy subscription: a non-blocking netlink socket, -1 when
	// polling. It is deliberately not handed to Go's poller: in edge-
	// triggered epoll every message arriving while the drain waits out a
	// batch window would wake the runtime (measured: 0.3 s of CPU in
	// epoll_wait over a 50k-connection drain). The drain blocks in
	// poll(2) on it and on wakeFd, an eventfd that ctx's end writes.
	events int
	// wakeFd is written by the context.AfterFunc callback of wait, which
	// runs on a goroutine of its own and may still be running when wait
	// has returned and Close is called: wakeMu guards wakeFd, so that
	// the callback writes only to the eventfd while the Drain holds it,
	// never to a closed one or to whatever reused its number.
	wakeMu    sync.Mutex
	wakeFd    int
	eventsErr error // why not, when polling
	recv      *mmsgReader

	started       bool // Next has returned the first count
	lastRead      time.Time
	closeRate     float64 // closes per second seen between reads, smoothed
	lastDump      time.Time
	dumpCost      time.Duration
	interval      time.Duration // polling
	nextReconcile time.Time

	dumps    int // full dumps, the first included
	overruns int // ENOBUFS on the subscription
	cut      int // sockets of the set freed with data the peer never acknowledged
}

// drainHooks are seams for tests.
type drainHooks struct {
	rcvBuf    int                 // the subscription's receive buffer; 0: eventRcvBuf
	subscribe func() (int, error) // the subscription socket; nil: openDestroySocket
	reconcile time.Duration       // the least time between re-dumps; 0: reconcileMin
	wake      func()              // called first by the wake-up callback of wait
	woke      func()              // called last by it
}

// Drain starts following the connections of pids. It subscribes to the
// kernel's destroy messages first and dumps second, so that no socket
// freed between the two is missed. It returns an error only when the
// first count fails.
func (t *Tracker) Drain(ctx context.Context, pids []int) (*Drain, error) {
	if t.badOpts != nil {
		return nil, t.badOpts
	}
	d := &Drain{t: t, events: -1, wakeFd: -1, progs: map[uint8][]byte{}, set: map[uint64]member{}, byCook: map[uint64]uint64{},
		interval: pollFirst, unixSet: map[uint64]struct{}{}, unixInterval: pollFirst, unixScratch: map[uint64]struct{}{}}
	switch t.mode {
	case ModeAll:
		d.fams, d.states = []uint8{afInet, afInet6}, allStates
	default:
		d.states = countStates
		for _, fam := range []uint8{afInet, afInet6} {
			var eps []Endpoint
			for _, e := range t.endpoints {
				if e.family() == fam {
					eps = append(eps, e)
				}
			}
			if len(eps) == 0 {
				continue
			}
			d.fams = append(d.fams, fam)
			if len(eps) <= maxBytecodeEndpoints {
				d.progs[fam] = appendBytecode(nil, eps)
			}
		}
	}
	if len(d.fams) > 0 {
		d.subscribe()
	}
	if err := t.ownedSockets(pids); err != nil {
		d.Close()
		return nil, err
	}
	err := d.dump(ctx, true)
	if err == nil && t.mode == ModeListen {
		err = d.pollUnix(ctx, true)
	}
	t.owned = map[uint64]struct{}{} // up to one entry per descriptor of the tree: do not keep it
	if err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// Events reports whether the drain follows destroy messages and, when it
// polls instead, why.
func (d *Drain) Events() (bool, error) {
	return d.events >= 0, d.eventsErr
}

// Counts returns the current count. Unix connections are Established.
func (d *Drain) Counts() Counts {
	c := d.counts
	c.Established += len(d.unixSet)
	return c
}

// Cut is how many of the drain's connections the kernel freed with data
// their peer had not acknowledged: cut short (by the server's own
// shutdown timeout, a reset from either end), not finished. Only destroy
// messages tell: a polling drain, and a socket seen gone by a re-dump,
// count none.
func (d *Drain) Cut() int { return d.cut }

// Close ends the subscription.
func (d *Drain) Close() error {
	if d.events < 0 {
		return nil
	}
	err := unix.Close(d.events)
	d.wakeMu.Lock()
	unix.Close(d.wakeFd)
	d.wakeFd = -1
	d.wakeMu.Unlock()
	d.events = -1
	d.recv = nil
	return err
}

// Next returns the first count at once, then blocks until the count may
// have changed: a socket of the set was freed, or a reconciling dump or a
// poll ran. Once the count is zero it blocks until ctx is done: the set
// never grows.
func (d *Drain) Next(ctx context.Context) (Counts, error) {
	if !d.started {
		d.started = true
		return d.Counts(), nil
	}
	if len(d.set)+len(d.unixSet) == 0 {
		<-ctx.Done()
		return d.Counts(), ctx.Err()
	}
	before := len(d.set) + len(d.unixSet)
	for {
		// The next thing due: a TCP re-dump (or poll) while TCP sockets
		// are left, a unix poll while unix ones are.
		var due time.Time
		if len(d.set) > 0 {
			due = d.nextReconcile
		}
		if len(d.unixSet) > 0 && (due.IsZero() || d.nextUnixPoll.Before(due)) {
			due = d.nextUnixPoll
		}
		if d.events >= 0 && len(d.set) > 0 {
			if len(d.set) > batchAbove {
				window := batchEvery
				if d.closeRate > 0 {
					window = min(window, time.Duration(float64(len(d.set))/d.closeRate/2*float64(time.Second)))
				}
				if err := sleepUntil(ctx, earlier(d.lastRead.Add(window), due)); err != nil {
					return d.Counts(), err
				}
			}
			left := len(d.set)
			err := d.wait(ctx, due)
			now := time.Now()
			if dt := now.Sub(d.lastRead).Seconds(); !d.lastRead.IsZero() && dt > 0 {
				d.closeRate = (d.closeRate + float64(left-len(d.set))/dt) / 2
			}
			d.lastRead = now
			switch {
			case err == nil, errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() == nil:
			case errors.Is(err, unix.ENOBUFS):
				// Messages were dropped: a dump tells what they said.
				d.overruns++
				d.nextReconcile = time.Now()
			case ctx.Err() != nil:
				return d.Counts(), ctx.Err()
			default:
				d.eventsErr = fmt.Errorf("cannot read destroy messages: %w", err)
				d.Close()
				d.nextReconcile = time.Now()
			}
		} else if err := sleepUntil(ctx, due); err != nil {
			return d.Counts(), err
		}
		now := time.Now()
		dumped := false
		if len(d.set) > 0 && !now.Before(d.nextReconcile) {
			if err := d.dump(ctx, false); err != nil {
				return d.Counts(), err
			}
			dumped = true
		}
		if len(d.unixSet) > 0 && !now.Before(d.nextUnixPoll) {
			if err := d.pollUnix(ctx, false); err != nil {
				return d.Counts(), err
			}
		}
		if dumped || len(d.set)+len(d.unixSet) != before {
			return d.Counts(), nil
		}
	}
}

// pollUnix counts the unix connections: on the first call those the tree
// holds (t.owned), later those of the set still there.
func (d *Drain) pollUnix(ctx context.Context, first bool) error {
	start := time.Now()
	got := d.unixScratch
	clear(got)
	if _, err := d.t.countUnix(ctx, got); err != nil {
		return err
	}
	for ino := range got {
		if first {
			if _, ok := d.t.owned[ino]; ok {
				d.unixSet[ino] = struct{}{}
			}
		}
	}
	if !first {
		for ino := range d.unixSet {
			if _, ok := got[ino]; !ok {
				delete(d.unixSet, ino)
			}
		}
	}
	now := time.Now()
	d.nextUnixPoll = now.Add(d.unixInterval)
	d.unixInterval = max(min(d.unixInterval*2, pollMax), now.Sub(start)*pollCostMul)
	return nil
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-tm.C:
		return nil
	}
}

// wait reads destroy messages until at least one arrived, deadline
// passes (os.ErrDeadlineExceeded), or ctx is done.
func (d *Drain) wait(ctx context.Context, deadline time.Time) error {
	if got, err := d.readAll(); got || err != nil {
		return err
	}
	hooks := d.t.hooks
	stop := context.AfterFunc(ctx, func() {
		if hooks.woke != nil {
			defer hooks.woke()
		}
		if hooks.wake != nil {
			hooks.wake()
		}
		var one [8]byte
		binary.NativeEndian.PutUint64(one[:], 1) // eventfd(2) takes a u64
		d.wakeMu.Lock()
		defer d.wakeMu.Unlock()
		if d.wakeFd >= 0 {
			unix.Write(d.wakeFd, one[:])
		}
	})
	defer stop()
	fds := []unix.PollFd{{Fd: int32(d.events), Events: unix.POLLIN}, {Fd: int32(d.wakeFd), Events: unix.POLLIN}}
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return os.ErrDeadlineExceeded
		}
		ms := int((left + time.Millisecond - 1) / time.Millisecond)
		n, err := unix.Poll(fds, ms)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("cannot wait for destroy messages: %w", err)
		}
		if n == 0 {
			continue // the deadline, checked above
		}
		if fds[1].Revents != 0 {
			var b [8]byte
			unix.Read(d.wakeFd, b[:])
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if got, err := d.readAll(); got || err != nil {
			return err
		}
	}
}

// readAll reads every destroy message waiting, without blocking, and
// reports whether there was any.
func (d *Drain) readAll() (bool, error) {
	got := false
	for {
		n, err := d.recv.read(d.events)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return got, nil
		case err != nil:
			return got, err
		}
		got = true
		for i := 0; i < n; i++ {
			d.handle(d.recv.msg(i))
		}
	}
}

// handle removes the sockets a datagram of destroy messages names.
func (d *Drain) handle(b []byte) {
	for len(b) >= nlmsgHdrLen {
		l := int(binary.NativeEndian.Uint32(b[0:4]))
		typ := binary.NativeEndian.Uint16(b[4:6])
		if l < nlmsgHdrLen || l > len(b) {
			return
		}
		body := b[nlmsgHdrLen:l]
		b = b[min((l+3)&^3, len(b)):]
		if typ != sockDiagByFam || len(body) < inetDiagMsgLen {
			continue
		}
		ino, ok := d.byCook[msgCookieOf(body)]
		if !ok {
			continue // another socket: a client's end, another server
		}
		delete(d.byCook, msgCookieOf(body))
		if m, ok := d.set[ino]; ok {
			d.counts.sub(m.state)
			delete(d.set, ino)
			if binary.NativeEndian.Uint32(body[msgWqueue:]) > 0 {
				d.cut++
			}
		}
	}
}

func msgCookieOf(msg []byte) uint64 {
	return uint64(binary.NativeEndian.Uint32(msg[msgCookie:])) | uint64(binary.NativeEndian.Uint32(msg[msgCookie+4:]))<<32
}

// dump walks the sockets once. The first dump builds the set from the
// sockets the tree owns (t.owned); later ones keep the members still
// there, still owned, in a counted state, and refresh their states.
func (d *Drain) dump(ctx context.Context, first bool) error {
	start := time.Now()
	next := map[uint64]member{}
	var c Counts
	keep := func(st uint8, ino, cookie uint64) {
		if ino == 0 {
			return // orphaned: the server closed it
		}
		if first {
			if _, ok := d.t.owned[ino]; !ok {
				return
			}
		} else if _, ok := d.set[ino]; !ok {
			return
		}
		if _, dup := next[ino]; dup {
			return
		}
		next[ino] = member{state: st, cookie: cookie}
		c.add(st, true)
	}
	d.t.tcpPass.begin()
	for i := 0; i < len(d.fams); i++ {
		fam := d.fams[i]
		prog := d.progs[fam]
		err := d.t.each(ctx, fam, d.states, prog,
			func(msg []byte) {
				st := msg[msgState]
				if prog == nil && d.t.mode == ModeListen && !d.t.onEndpoint(fam, msg) {
					return
				}
				keep(st, msgInodeOf(msg), msgCookieOf(msg))
			},
			func(e *procEntry) {
				if d.states&(1<<e.state) == 0 {
					return
				}
				if d.t.mode == ModeListen && !d.t.matchEndpoint(fam, e.addr, e.port) {
					return
				}
				var cookie uint64
				if m, ok := d.set[e.inode]; ok {
					cookie = m.cookie // keep following it by events
				}
				keep(e.state, e.inode, cookie)
			})
		if errors.Is(err, errFellBack) {
			clear(next)
			c, i = Counts{}, -1 // again from the start (see Tracker.each)
			continue
		}
		if err != nil {
			return fmt.Errorf("cannot count connections: %w", err)
		}
	}
	if proc, why := d.t.viaProc(); first && proc && d.events >= 0 {
		// The set came from /proc/net, which has no socket cookies:
		// no destroy message can name a member, and the closes would
		// be seen only at the next re-dump, many seconds away. Poll.
		d.eventsErr = fmt.Errorf("the first count went through /proc/net (%w), which has no socket cookies to follow destroy messages by", why)
		d.Close()
	}
	d.set, d.counts = next, c
	clear(d.byCook)
	for ino, m := range next {
		if m.cookie != 0 {
			d.byCook[m.cookie] = ino
		}
	}
	d.dumps++
	d.lastDump = time.Now()
	d.dumpCost = d.lastDump.Sub(start)
	if d.events >= 0 {
		every := reconcileMin
		if d.t.hooks.reconcile > 0 {
			every = d.t.hooks.reconcile
		}
		d.nextReconcile = d.lastDump.Add(max(every, d.dumpCost*reconcileCostMul))
	} else {
		// Polling: soon after the start, then backing off.
		d.nextReconcile = d.lastDump.Add(d.interval)
		d.interval = max(min(d.interval*2, pollMax), d.dumpCost*pollCostMul)
	}
	return nil
}

// subscribe joins the destroy groups of the drain's families, or records
// why not. The socket is non-blocking and handed to Go's poller, so a
// drain waiting for messages holds no thread.
func (d *Drain) subscribe() {
	if d.t.source != SourceNetlink {
		d.eventsErr = fmt.Errorf("destroy messages need netlink, counting through %s", d.t.source)
		return
	}
	open := d.t.hooks.subscribe
	if open == nil {
		open = openDestroySocket
	}
	fd, err := open()
	if err != nil {
		d.eventsErr = fmt.Errorf("cannot open a NETLINK_SOCK_DIAG socket for destroy messages: %w", err)
		return
	}
	rcv := d.t.hooks.rcvBuf
	if rcv == 0 {
		rcv = eventRcvBuf
		// SO_RCVBUFFORCE passes net.core.rmem_max, with CAP_NET_ADMIN;
		// without it SO_RCVBUF is capped there.
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcv) != nil {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcv)
		}
	} else if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcv); err != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcv)
	}
	if prog := d.portFilter(); prog != nil {
		// Only a nicety: without it every TCP socket freed on the
		// machine wakes the drain, and is then ignored.
		_ = unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]})
	}
	// bind, not NETLINK_ADD_MEMBERSHIP: the kernel broadcasts with
	// portid 0 and skips sockets whose portid is that (do_one_broadcast,
	// net/netlink/af_netlink.c), and only bind gives the socket a portid
	// of its own. nl_groups is a bit mask: group g is bit g-1.
	var groups uint32
	for _, fam := range d.fams {
		if fam == afInet6 {
			groups |= 1 << (sknlgrpInet6TCPDestroy - 1)
		} else {
			groups |= 1 << (sknlgrpInetTCPDestroy - 1)
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: groups}); err != nil {
		unix.Close(fd)
		d.eventsErr = fmt.Errorf("cannot subscribe to TCP destroy messages: %w", err)
		return
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(fd)
		d.eventsErr = fmt.Errorf("cannot make an eventfd: %w", err)
		return
	}
	d.events, d.wakeFd = fd, wake
	d.recv = newMmsgReader()
}

func openDestroySocket() (int, error) {
	return unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_SOCK_DIAG)
}

// portFilter returns a classic BPF program that accepts a destroy message
// only when the socket's local port is one of the endpoints' ports, or
// nil in ModeAll (outbound connections have any local port) and when
// there are too many ports for one program. Each message comes in a
// datagram of its own (sock_diag_broadcast_destroy_work), so the port is
// at a fixed offset: the netlink header, then idiag_sport in network
// order, which BPF_H loads as the port number. Port 0 passes too: a socket
// that went on to TIME_WAIT has given its port to the timewait socket
// (inet_put_port) by the time it is freed, and is announced with port and
// addresses zero (seen here: the server's end of a connection it closed
// first). Its cookie still names it.
func (d *Drain) portFilter() []unix.SockFilter {
	if d.t.mode != ModeListen {
		return nil
	}
	ports := []uint16{0}
	for _, e := range d.t.endpoints {
		if p := e.Addr.Port(); !containsPort(ports, p) {
			ports = append(ports, p)
		}
	}
	if len(ports) > maxFilterPorts {
		return nil
	}
	prog := []unix.SockFilter{{Code: unix.BPF_LD | unix.BPF_H | unix.BPF_ABS, K: nlmsgHdrLen + msgSport}}
	for i, p := range ports {
		// Equal: jump to the accept after the remaining compares and the reject.
		prog = append(prog, unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: uint8(len(ports) - i), K: uint32(p)})
	}
	prog = append(prog,
		unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: 0},
		unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: 0xffff})
	return prog
}

func containsPort(ps []uint16, p uint16) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

// mmsgReader reads up to mmsgBatch datagrams with one recvmmsg(2). Each
// destroy message is a datagram of its own, so reading them one recv at
// a time costs a system call per closed connection.
type mmsgReader struct {
	buf  []byte
	iovs [mmsgBatch]unix.Iovec
	hdrs [mmsgBatch]mmsghdr
}

const (
	mmsgBatch = 64
	mmsgSlot  = 2048 // a destroy message is about 400 bytes with its attributes
)

// mmsghdr is struct mmsghdr (include/linux/socket.h).
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

func newMmsgReader() *mmsgReader {
	r := &mmsgReader{buf: make([]byte, mmsgBatch*mmsgSlot)}
	for i := range r.hdrs {
		r.iovs[i].Base = &r.buf[i*mmsgSlot]
		r.iovs[i].SetLen(mmsgSlot)
		r.hdrs[i].hdr.Iov = &r.iovs[i]
		r.hdrs[i].hdr.SetIovlen(1)
	}
	return r
}

// read returns how many datagrams arrived; it does not block.
func (r *mmsgReader) read(fd int) (int, error) {
	n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&r.hdrs[0])), mmsgBatch, unix.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// msg returns the i-th datagram of the last read.
func (r *mmsgReader) msg(i int) []byte {
	return r.buf[i*mmsgSlot : i*mmsgSlot+int(min(r.hdrs[i].n, mmsgSlot))]
}
