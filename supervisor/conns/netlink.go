package conns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// sock_diag wire format, from include/uapi/linux/inet_diag.h and
// include/uapi/linux/netlink.h. Everything but ports and addresses is in
// host byte order.
const (
	afInet  = unix.AF_INET
	afInet6 = unix.AF_INET6

	nlmsgHdrLen    = 16
	nlmsgError     = 2
	nlmsgDone      = 3
	sockDiagByFam  = 20 // SOCK_DIAG_BY_FAMILY
	inetDiagReqLen = 56 // struct inet_diag_req_v2
	inetDiagMsgLen = 72 // struct inet_diag_msg
	nlattrHdrLen   = 4

	inetDiagReqBytecode = 1 // INET_DIAG_REQ_BYTECODE

	// inet_diag_bc_op codes.
	bcJmp   = 1 // INET_DIAG_BC_JMP
	bcSCond = 7 // INET_DIAG_BC_S_COND: local address/prefix and port

	bcOpLen       = 4 // struct inet_diag_bc_op {u8 code; u8 yes; u16 no}
	bcHostcondLen = 8 // struct inet_diag_hostcond {u8 family; u8 prefix_len; int port} before the address

	// The kernel fills a dump datagram up to about 32 KiB
	// (netlink_recvmsg caps max_recvmsg_len); a larger buffer never truncates.
	recvBufLen = 64 << 10
)

// Offsets in struct inet_diag_msg.
const (
	msgFamily = 0
	msgState  = 1
	msgSport  = 4  // big endian
	msgSrc    = 8  // 16 bytes, network order; IPv4 uses the first 4
	msgInode  = 68 // host order
)

// listenStates and the masks below are idiag_states bit sets (1 << state).
const (
	listenStates = 1 << tcpListen
	// countStates is what ModeListen asks the kernel for. SYN_RECV also
	// brings request sockets (TCP_NEW_SYN_RECV); HalfClosed states are
	// dumped and then kept only when owned.
	countStates = 1<<tcpEstablished | 1<<tcpCloseWait | 1<<tcpSynRecv |
		1<<tcpFinWait1 | 1<<tcpFinWait2 | 1<<tcpClosing | 1<<tcpLastAck
	// allStates is what ModeAll asks for: anything but LISTEN, TIME_WAIT
	// and CLOSE.
	allStates = countStates | 1<<tcpSynSent
)

// refusedErrnos are the answers that mean sock_diag is not available to
// us and will not be on the next try, as opposed to a passing failure
// (ENOBUFS, ENOMEM, EMFILE: retried). Any of them makes an automatic
// Tracker fall back to /proc/net for good. Where the kernel gives them:
// socket(2) of an unknown netlink protocol, EPROTONOSUPPORT, and no
// netlink at all, EAFNOSUPPORT (netlink_create, __sock_create); a family
// or protocol with no diag handler, ENOENT (__sock_diag_cmd in
// net/core/sock_diag.c, inet_diag_lock_handler in net/ipv4/inet_diag.c);
// a filter the kernel will not run, EINVAL (inet_diag_bc_audit), the
// same on every try; a sandbox's seccomp filter, EPERM, EACCES or ENOSYS
// (Docker's default profile answers EPERM); an LSM, EACCES.
var refusedErrnos = []unix.Errno{
	unix.EPERM, unix.EACCES, unix.EPROTONOSUPPORT, unix.EAFNOSUPPORT,
	unix.ESOCKTNOSUPPORT, unix.EOPNOTSUPP, unix.ENOENT, unix.EINVAL, unix.ENOSYS,
}

