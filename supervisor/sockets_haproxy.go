package supervisor

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
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
	errs, warns := matchHAProxy(socks, haproxyBinds(text.String(), childEnv(opts.Env)))
	for _, w := range warns {
		opts.Log.Warnf("%s", w)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %s (config %s)", ErrSockets, strings.Join(errs, "; "), strings.Join(files, ", "))
	}
	return nil
}

// haproxyConfigFiles lists the config files of haproxy's argv in the
// order haproxy reads them (haproxy -h: "-f <cfgfile|cfgdir>"; a directory
// is read as its *.cfg files in name order, per the management guide).
func haproxyConfigFiles(argv []string) []string {
	var names []string
	for i := 1; i < len(argv); i++ {
		a := argv[i]
		switch {
		case a == "--":
			names = append(names, argv[i+1:]...)
			i = len(argv)
		case a == "-f" && i+1 < len(argv):
			names = append(names, argv[i+1])
			i++
		case strings.HasPrefix(a, "-f") && len(a) > 2:
			names = append(names, a[2:])
		}
	}
	var files []string
	for _, n := range names {
		if st, err := os.Stat(n); err == nil && st.IsDir() {
			m, _ := filepath.Glob(filepath.Join(n, "*.cfg"))
			slices.Sort(m)
			files = append(files, m...)
			continue
		}
		files = append(files, n)
	}
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
// ADDR[,ADDR...] [params]"), its words split, unquoted and expanded as
// haproxy does (haproxyWords) with env, the environment haproxy gets.
func haproxyBinds(text string, env []string) []haproxyBind {
	var out []haproxyBind
	for _, line := range strings.Split(text, "\n") {
		f := haproxyWords(line, env)
		if len(f) < 2 || f[0] != "bind" {
			continue
		}
		for _, a := range strings.Split(f[1], ",") {
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

// haproxyWords splits a config line into words as haproxy's parser does
// (configuration.txt, 2.2 "Quoting and escaping" and 2.3 "Environment
// variables"; src/tools.c parse_line): blanks separate words, '#' starts
// a comment, a backslash escapes the next character, single quotes keep
// their text as it is, double quotes allow escapes and expand "$NAME",
// "${NAME}" and "${NAME-default}" (the default only for a variable that
// is not set). The manual's own example of a passed socket is
// `bind "fd@${FD_APP1}"`. Unquoted variables are expanded too: haproxy
// 2.6 expands them in addresses (measured: `bind fd@${HFD}` with HFD=9
// fails with "cannot use file descriptor '9'").
func haproxyWords(line string, env []string) []string {
	lookup := func(name string) (string, bool) {
		for i := len(env) - 1; i >= 0; i-- {
			if v, ok := strings.CutPrefix(env[i], name+"="); ok {
				return v, true
			}
		}
		return "", false
	}
	var (
		words []string
		word  strings.Builder
		in    bool // a word is under way (it may be an empty quoted one)
		quote byte
	)
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quote == '\'':
			if c == '\'' {
				quote = 0
			} else {
				word.WriteByte(c)
			}
			continue
		case c == '\\' && i+1 < len(line):
			i++
			word.WriteByte(line[i])
			in = true
			continue
		case c == '"':
			quote = map[bool]byte{true: 0, false: '"'}[quote == '"']
			in = true
			continue
		case c == '\'' && quote == 0:
			quote = '\''
			in = true
			continue
		case c == '$' && i+1 < len(line):
			name, def, hasDef, n := haproxyVar(line[i+1:])
			if n == 0 {
				break
			}
			v, ok := lookup(name)
			if !ok && hasDef {
				v = def
			}
			word.WriteString(v)
			in = true
			i += n
			continue
		case quote == 0 && c == '#':
			i = len(line)
			continue
		case quote == 0 && (c == ' ' || c == '\t' || c == '\r'):
			if in {
				words = append(words, word.String())
				word.Reset()
				in = false
			}
			continue
		}
		word.WriteByte(c)
		in = true
	}
	if in {
		words = append(words, word.String())
	}
	return words
}

// haproxyVar reads the variable after a '$': "NAME", "{NAME}" or
// "{NAME-default}" ("{NAME[*]}" as NAME); n is how many bytes it took,
// 0 when none is there.
func haproxyVar(s string) (name, def string, hasDef bool, n int) {
	isName := func(c byte, first bool) bool {
		return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || !first && c >= '0' && c <= '9'
	}
	if strings.HasPrefix(s, "{") {
		end := strings.IndexByte(s, '}')
		if end < 0 {
			return "", "", false, 0
		}
		inner := strings.TrimSuffix(s[1:end], "[*]")
		name, def, hasDef = strings.Cut(inner, "-")
		return name, def, hasDef, end + 1
	}
	for n < len(s) && isName(s[n], n == 0) {
		n++
	}
	return s[:n], "", false, n
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
