package supervisor

import (
	"context"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/graceshim/graceshim/unitgen/nginxconf"
)

// nginx and inherited sockets, from its source (1.22, src/core/nginx.c
// and src/core/ngx_cycle.c) and measured with Debian 12's nginx 1.22.1:
//
//   - ngx_add_inherited_sockets reads NGINX="3;4;", getsockname()s each
//     fd, logs `using inherited sockets from "3;4;"` and, with the
//     variable set, nginx does not daemonize (ngx_inherited).
//   - ngx_init_cycle gives each listen directive the inherited socket of
//     the same address (ngx_cmp_sockaddr), binds the directives none
//     matches itself, and closes the inherited sockets no directive
//     matches. Measured: an inherited 127.0.0.1:18082 with "listen
//     127.0.0.1:18083" is closed and 18083 bound; a client on 18082 then
//     waits on the socket systemd still holds, for nothing.
//   - A directive whose address an inherited socket holds by a wildcard
//     (inherited 0.0.0.0:P, "listen 127.0.0.1:P") cannot be bound:
//     measured, "bind() to 127.0.0.1:18084 failed (98: Address already in
//     use)" five times over 2.5 s, then nginx exits 1.
//   - Within a port, a wildcard directive serves the other addresses of
//     the same family unless they have "bind" (ngx_http_init_listening;
//     https://nginx.org/en/docs/http/ngx_http_core_module.html#listen),
//     so only the wildcard is a socket.
//
// So an inherited socket no directive names, and a directive that
// conflicts with one, are errors; a directive no inherited socket serves
// is a warning: nginx binds it itself, and that port refuses connections
// across a restart.

// nginxListen is one listen directive, resolved.
type nginxListen struct {
	text  string     // as written, for messages
	addrs []sockAddr // what it resolves to
	bind  bool       // a socket of its own even beside a wildcard
}

// checkNginx compares nginx's listen directives (from nginx -T with the
// same -c, -p and -g) with the inherited sockets and returns those to
// pass: the ones a directive names. A socket graceshim stored itself that
// the config no longer names is dropped (and removed from the store); a
// socket of a .socket unit no directive names, or a directive that
// conflicts with one, is an ErrSockets.
func checkNginx(ctx context.Context, socks []inherited, opts Options) ([]inherited, error) {
	if err := notSockets(socks); err != nil {
		return nil, err
	}
	if !opts.Preset.Runs(opts.Argv[0]) || opts.Preset.ConfigTest == nil {
		opts.Log.Warnf("%s is not nginx itself: cannot check its listen directives against the inherited sockets", opts.Argv[0])
		return socks, nil
	}
	test := opts.Preset.ConfigTest(opts.Argv)
	args := make([]string, 0, len(test))
	for _, a := range test[1:] {
		if a == "-t" {
			a = "-T" // test and dump: every file read, includes too
		}
		args = append(args, a)
	}
	ctx, cancel := context.WithTimeout(ctx, socketCheckTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, test[0], args...)
	cmd.Env = withoutListenEnv(os.Environ())
	out, err := cmd.Output()
	if err != nil {
		// nginx says what is wrong with its config itself when it starts.
		opts.Log.Warnf("cannot check nginx's listen directives against the inherited sockets: %s %s: %v", test[0], strings.Join(args, " "), err)
		return socks, nil
	}
	listens, err := parseNginxListens(ctx, string(out), os.Geteuid() == 0)
	if err != nil {
		return nil, fmt.Errorf("%w: cannot read nginx's listen directives: %v", ErrSockets, err)
	}
	keep, drop, errs, warns := matchNginx(socks, listens, false)
	for _, w := range warns {
		opts.Log.Warnf("%s", w)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrSockets, strings.Join(errs, "; "))
	}
	for _, s := range drop {
		opts.Log.Infof("dropping the kept socket %s: nginx's config no longer listens there", s.addr)
		s.file.Close()
		removeStored(s.name, opts.Log)
	}
	return keep, nil
}

