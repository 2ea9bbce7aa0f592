package supervisor

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
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
	errs, warns := matchHAProxy(socks, haproxyBinds(text.String(), haproxyEnv(opts.Argv, childEnv(opts.Env)), haproxyCC(opts.Argv[0])))
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
// "-C <dir>" ("changes to <dir> before loading files", wherever it is on
// the command line) is where relative names are.
func haproxyConfigFiles(argv []string) []string {
	var names []string
	dir := ""
	for i := 1; i < len(argv); i++ {
		a := argv[i]
		switch {
		case a == "--":
			names = append(names, argv[i+1:]...)
			i = len(argv)
		case a == "-f" && i+1 < len(argv):
			names = append(names, argv[i+1])
			i++
		case a == "-C" && i+1 < len(argv):
			dir = argv[i+1]
			i++
		case strings.HasPrefix(a, "-f") && len(a) > 2:
			names = append(names, a[2:])
		}
	}
	var files []string
	for _, n := range names {
		if dir != "" && !filepath.IsAbs(n) {
			n = filepath.Join(dir, n)
		}
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
// Each address is then expanded once more (haproxyEnvExpand), as haproxy
// does to every address it parses, quoted or not. As haproxy reads the
// file, the global section's setenv, presetenv, unsetenv and resetenv
// change the environment of the lines after them, and a line in a
// conditional block (.if, .elif, .else, .endif) whose condition is false
// is skipped (configuration.txt 3.1 "Process management and security"
// and 2.4 "Conditional blocks"): a config that binds fd@3 under
// `.if defined(FD)` and a port otherwise binds one of them, not both.
func haproxyBinds(text string, env []string, ask haproxyAsk) []haproxyBind {
	env = slices.Clone(env)
	var out []haproxyBind
	type block struct{ outer, taken bool }
	var blocks []block // the conditional blocks the line is in
	active := true
	for _, line := range strings.Split(text, "\n") {
		f, ok := haproxyWords(line, env)
		if !ok || len(f) == 0 {
			// A line haproxy cannot parse fails its own config test,
			// with a better message than graceshim's guess at it.
			continue
		}
		switch f[0] {
		case ".if":
			cond := active && haproxyCond(strings.Join(f[1:], " "), env, ask)
			blocks = append(blocks, block{outer: active, taken: cond})
			active = cond
			continue
		case ".elif", ".else", ".endif":
			if len(blocks) == 0 {
				continue
			}
			b := &blocks[len(blocks)-1]
			switch f[0] {
			case ".elif":
				active = b.outer && !b.taken && haproxyCond(strings.Join(f[1:], " "), env, ask)
				b.taken = b.taken || active
			case ".else":
				active = b.outer && !b.taken
				b.taken = true
			default:
				active = b.outer
				blocks = blocks[:len(blocks)-1]
			}
			continue
		}
		if !active {
			continue
		}
		switch f[0] {
		case "setenv", "presetenv":
			if len(f) < 3 {
				continue
			}
			if _, set := haproxyLookup(env, f[1]); f[0] == "setenv" || !set {
				env = append(env, f[1]+"="+f[2])
			}
			continue
		case "unsetenv", "resetenv":
			names := f[1:]
			env = slices.DeleteFunc(env, func(kv string) bool {
				name, _, _ := strings.Cut(kv, "=")
				return slices.Contains(names, name) == (f[0] == "unsetenv")
			})
			continue
		}
		if len(f) < 2 || f[0] != "bind" {
			continue
		}
		// Split at the commas before the expansion, as haproxy does
		// (src/listener.c, str2listener).
		for _, a := range strings.Split(f[1], ",") {
			a = haproxyEnvExpand(a, env)
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

// haproxyCond evaluates the condition of a .if or .elif line as haproxy
// does (src/cfgcond.c): terms joined by "&&" and "||" ("&&" binds
// tighter), each "!"-negated any number of times, a number (true unless
// 0), a parenthesised condition, or a predicate. defined(NAME),
// streq(A,B), strneq(A,B) and strstr(A,B) are evaluated here; the others
// ask about the haproxy build (feature(), version_atleast(), ...), so a
// condition with one of them is asked of the haproxy that will run (ask).
// Without an answer it counts as true, as does a condition that does not
// parse (haproxy refuses the file then).
func haproxyCond(text string, env []string, ask haproxyAsk) bool {
	p := haproxyCondParser{text: text, env: env}
	v, ok := p.or()
	if p.build && ok && ask != nil {
		if w, ok := ask(text, env); ok {
			return w
		}
	}
	return v || !ok || p.build
}

// haproxyAsk evaluates a condition with the real haproxy; ok is false
// when it cannot say.
type haproxyAsk func(cond string, env []string) (v, ok bool)

// haproxyCC asks bin: "haproxy -cc COND" evaluates COND as a .if line
// would, with exit status 0 when true and 1 when false (haproxy -h,
// "-cc check condition : evaluate a condition and exit"; measured with
// 2.6.12, 2 for a condition that does not parse).
func haproxyCC(bin string) haproxyAsk {
	return func(cond string, env []string) (bool, bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, "-cc", cond)
		cmd.Env = append([]string{}, env...) // empty, not graceshim's, when env is
		err := cmd.Run()
		var ee *exec.ExitError
		switch {
		case err == nil:
			return true, true
		case errors.As(err, &ee) && ee.ExitCode() == 1:
			return false, true
		}
		return false, false
	}
}

type haproxyCondParser struct {
	text  string
	env   []string
	build bool // a predicate about the build was met
}

func (p *haproxyCondParser) skip() { p.text = strings.TrimLeft(p.text, " \t") }

func (p *haproxyCondParser) or() (bool, bool) {
	v, ok := p.and()
	for ok {
		p.skip()
		rest, found := strings.CutPrefix(p.text, "||")
		if !found {
			break
		}
		p.text = rest
		var w bool
		w, ok = p.and()
		v = v || w
	}
	return v, ok
}

func (p *haproxyCondParser) and() (bool, bool) {
	v, ok := p.term()
	for ok {
		p.skip()
		rest, found := strings.CutPrefix(p.text, "&&")
		if !found {
			break
		}
		p.text = rest
		var w bool
		w, ok = p.term()
		v = v && w
	}
	return v, ok
}

func (p *haproxyCondParser) term() (bool, bool) {
	p.skip()
	neg := false
	for strings.HasPrefix(p.text, "!") {
		neg = !neg
		p.text = p.text[1:]
		p.skip()
	}
	var v bool
	switch {
	case p.text == "":
		return false, false
	case p.text[0] >= '0' && p.text[0] <= '9' || p.text[0] == '-' || p.text[0] == '+':
		n := strings.IndexFunc(p.text[1:], func(r rune) bool { return r < '0' || r > '9' }) + 1
		if n == 0 {
			n = len(p.text)
		}
		num, err := strconv.ParseInt(p.text[:n], 10, 64)
		if err != nil {
			return false, false
		}
		v, p.text = num != 0, p.text[n:]
	case p.text[0] == '(':
		p.text = p.text[1:]
		var ok bool
		if v, ok = p.or(); !ok {
			return false, false
		}
		p.skip()
		if !strings.HasPrefix(p.text, ")") {
			return false, false
		}
		p.text = p.text[1:]
	default:
		open := strings.IndexByte(p.text, '(')
		close := strings.IndexByte(p.text, ')')
		if open < 0 || close < open {
			return false, false
		}
		name, args := p.text[:open], strings.Split(p.text[open+1:close], ",")
		p.text = p.text[close+1:]
		arg := func(i int) string {
			if i < len(args) {
				return strings.TrimSpace(args[i])
			}
			return ""
		}
		switch name {
		case "defined":
			_, v = haproxyLookup(p.env, arg(0))
		case "streq":
			v = arg(0) == arg(1)
		case "strneq":
			v = arg(0) != arg(1)
		case "strstr":
			v = strings.Contains(arg(0), arg(1))
		default:
			v, p.build = true, true
		}
	}
	return v != neg, true
}

// haproxyEnv is the environment haproxy reads its config with: env, and
// HAPROXY_LOCALPEER, which haproxy sets before it reads the config (to
// its -L name, else the host's name; configuration.txt 2.3; measured
// with 2.6.12: `.if defined(HAPROXY_LOCALPEER)` holds, with or without
// -L, while HAPROXY_MWORKER and HAPROXY_CFGFILES are not yet set).
func haproxyEnv(argv, env []string) []string {
	peer, _ := os.Hostname()
	for i := 1; i+1 < len(argv); i++ {
		if argv[i] == "--" {
			break
		}
		if argv[i] == "-L" {
			peer = argv[i+1]
		}
	}
	return append(slices.Clip(env), "HAPROXY_LOCALPEER="+peer)
}

// haproxyLookup is getenv over env, the last assignment winning.
func haproxyLookup(env []string, name string) (string, bool) {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// haproxyWords splits a config line into words as haproxy 2.6's parser
// does (configuration.txt, 2.2 "Quoting and escaping" and 2.3
// "Environment variables"; src/tools.c parse_line). Outside quotes,
// blanks separate words and '#' starts a comment. Single quotes keep
// their text as it is. Outside them a backslash escapes a blank, '\\',
// '#', a quote, and '$' in double quotes only; "\t", "\n", "\r" and
// "\xHH" are those bytes; before any other character the backslash
// stays (measured with haproxy 2.6.12: `127.0.0.1:1801\7` binds port
// 1801). Only inside double quotes are "$NAME", "${NAME}",
// "${NAME-default}" (the default only for a variable that is not set)
// and "${NAME[*]}" (one word per blank-separated part) expanded. ok is
// false for a line haproxy refuses: an unmatched quote or brace, a bad
// "\x" or variable name.
func haproxyWords(line string, env []string) (words []string, ok bool) {
	var (
		word           strings.Builder
		in             bool // a word is under way (it may be an empty quoted one)
		squote, dquote bool
	)
	isName := func(c byte) bool {
		return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
	}
	end := func() {
		if in {
			words = append(words, word.String())
			word.Reset()
			in = false
		}
	}
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\n' || c == '\r':
			i = len(line) // the end of the line for haproxy
			continue
		case c == '#' && !squote && !dquote:
			i = len(line)
			continue
		case c == '"' && !squote:
			dquote = !dquote
		case c == '\'' && !dquote:
			squote = !squote
		case c == '\\' && !squote:
			next := byte(0)
			if i+1 < len(line) {
				next = line[i+1]
			}
			switch next {
			case ' ', '\\', '#', '\'', '"':
				c = next
				i++
			case 't':
				c = '\t'
				i++
			case 'n':
				c = '\n'
				i++
			case 'r':
				c = '\r'
				i++
			case '$':
				if dquote {
					c = next
					i++
				}
			case 'x':
				if i+3 >= len(line) {
					return nil, false
				}
				v, err := strconv.ParseUint(line[i+2:i+4], 16, 8)
				if err != nil {
					return nil, false
				}
				c = byte(v)
				i += 3
			}
			word.WriteByte(c)
		case (c == ' ' || c == '\t' || c == '\v' || c == '\f') && !squote && !dquote:
			end()
			continue
		case c == '$' && dquote:
			j := i + 1
			brace := j < len(line) && line[j] == '{'
			if brace {
				j++
			}
			if j >= len(line) || !(line[j] == '_' || line[j] == '.' || line[j] >= 'a' && line[j] <= 'z' || line[j] >= 'A' && line[j] <= 'Z') {
				return nil, false
			}
			k := j
			if line[k] == '.' {
				k++ // haproxy's own .FILE, .LINE, .SECTION: no address
			}
			for k < len(line) && isName(line[k]) {
				k++
			}
			v, set := haproxyLookup(env, line[j:k])
			split := false
			if brace {
				if strings.HasPrefix(line[k:], "[*]") {
					split = true
					k += 3
				}
				close := strings.IndexByte(line[k:], '}')
				if close < 0 || close > 0 && line[k] != '-' {
					return nil, false
				}
				if line[k] == '-' && !set {
					v = line[k+1 : k+close]
				}
				k += close + 1
			}
			for _, r := range []byte(v) {
				if split && (r == ' ' || r == '\t' || r == '\n' || r == '\v' || r == '\f' || r == '\r') {
					end()
					continue
				}
				word.WriteByte(r)
				in = true
			}
			i = k - 1
			continue
		default:
			word.WriteByte(c)
		}
		in = true
	}
	if squote || dquote {
		return nil, false
	}
	end()
	return words, true
}

// haproxyEnvExpand expands "$NAME" and "${NAME}" in an address, as haproxy
// does to each address after the line's parsing, whatever its quotes
// (src/tools.c env_expand, called by str2sa_range): a name is letters,
// digits and '_', an unset variable is empty, and there is no default
// (measured with 2.6.12: `bind '${A}'` binds A's address, `bind "\$A"`
// too).
func haproxyEnvExpand(s string, env []string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var out strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' {
			out.WriteByte(s[i])
			continue
		}
		j := i + 1
		brace := j < len(s) && s[j] == '{'
		if brace {
			j++
		}
		k := j
		for k < len(s) && (s[k] == '_' || s[k] >= 'a' && s[k] <= 'z' || s[k] >= 'A' && s[k] <= 'Z' || s[k] >= '0' && s[k] <= '9') {
			k++
		}
		v, _ := haproxyLookup(env, s[j:k])
		out.WriteString(v)
		if brace && k < len(s) && s[k] == '}' {
			k++
		}
		i = k - 1
	}
	return out.String()
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
