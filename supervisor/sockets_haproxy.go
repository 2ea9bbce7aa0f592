package supervisor

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/graceshim/graceshim/unitgen/haproxyconf"
)

// HAProxy takes an inherited socket only where its config says "bind
// fd@N" (https://docs.haproxy.org/2.6/configuration.html#11, "fd@<n>":
// "use file descriptor <n> inherited from the parent. The fd must be bound
// and may or may not already be listening"); it reads no LISTEN_FDS.
// graceshim cannot rewrite the config, so it checks it: every inherited
// socket must be bound by number, every fd@N must be one graceshim has,
// and no other bind may take an inherited socket's address.

// checkHAProxy reads the config files haproxy's argv names (-f, files or
// directories of *.cfg, and the words after "--") and checks them against
// the inherited sockets, which keep their numbers 3, 4, ...
func checkHAProxy(socks []inherited, opts Options) error {
	if err := notSockets(socks); err != nil {
		return err
	}
	files := haproxyConfigFiles(opts.Argv)
	if len(files) == 0 {
		return fmt.Errorf("%w: %s names no config file (-f): cannot check that it binds the inherited sockets (bind fd@3 ...)", ErrSockets, opts.Argv[0])
	}
	var text strings.Builder
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("%w: cannot read haproxy's config %s: %v", ErrSockets, f, err)
		}
		text.Write(b)
		text.WriteByte('\n')
	}
	errs, warns := matchHAProxy(socks, haproxyBinds(text.String(), haproxyconf.Env(opts.Argv, childEnv(opts.Env)), haproxyconf.CC(opts.Argv[0])))
	for _, w := range warns {
		opts.Log.Warnf("%s", w)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %s (config %s)", ErrSockets, strings.Join(errs, "; "), strings.Join(files, ", "))
	}
	return nil
}

// haproxyConfigFiles lists the config files of haproxy's argv in the
// order haproxy reads them: haproxyconf.Files, the reader `graceshim unit
// --socket` uses too (-f, "--", -C, directories of *.cfg).
func haproxyConfigFiles(argv []string) []string {
	files, _ := haproxyconf.Files("", argv)
	return files
}

// haproxyBind is one address of a bind line.
type haproxyBind struct {
	text string // as written
	fd   int    // N of fd@N, else -1
	addr sockAddr
	ok   bool // addr was understood (an IP address and port)
}

// haproxyBinds reads the addresses of every bind line ("bind
// ADDR[,ADDR...] [params]") of the lines haproxy reads (haproxyconf.Lines,
// with env, the environment haproxy gets). Each address is then expanded
// once more (haproxyconf.Expand), as haproxy does to every address it
// parses, quoted or not.
func haproxyBinds(text string, env []string, ask haproxyconf.Ask) []haproxyBind {
	var out []haproxyBind
	for _, l := range haproxyconf.Lines(text, env, ask) {
		f := l.Words
		if len(f) < 2 || f[0] != "bind" {
			continue
		}
		// Split at the commas before the expansion, as haproxy does
		// (src/listener.c, str2listener).
		for _, a := range strings.Split(f[1], ",") {
			a = haproxyconf.Expand(a, l.Env)
			b := haproxyBind{text: a, fd: -1}
			if n, ok := strings.CutPrefix(a, "fd@"); ok {
				if fd, err := strconv.Atoi(n); err == nil {
					b.fd = fd
				}
				out = append(out, b)
				continue
			}
			b.addr, b.ok = haproxyAddr(a)
			out = append(out, b)
		}
	}
	return out
}

// haproxyAddr reads "[ipv4@|ipv6@]ADDR:PORT" with an empty or "*" address
// for the wildcard; unix sockets and port ranges are left alone.
func haproxyAddr(a string) (sockAddr, bool) {
	v6 := strings.HasPrefix(a, "ipv6@")
	a = strings.TrimPrefix(strings.TrimPrefix(a, "ipv4@"), "ipv6@")
	i := strings.LastIndexByte(a, ':')
	if i < 0 || strings.Contains(a, "@") || strings.HasPrefix(a, "/") {
		return sockAddr{}, false
	}
	port, err := strconv.ParseUint(a[i+1:], 10, 16)
	if err != nil {
		return sockAddr{}, false
	}
	host := strings.Trim(a[:i], "[]")
	var ip netip.Addr
	switch host {
	case "", "*":
		ip = netip.IPv4Unspecified()
		if v6 {
			ip = netip.IPv6Unspecified()
		}
	default:
		if ip, err = netip.ParseAddr(host); err != nil {
			return sockAddr{}, false
		}
	}
	return sockAddr{stream: true, ap: netip.AddrPortFrom(ip, uint16(port))}, true
}

// matchHAProxy checks the binds against the inherited sockets, which are
// fds 3, 4, ... in haproxy.
func matchHAProxy(socks []inherited, binds []haproxyBind) (errs, warns []string) {
	named := map[int]bool{}
	for _, b := range binds {
		if b.fd < 0 {
			continue
		}
		named[b.fd] = true
		if b.fd < 3 || b.fd >= 3+len(socks) {
			errs = append(errs, fmt.Sprintf("haproxy's config binds %s, which is none of the %d inherited sockets (fd@3 to fd@%d)", b.text, len(socks), 2+len(socks)))
		}
	}
	for i, s := range socks {
		if !named[3+i] {
			errs = append(errs, fmt.Sprintf("the inherited socket %s (fd %d) is bound nowhere in haproxy's config: add \"bind fd@%d\" where it should be served, or clients wait on it for nothing", s.addr, 3+i, 3+i))
		}
	}
	for _, b := range binds {
		if b.fd >= 0 || !b.ok {
			continue
		}
		conflict := false
		for i, s := range socks {
			if s.addr.conflicts(b.addr) {
				errs = append(errs, fmt.Sprintf("haproxy's \"bind %s\" takes the address of the inherited socket %s: bind fd@%d instead", b.text, s.addr, 3+i))
				conflict = true
				break
			}
		}
		if !conflict {
			warns = append(warns, fmt.Sprintf("haproxy's \"bind %s\" is not among the inherited sockets: haproxy binds it itself, and it refuses connections while haproxy restarts", b.text))
		}
	}
	return errs, warns
}