// matchNginx decides, for nginx's listen directives, which inherited
// sockets nginx uses (keep), which graceshim's own stored ones to drop,
// and what is wrong (errs) or worth a warning (warns). See the comment at
// the top of this file for nginx's rules. reload is set when nginx
// already holds the sockets: it binds a reload's new listens before it
// closes the old ones (src/core/ngx_cycle.c ngx_init_cycle opens the new
// cycle's sockets, then closes the old cycle's unmatched ones), so a
// dropped socket still conflicts; at a start graceshim closes the
// dropped ones first.
func matchNginx(socks []inherited, listens []nginxListen, reload bool) (keep, drop []inherited, errs, warns []string) {
	wants := nginxSockets(listens)
	used := make([]bool, len(socks))
	matched := make([]bool, len(wants))
	for j, w := range wants {
		for i, s := range socks {
			if s.addr.same(w.addr) {
				used[i], matched[j] = true, true
				break
			}
		}
	}
	for j, w := range wants {
		if matched[j] {
			continue
		}
		conflict := -1
		for i, s := range socks {
			// graceshim's own stored sockets that no directive names
			// are dropped below, before nginx binds: a directive that
			// moved within its port (listen 80 -> listen
			// 127.0.0.1:80) is bound beside nothing.
			if s.stored() && !used[i] && !reload {
				continue
			}
			if s.addr.conflicts(w.addr) {
				conflict = i
				break
			}
		}
		if conflict >= 0 {
			c := socks[conflict]
			fix := "make the two the same address"
			if c.addr.wildcard() && c.addr.ap.Addr().Is6() && !c.addr.v6only && w.addr.ap.Addr().Is4() {
				// A dual-stack socket ([::]:P, BindIPv6Only=both, or
				// systemd-socket-activate -l P) takes IPv4 too; nginx
				// listens IPv6-only (ipv6only=on), so its IPv4 listen
				// needs a socket of its own.
				p := c.addr.ap.Port()
				fix = fmt.Sprintf("the inherited socket takes IPv4 too (dual-stack); hold one socket per family: BindIPv6Only=ipv6-only with ListenStream=0.0.0.0:%d and ListenStream=[::]:%d in the socket unit (what `graceshim unit --socket` generates)", p, p)
			}
			errs = append(errs, fmt.Sprintf("nginx's %q cannot be bound beside the inherited socket %s (fd %d): %s", "listen "+w.text, c.addr, c.fd, fix))
			continue
		}
		warns = append(warns, fmt.Sprintf("nginx's %q is not among the inherited sockets: nginx binds it itself, and it refuses connections while nginx restarts", "listen "+w.text))
	}
	var texts []string
	for _, w := range wants {
		texts = append(texts, w.addr.String())
	}
	for i, s := range socks {
		switch {
		case used[i]:
			keep = append(keep, s)
		case s.stored():
			drop = append(drop, s)
		default:
			errs = append(errs, fmt.Sprintf("the inherited socket %s (fd %d) is on no listen directive of nginx's (it listens on %s): nginx would close it and clients would wait on it for nothing", s.addr, s.fd, strings.Join(texts, ", ")))
		}
	}
	return keep, drop, errs, warns
}

// wantedSocket is a socket nginx opens and the directive behind it.
type wantedSocket struct {
	addr sockAddr
	text string
}

// nginxSockets lists the sockets nginx opens for its listen directives:
// per family, port and type, a wildcard takes the place of the other
// addresses, except those with "bind".
func nginxSockets(listens []nginxListen) []wantedSocket {
	type group struct {
		v4, stream bool
		port       uint16
	}
	wild := map[group]bool{}
	for _, l := range listens {
		for _, a := range l.addrs {
			if a.wildcard() {
				wild[group{a.ap.Addr().Is4(), a.stream, a.ap.Port()}] = true
			}
		}
	}
	var out []wantedSocket
	for _, l := range listens {
		for _, a := range l.addrs {
			g := group{a.ap.Addr().Is4(), a.stream, a.ap.Port()}
			if a.unix == "" && !a.wildcard() && wild[g] && !l.bind {
				continue
			}
			if slices.ContainsFunc(out, func(w wantedSocket) bool { return w.addr.same(a) }) {
				continue
			}
			out = append(out, wantedSocket{addr: a, text: l.text})
		}
	}
	return out
}

