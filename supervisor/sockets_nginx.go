package supervisor

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
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
	keep, drop, errs, warns := matchNginx(socks, listens)
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
// the top of this file for nginx's rules.
func matchNginx(socks []inherited, listens []nginxListen) (keep, drop []inherited, errs, warns []string) {
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
			if s.stored() && !used[i] {
				continue
			}
			if s.addr.conflicts(w.addr) {
				conflict = i
				break
			}
		}
		if conflict >= 0 {
			errs = append(errs, fmt.Sprintf("nginx's %q cannot be bound beside the inherited socket %s (fd %d): make the two the same address", "listen "+w.text, socks[conflict].addr, socks[conflict].fd))
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

// parseNginxListens reads the listen directives of nginx -T's output (every
// file nginx read, each after a "# configuration file NAME:" line). An
// http server without one listens on *:80, or *:8000 when nginx does not
// run as root (ngx_http_core_module.html#listen). A file other than the
// first is an include: its top-level server blocks are taken as http
// ones, where sites are included.
func parseNginxListens(ctx context.Context, dump string, root bool) ([]nginxListen, error) {
	var out []nginxListen
	for _, file := range splitNginxDump(dump) {
		stmts, err := nginxStatements(file)
		if err != nil {
			return nil, err
		}
		for _, st := range stmts {
			if st.block || len(st.words) == 0 {
				continue
			}
			server := -1
			for i, b := range st.ctx {
				if b == "server" {
					server = i
				}
			}
			if server < 0 || (server > 0 && st.ctx[server-1] != "http" && st.ctx[server-1] != "stream" && st.ctx[server-1] != "mail") || server != len(st.ctx)-1 {
				continue
			}
			if st.words[0] != "listen" || len(st.words) < 2 {
				continue
			}
			l, err := parseListen(ctx, st.words[1:])
			if err != nil {
				return nil, err
			}
			out = append(out, l)
		}
		// http servers without a listen directive.
		for _, st := range stmts {
			if !st.block || len(st.words) == 0 || st.words[0] != "server" || st.hasListen {
				continue
			}
			if n := len(st.ctx); n > 0 && st.ctx[n-1] != "http" || n == 0 && !st.included {
				continue
			}
			port := "80"
			if !root {
				port = "8000"
			}
			l, _ := parseListen(ctx, []string{port})
			out = append(out, l)
		}
	}
	return out, nil
}

// nginxFile is one file of nginx -T's dump.
type nginxFile struct {
	text     string
	included bool // not the first (main) file
}

func splitNginxDump(dump string) []nginxFile {
	const mark = "# configuration file "
	var files []nginxFile
	parts := strings.Split("\n"+dump, "\n"+mark)
	if len(parts) > 1 {
		// What comes before the first file is nginx's warnings (a
		// config test's stderr, read with its stdout).
		parts = parts[1:]
	}
	for _, part := range parts {
		if strings.TrimSpace(part) == "" {
			continue
		}
		// The rest of the marker line is the name.
		if i := strings.IndexByte(part, '\n'); i >= 0 {
			part = part[i+1:]
		} else {
			part = ""
		}
		files = append(files, nginxFile{text: part, included: len(files) > 0})
	}
	return files
}

// nginxStatement is a directive ("listen 80;") or a block's opening
// ("server {"), with the names of the blocks around it.
type nginxStatement struct {
	words     []string
	ctx       []string // enclosing blocks, outermost first
	block     bool
	hasListen bool // a server block with a listen directive in it
	included  bool
}

// nginxStatements tokenizes an nginx config file: words, quoted strings,
// "#" comments, ";" ends a directive, "{" and "}" a block
// (src/core/ngx_conf_file.c ngx_conf_read_token).
func nginxStatements(f nginxFile) ([]nginxStatement, error) {
	var (
		out     []nginxStatement
		words   []string
		ctx     []string
		blocks  []int // index in out of each open block
		word    strings.Builder
		inWord  bool
		s       = f.text
		flush   = func() { words = append(words, word.String()); word.Reset(); inWord = false }
		lineNum = 1
	)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\n':
			lineNum++
			if inWord {
				flush()
			}
		case c == '#' && !inWord:
			for i < len(s) && s[i] != '\n' {
				i++
			}
			lineNum++
		case c == '"' || c == '\'':
			j := i + 1
			for j < len(s) && s[j] != c {
				if s[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unterminated quote on line %d", lineNum)
			}
			word.WriteString(s[i+1 : j])
			inWord = true
			i = j
		case c == ' ' || c == '\t' || c == '\r':
			if inWord {
				flush()
			}
		case c == ';' || c == '{':
			if inWord {
				flush()
			}
			st := nginxStatement{words: words, ctx: slices.Clone(ctx), block: c == '{', included: f.included}
			out = append(out, st)
			if len(words) > 0 && words[0] == "listen" {
				for k := len(blocks) - 1; k >= 0; k-- {
					if b := &out[blocks[k]]; b.words[0] == "server" {
						b.hasListen = true
						break
					}
				}
			}
			if c == '{' {
				name := ""
				if len(words) > 0 {
					name = words[0]
				} else {
					return nil, fmt.Errorf("a block without a name on line %d", lineNum)
				}
				ctx = append(ctx, name)
				blocks = append(blocks, len(out)-1)
			}
			words = nil
		case c == '}':
			if inWord {
				flush()
			}
			if len(ctx) == 0 {
				return nil, fmt.Errorf("unexpected \"}\" on line %d", lineNum)
			}
			ctx = ctx[:len(ctx)-1]
			blocks = blocks[:len(blocks)-1]
			words = nil
		case c == '\\' && i+1 < len(s):
			i++
			word.WriteByte(s[i])
			inWord = true
		default:
			word.WriteByte(c)
			inWord = true
		}
	}
	return out, nil
}

// parseListen reads a listen directive's address and parameters
// (ngx_http_core_module.html#listen, src/core/ngx_inet.c ngx_parse_url):
// "unix:PATH", "[ADDR]:PORT", "ADDR:PORT", "PORT", "ADDR" (port 80),
// "*:PORT"; a host name listens on each of its addresses. "bind",
// "ipv6only=" and "reuseport" make a socket of its own.
func parseListen(ctx context.Context, args []string) (nginxListen, error) {
	l := nginxListen{text: strings.Join(args, " ")}
	stream := true
	for _, p := range args[1:] {
		switch {
		case p == "udp":
			stream = false
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
		// nginx listens with IPV6_V6ONLY on by default (ipv6only=on).
		l.addrs = append(l.addrs, sockAddr{stream: stream, ap: netip.AddrPortFrom(ip.Unmap(), uint16(pn)), v6only: ip.Is6()})
	}
	return l, nil
}