func refused(err error) bool {
	for _, e := range refusedErrnos {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// diag runs inet_diag dumps over NETLINK_SOCK_DIAG. It talks to the kernel
// with plain read and write on a raw socket: a count is one request and a
// stream of fixed-layout records, and reading them into one reused buffer
// keeps a 50k-socket poll at a handful of allocations.
type diag struct {
	open func() (int, error) // the socket; a seam so tests can refuse it
	req  []byte
	rbuf []byte
	seq  uint32
}

func openSockDiag() (int, error) {
	return unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
}

// dump asks the kernel for the TCP sockets of one address family whose
// state is in states and, if bytecode is not empty, that the bytecode
// accepts; visit sees each inet_diag_msg. The socket lives for one dump,
// so a Tracker holds no descriptor between polls and needs no Close.
func (d *diag) dump(ctx context.Context, family uint8, states uint32, bytecode []byte, visit func(msg []byte)) error {
	return d.dumpExt(ctx, family, 0, states, bytecode, visit)
}

// dumpExt is dump asking for the idiag_ext extensions ext (a bit set of
// 1 << (INET_DIAG_x - 1)), which the kernel appends to each record as
// attributes after the inet_diag_msg (see details.go).
func (d *diag) dumpExt(ctx context.Context, family, ext uint8, states uint32, bytecode []byte, visit func(msg []byte)) error {
	if d.open == nil {
		d.open = openSockDiag
	}
	fd, err := d.open()
	if err != nil {
		return fmt.Errorf("cannot open a NETLINK_SOCK_DIAG socket: %w", err)
	}
	defer unix.Close(fd)

	d.seq++
	n := nlmsgHdrLen + inetDiagReqLen
	if len(bytecode) > 0 {
		n += nlattrHdrLen + len(bytecode)
	}
	if n > 0xffff {
		return fmt.Errorf("inet_diag filter for %d bytes of bytecode is too long", len(bytecode))
	}
	req := d.req[:0]
	req = binary.NativeEndian.AppendUint32(req, uint32(n))
	req = binary.NativeEndian.AppendUint16(req, sockDiagByFam)
	req = binary.NativeEndian.AppendUint16(req, unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	req = binary.NativeEndian.AppendUint32(req, d.seq)
	req = binary.NativeEndian.AppendUint32(req, 0)
	// struct inet_diag_req_v2: family, protocol, ext, pad, states, and a
	// zero inet_diag_sockid (no exact-socket lookup).
	req = append(req, family, unix.IPPROTO_TCP, ext, 0)
	req = binary.NativeEndian.AppendUint32(req, states)
	req = append(req, make([]byte, 48)...)
	if len(bytecode) > 0 {
		req = binary.NativeEndian.AppendUint16(req, uint16(nlattrHdrLen+len(bytecode)))
		req = binary.NativeEndian.AppendUint16(req, inetDiagReqBytecode)
		req = append(req, bytecode...)
	}
	d.req = req

	return d.run(ctx, fd, "inet_diag", inetDiagMsgLen, visit)
}

// run sends the request in d.req on fd and reads the dump it answers,
// calling visit for each record of at least minLen bytes.
func (d *diag) run(ctx context.Context, fd int, what string, minLen int, visit func(msg []byte)) error {
	if _, err := unix.Write(fd, d.req); err != nil {
		return fmt.Errorf("cannot send %s dump request: %w", what, err)
	}
	if d.rbuf == nil {
		d.rbuf = make([]byte, recvBufLen)
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		m, err := unix.Read(fd, d.rbuf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("cannot read %s dump: %w", what, err)
		}
		b := d.rbuf[:m]
		for len(b) >= nlmsgHdrLen {
			l := int(binary.NativeEndian.Uint32(b[0:4]))
			typ := binary.NativeEndian.Uint16(b[4:6])
			seq := binary.NativeEndian.Uint32(b[8:12])
			if l < nlmsgHdrLen || l > len(b) {
				return fmt.Errorf("malformed netlink message in %s dump: length %d of %d bytes", what, l, len(b))
			}
			body := b[nlmsgHdrLen:l]
			b = b[min((l+3)&^3, len(b)):]
			if seq != d.seq {
				continue
			}
			switch typ {
			case nlmsgDone:
				// A dump's DONE carries the dump's own error code.
				if len(body) >= 4 {
					if e := int32(binary.NativeEndian.Uint32(body)); e < 0 {
						return fmt.Errorf("%s dump failed: %w", what, unix.Errno(-e))
					}
				}
				return nil
			case nlmsgError:
				if len(body) >= 4 {
					if e := int32(binary.NativeEndian.Uint32(body)); e < 0 {
						return fmt.Errorf("%s dump refused: %w", what, unix.Errno(-e))
					}
				}
			case sockDiagByFam:
				if len(body) >= minLen {
					visit(body)
				}
			}
		}
	}
}

// msgLocal returns the local address and port of an inet_diag_msg.
func msgLocal(msg []byte) (netip.Addr, uint16) {
	port := binary.BigEndian.Uint16(msg[msgSport:])
	if msg[msgFamily] == afInet {
		return netip.AddrFrom4([4]byte(msg[msgSrc : msgSrc+4])), port
	}
	return netip.AddrFrom16([16]byte(msg[msgSrc : msgSrc+16])), port
}

func msgInodeOf(msg []byte) uint64 {
	return uint64(binary.NativeEndian.Uint32(msg[msgInode:]))
}

// appendBytecode appends an inet_diag filter program accepting a socket
// whose local address and port match any of eps, which must all be of
// one family. It is the OR of one INET_DIAG_BC_S_COND per endpoint, laid
// out as ss(8) lays out "a or b":
//
//	cond1 (yes: next op, no: skip the JMP)  JMP (to the end: accept)
//	cond2 ...                                 JMP
//	condN (yes: the end, accept; no: 4 bytes past the end, reject)
//
// The kernel runs the ops in order; a program that lands exactly on its
// end accepts, one that jumps past it rejects (inet_diag_bc_run). A
// wildcard endpoint matches the port alone (family AF_UNSPEC, prefix 0);
// a bound one matches address and port, so another server on the same
// port at another address is not counted.
func appendBytecode(b []byte, eps []Endpoint) []byte {
	size := func(e Endpoint) int {
		n := bcOpLen + bcHostcondLen
		switch a := e.Addr.Addr(); {
		case a.IsUnspecified():
		case a.Is4():
			n += 4
		default:
			n += 16
		}
		return n
	}
	rest := 0 // bytes of program after the current op
	for i, e := range eps {
		if i > 0 {
			rest += bcOpLen
		}
		rest += size(e)
	}
	for i, e := range eps {
		n := size(e)
		rest -= n
		b = append(b, bcSCond, byte(n))
		b = binary.NativeEndian.AppendUint16(b, uint16(n+bcOpLen))
		a := e.Addr.Addr()
		switch {
		case a.IsUnspecified():
			b = append(b, unix.AF_UNSPEC, 0, 0, 0)
		case a.Is4():
			b = append(b, afInet, 32, 0, 0)
		default:
			b = append(b, afInet6, 128, 0, 0)
		}
		b = binary.NativeEndian.AppendUint32(b, uint32(int32(e.Addr.Port())))
		switch {
		case a.IsUnspecified():
		case a.Is4():
			a4 := a.As4()
			b = append(b, a4[:]...)
		default:
			a16 := a.As16()
			b = append(b, a16[:]...)
		}
		if i < len(eps)-1 {
			rest -= bcOpLen
			// JMP never takes yes; no jumps over the rest to the end.
			b = append(b, bcJmp, bcOpLen)
			b = binary.NativeEndian.AppendUint16(b, uint16(bcOpLen+rest))
		}
	}
	return b
}
