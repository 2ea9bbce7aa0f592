package conns

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// Unix stream sockets (php-fpm's pools listen on one by default:
// /run/php/php8.2-fpm.sock on Debian 12).
//
// A listener is a socket in state TCP_LISTEN with a name (a path, or an
// abstract name shown as "@name"). The sockets accept(2) returns carry no
// name of their own, but the kernel gives each one its listener's address
// (unix_stream_connect in net/unix/af_unix.c shares the listener's
// unix_address with the new socket), so sock_diag's UNIX_DIAG_NAME and
// /proc/net/unix show the listener's path on the server's end of every
// connection. The client's end has no name. So a server's connections on
// a unix endpoint are the non-listening stream sockets named like it;
// the drain keeps those the tree holds (by inode), which also leaves out
// connections still waiting in the backlog, as for TCP.
//
// There is no in-kernel filter for the unix family and no destroy message:
// a unix count is a dump of every unix socket on the host (cheap: a few
// thousand on a busy machine), and a drain polls them.

// unix_diag wire format, from include/uapi/linux/unix_diag.h.
const (
	afUnix = unix.AF_UNIX

	unixDiagReqLen = 24 // struct unix_diag_req
	unixDiagMsgLen = 16 // struct unix_diag_msg
	udiagShowName  = 0x1
	unixDiagName   = 0 // UNIX_DIAG_NAME attribute

	// Offsets in struct unix_diag_msg.
	umsgType  = 1
	umsgState = 2
	umsgInode = 4

	// /proc/net/unix flag of a listening socket (__SO_ACCEPTCON).
	soAcceptCon = 0x10000
)

// unixStream reports whether a socket type is connection-oriented.
func unixStream(typ uint8) bool {
	return typ == unix.SOCK_STREAM || typ == unix.SOCK_SEQPACKET
}

// unixEntry is one unix socket of a dump or of /proc/net/unix.
type unixEntry struct {
	inode  uint64
	listen bool
	name   []byte // "" unnamed; abstract names start with '@'; valid during the visit only
}

// dumpUnix lists the unix stream sockets; listening says whether the
// listeners or the others are wanted. visit sees each one.
func (d *diag) dumpUnix(ctx context.Context, listening bool, visit func(e *unixEntry)) error {
	if d.open == nil {
		d.open = openSockDiag
	}
	fd, err := d.open()
	if err != nil {
		return fmt.Errorf("cannot open a NETLINK_SOCK_DIAG socket: %w", err)
	}
	defer unix.Close(fd)

	states := uint32(1 << tcpListen)
	if !listening {
		states = ^states
	}
	d.seq++
	req := d.req[:0]
	req = binary.NativeEndian.AppendUint32(req, nlmsgHdrLen+unixDiagReqLen)
	req = binary.NativeEndian.AppendUint16(req, sockDiagByFam)
	req = binary.NativeEndian.AppendUint16(req, unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	req = binary.NativeEndian.AppendUint32(req, d.seq)
	req = binary.NativeEndian.AppendUint32(req, 0)
	// struct unix_diag_req: family, protocol, pad, states, ino, show, cookie.
	req = append(req, afUnix, 0, 0, 0)
	req = binary.NativeEndian.AppendUint32(req, states)
	req = binary.NativeEndian.AppendUint32(req, 0)
	req = binary.NativeEndian.AppendUint32(req, udiagShowName)
	req = append(req, make([]byte, 8)...)
	d.req = req

	var e unixEntry
	return d.run(ctx, fd, "unix_diag", unixDiagMsgLen, func(msg []byte) {
		if !unixStream(msg[umsgType]) {
			return
		}
		e = unixEntry{
			inode:  uint64(binary.NativeEndian.Uint32(msg[umsgInode:])),
			listen: msg[umsgState] == tcpListen,
		}
		// Attributes: struct nlattr {u16 len; u16 type}, 4-byte aligned.
		for a := msg[unixDiagMsgLen:]; len(a) >= nlattrHdrLen; {
			l := int(binary.NativeEndian.Uint16(a[0:2]))
			if l < nlattrHdrLen || l > len(a) {
				break
			}
			if binary.NativeEndian.Uint16(a[2:4]) == unixDiagName {
				e.name = unixName(a[nlattrHdrLen:l])
			}
			a = a[min((l+3)&^3, len(a)):]
		}
		visit(&e)
	})
}

// unixName turns a sun_path as the kernel reports it into the form
// /proc/net/unix and ss(8) print: abstract names with a leading '@'.
func unixName(b []byte) []byte {
	if len(b) > 0 && b[0] == 0 {
		return append([]byte{'@'}, b[1:]...)
	}
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return b
}

// scanUnix reads /proc/net/unix, the fallback when unix_diag is refused:
//
//	Num       RefCount Protocol Flags    Type St Inode Path
//	0000000000000000: 00000002 00000000 00010000 0001 01 12345 /run/php/php8.2-fpm.sock
//
// Flags has __SO_ACCEPTCON for a listener; abstract names start with '@'
// (unix_seq_show in net/unix/af_unix.c).
func (p *procNet) scanUnix(ctx context.Context, visit func(e *unixEntry)) error {
	const path = "/proc/net/unix"
	var e unixEntry
	return p.lines(ctx, path, func(line []byte) error {
		f := bytes.Fields(line)
		if len(f) < 7 {
			return fmt.Errorf("cannot parse %s line %q", path, line)
		}
		flags, ok1 := parseHex(f[3])
		typ, ok2 := parseHex(f[4])
		ino, ok3 := parseDec(f[6])
		if !ok1 || !ok2 || !ok3 {
			return fmt.Errorf("cannot parse %s line %q", path, line)
		}
		if !unixStream(uint8(typ)) {
			return nil
		}
		if _, dup := p.seen[ino]; dup {
			return nil
		}
		p.seen[ino] = struct{}{}
		e = unixEntry{inode: ino, listen: flags&soAcceptCon != 0}
		if len(f) > 7 {
			// A path may hold spaces: everything after the inode.
			e.name = line[bytes.Index(line, f[7]):]
		}
		visit(&e)
		return nil
	})
}

func parseDec(b []byte) (uint64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	return v, true
}

// eachUnix lists unix stream sockets with the Tracker's backend: netlink
// until it is refused once, /proc/net/unix from then on (the unix_diag
// module may be missing where inet_diag is not, so this is decided apart
// from the TCP backend). A failure that is no refusal is handled as each
// handles it, for the unix count under way (t.unixPass): tried once more,
// then /proc/net/unix for this count. listening chooses listeners or the
// rest; /proc/net/unix lists both and is filtered here.
func (t *Tracker) eachUnix(ctx context.Context, listening bool, visit func(e *unixEntry)) error {
	if t.source == SourceNetlink && t.unixFallback == nil && !t.unixPass.proc {
		err := t.diag.dumpUnix(ctx, listening, visit)
		if err == nil || t.forced || ctx.Err() != nil {
			return err
		}
		if refused(err) {
			t.unixFallback = err
		} else {
			t.unixPass.failed(err)
		}
		return errFellBack
	}
	return t.proc.scanUnix(ctx, func(e *unixEntry) {
		if e.listen == listening {
			visit(e)
		}
	})
}