// parseNginxListens reads the listen directives of nginx -T's output
// (every file nginx read, each after a "# configuration file NAME:"
// line), walking the files from the first (the main one) through their
// includes as nginx read them (nginxconf, the walker `graceshim unit
// --socket` uses on the files themselves): a listen in a snippet
// included inside a server block is that server's. An http server
// without one listens on *:80, or *:8000 when nginx does not run as
// root (ngx_http_core_module.html#listen).
func parseNginxListens(ctx context.Context, dump string, root bool) ([]nginxListen, error) {
	files := splitNginxDump(dump)
	if len(files) == 0 {
		return nil, nil
	}
	byName := map[string]string{}
	for _, f := range files {
		if _, ok := byName[f.name]; !ok {
			byName[f.name] = f.text
		}
	}
	src := nginxconf.Files{
		Read: func(path string) ([]byte, error) {
			text, ok := byName[path]
			if !ok {
				// nginx -T dumps every file it read: one it did not
				// dump, it did not read either.
				return nil, fs.ErrNotExist
			}
			return []byte(text), nil
		},
		Glob: func(pattern string) ([]string, error) {
			var out []string
			for name := range byName {
				if ok, err := filepath.Match(pattern, name); err != nil {
					return nil, err
				} else if ok {
					out = append(out, name)
				}
			}
			return out, nil
		},
		Prefix: filepath.Dir(files[0].name),
	}
	type server struct{ listens bool }
	var (
		args    [][]string
		servers []server
	)
	err := nginxconf.Walk(src, files[0].name, func(ev nginxconf.Event) error {
		n := len(ev.Stack)
		inServer := n > 0 && ev.Stack[n-1] == "server" && n >= 2 && slices.Contains([]string{"http", "stream", "mail"}, ev.Stack[n-2])
		switch ev.Kind {
		case nginxconf.Open:
			if ev.Words[0].S == "server" && n > 0 && slices.Contains([]string{"http", "stream", "mail"}, ev.Stack[n-1]) {
				servers = append(servers, server{})
			}
		case nginxconf.Close:
			if ev.Words[0].S == "server" && n > 0 && slices.Contains([]string{"http", "stream", "mail"}, ev.Stack[n-1]) {
				s := servers[len(servers)-1]
				servers = servers[:len(servers)-1]
				if !s.listens && ev.Stack[n-1] == "http" {
					port := "80"
					if !root {
						port = "8000"
					}
					args = append(args, []string{port})
				}
			}
		case nginxconf.Directive:
			if inServer && ev.Words[0].S == "listen" {
				if len(ev.Words) < 2 {
					return fmt.Errorf("%s:%d: listen without an address", ev.File, ev.Words[0].Line)
				}
				servers[len(servers)-1].listens = true
				words := make([]string, 0, len(ev.Words)-1)
				for _, w := range ev.Words[1:] {
					words = append(words, w.S)
				}
				args = append(args, words)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []nginxListen
	for _, a := range args {
		l, err := parseListen(ctx, a)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, nil
}

// nginxFile is one file of nginx -T's dump.
type nginxFile struct {
	name, text string
}

// splitNginxDump cuts nginx -T's output into its files. nginx writes
// "# configuration file NAME:" and a newline before each file's text,
// NAME being the file's full path (src/core/nginx.c, the config dump
// loop; names pass through ngx_conf_full_name), then the text as it is
// and a newline. A comment of the user's that begins the same way
// ("# configuration file for the API") is not a marker, as its rest is
// no absolute path ending in ':'. One that is exactly like a marker (a
// saved dump kept as a file) is told apart by the file on disk: where
// the file a marker names can be read and the dump holds its text
// whole, the file ends there, whatever its lines look like. Taken for a
// marker, such a line cut the file short: its listen directives were
// lost, or the rest failed to parse.
func splitNginxDump(dump string) []nginxFile {
	const mark = "# configuration file "
	var (
		files []nginxFile
		texts []*strings.Builder
		text  *strings.Builder
	)
	for pos := 0; pos < len(dump); {
		line := dump[pos:]
		if eol := strings.IndexByte(line, '\n'); eol >= 0 {
			line = line[:eol+1]
		}
		pos += len(line)
		if rest, ok := strings.CutPrefix(line, mark); ok {
			name := strings.TrimRight(rest, "\r\n")
			if strings.HasPrefix(name, "/") && strings.HasSuffix(name, ":") {
				name = strings.TrimSuffix(name, ":")
				files = append(files, nginxFile{name: name})
				text = &strings.Builder{}
				texts = append(texts, text)
				if b, err := os.ReadFile(name); err == nil && len(b) > 0 && strings.HasPrefix(dump[pos:], string(b)) {
					text.Write(b)
					pos += len(b)
				}
				continue
			}
		}
		if text == nil {
			// What comes before the first file is nginx's warnings (a
			// config test's stderr, read with its stdout).
			continue
		}
		text.WriteString(line)
	}
	if len(files) == 0 && strings.TrimSpace(dump) != "" {
		// No marker at all: the text of one file with no name.
		return []nginxFile{{text: dump}}
	}
	for i := range files {
		files[i].text = texts[i].String()
	}
	return files
}

// parseListen reads a listen directive's address and parameters
// (ngx_http_core_module.html#listen, src/core/ngx_inet.c ngx_parse_url):
// "unix:PATH", "[ADDR]:PORT", "ADDR:PORT", "PORT", "ADDR" (port 80),
// "*:PORT"; a host name listens on each of its addresses. "bind",
// "ipv6only=" and "reuseport" make a socket of its own.
func parseListen(ctx context.Context, args []string) (nginxListen, error) {
	l := nginxListen{text: strings.Join(args, " ")}
	stream, v6only := true, true
	for _, p := range args[1:] {
		switch {
		case p == "udp":
			stream = false
		case p == "ipv6only=off":
			v6only = false
			l.bind = true
		case p == "bind", p == "reuseport", strings.HasPrefix(p, "ipv6only="):
			l.bind = true
		}
	}
	addr := args[0]
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		l.addrs = []sockAddr{{stream: stream, unix: path}}
		return l, nil
	}
	host, port := "", "80"
	switch {
	case strings.HasPrefix(addr, "["):
		end := strings.IndexByte(addr, ']')
		if end < 0 {
			return l, fmt.Errorf("bad listen address %q", addr)
		}
		host = addr[1:end]
		if rest := addr[end+1:]; rest != "" {
			port = strings.TrimPrefix(rest, ":")
		}
	case strings.Contains(addr, ":"):
		host, port, _ = strings.Cut(addr, ":")
	case strings.Trim(addr, "0123456789") == "":
		port = addr
	default:
		host = addr
	}
	pn, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return l, fmt.Errorf("bad port in listen %q", addr)
	}
	var ips []netip.Addr
	switch host {
	case "", "*":
		ips = []netip.Addr{netip.IPv4Unspecified()}
	default:
		ip, err := netip.ParseAddr(host)
		if err == nil {
			ips = []netip.Addr{ip}
			break
		}
		found, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return l, fmt.Errorf("cannot resolve listen %q: %v", addr, err)
		}
		ips = found
	}
	for _, ip := range ips {
		// nginx listens with IPV6_V6ONLY on by default (ipv6only=on);
		// ipv6only=off makes an IPv6 wildcard take IPv4 too, so it
		// conflicts with an IPv4 wildcard of its port.
		l.addrs = append(l.addrs, sockAddr{stream: stream, ap: netip.AddrPortFrom(ip.Unmap(), uint16(pn)), v6only: ip.Is6() && v6only})
	}
	return l, nil
}
