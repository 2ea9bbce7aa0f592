package unitgen

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/graceshim/graceshim/unitgen/haproxyconf"
	"github.com/graceshim/graceshim/unitgen/nginxconf"
)

// Where each daemon listens, read from its configuration or flags for
// the socket unit's ListenStream= lines.

// nginxListens reads the listen directives of every server block in the
// http and stream contexts of the configuration an nginx command line
// loads (nginxConfig finds it), following includes.
func nginxListens(root string, argv []string) ([]Listen, error) {
	conf := nginxConfig(root, argv)
	if conf.err != nil {
		return nil, fmt.Errorf("--socket: cannot read nginx's configuration %s: %w", conf.path, UnwrapPath(conf.err))
	}
	w := &nginxWalk{}
	files := nginxconf.Files{
		Read: func(path string) ([]byte, error) {
			b, err := readUnder(root, path)
			return b, UnwrapPath(err)
		},
		Glob: func(pattern string) ([]string, error) {
			if root == "" {
				return filepath.Glob(pattern)
			}
			matches, err := filepath.Glob(filepath.Join(root, pattern))
			for i, m := range matches {
				matches[i] = "/" + strings.TrimPrefix(strings.TrimPrefix(m, filepath.Clean(root)), "/")
			}
			return matches, err
		},
		Prefix: filepath.Dir(conf.path),
	}
	if err := nginxconf.Walk(files, conf.path, w.visit); err != nil {
		return nil, fmt.Errorf("--socket: %w", err)
	}
	if w.err != nil {
		return nil, w.err
	}
	return nginxBound(w.listens), nil
}

type nginxListen struct {
	Listen
	port     string
	wildcard bool
	// bind is set when nginx binds this address itself even beside a
	// wildcard of its port: the bind parameter or one that implies it.
	bind bool
}

type nginxWalk struct {
	// server is where the open server block starts, "" outside one.
	server       string
	serverListen bool
	listens      []nginxListen
	err          error
}

// visit takes the listen directives of server blocks in the http and
// stream contexts, and gives an http server without one nginx's default.
func (w *nginxWalk) visit(ev nginxconf.Event) error {
	n := len(ev.Stack)
	in := func(names ...string) bool { return n > 0 && contains(names, ev.Stack[n-1]) }
	switch ev.Kind {
	case nginxconf.Open:
		if ev.Words[0].S == "server" && in("http", "stream") {
			w.server, w.serverListen = fmt.Sprintf("%s:%d", ev.File, ev.Words[0].Line), false
		}
	case nginxconf.Close:
		if ev.Words[0].S == "server" && w.server != "" {
			if !w.serverListen && in("http") {
				// ngx_http_core_module: "listen *:80 | *:8000"
				// is the default of a server without listen
				// (8000 when nginx does not run as root; under
				// systemd the master does).
				w.add(ev.File, ev.Words[0].Line, []string{"*:80"}, "the server block at "+w.server+" has no listen: nginx's default *:80")
			}
			w.server = ""
		}
	case nginxconf.Directive:
		if ev.Words[0].S == "listen" && w.server != "" && n >= 2 && ev.Stack[n-1] == "server" {
			args := make([]string, 0, len(ev.Words)-1)
			for _, a := range ev.Words[1:] {
				args = append(args, a.S)
			}
			w.serverListen = true
			w.add(ev.File, ev.Words[0].Line, args, "")
		}
	}
	return nil
}

// nginxImpliesBind are the listen parameters that make nginx bind the
// address itself even beside a wildcard listen of the same port
// (ngx_http_core_module, listen: "bind ... is implied by ipv6only,
// reuseport, setfib, fastopen, backlog, rcvbuf, sndbuf, accept_filter,
// deferred and so_keepalive").
var nginxImpliesBind = []string{"bind", "ipv6only=", "reuseport", "setfib=", "fastopen=", "backlog=", "rcvbuf=", "sndbuf=", "accept_filter=", "deferred", "so_keepalive="}

func (w *nginxWalk) add(path string, line int, args []string, why string) {
	if w.err != nil || len(args) == 0 {
		return
	}
	from := fmt.Sprintf("%s:%d", path, line)
	if why != "" {
		from = why
	}
	a := args[0]
	l := nginxListen{Listen: Listen{From: from}}
	for _, p := range args[1:] {
		for _, b := range nginxImpliesBind {
			if p == b || (strings.HasSuffix(b, "=") && strings.HasPrefix(p, b)) {
				l.bind = true
			}
		}
		switch {
		case p == "quic":
			w.err = socketErrorf("--socket: %s: listen %s quic is UDP: graceshim's socket unit holds TCP sockets (ListenStream=) only; serve QUIC from sockets nginx binds itself, or leave out --socket", from, a)
			return
		case strings.HasPrefix(p, "backlog="):
			n, err := strconv.Atoi(strings.TrimPrefix(p, "backlog="))
			if err == nil && n > 0 {
				l.Backlog = n
			}
		case p == "ipv6only=on":
			l.V6Only = "only"
		case p == "ipv6only=off":
			l.V6Only = "both"
		}
	}
	if path, ok := strings.CutPrefix(a, "unix:"); ok {
		if !filepath.IsAbs(path) {
			w.err = socketErrorf("--socket: %s: listen %s: a socket unit needs an absolute path", from, a)
			return
		}
		l.Addr, l.bind = path, true
		w.listens = append(w.listens, l)
		return
	}
	addr, err := hostPort(a, 80)
	if err != nil {
		w.err = socketErrorf("--socket: %s: listen %v", from, err)
		return
	}
	ap := netip.MustParseAddrPort(addr)
	l.Addr, l.port, l.wildcard = addr, strconv.Itoa(int(ap.Port())), ap.Addr().IsUnspecified()
	if ap.Addr().Is6() && ap.Addr().IsUnspecified() && l.V6Only == "" {
		// ipv6only=on is nginx's default since 1.3.4 (listen docs).
		l.V6Only = "only"
	}
	if !ap.Addr().Is6() {
		l.V6Only = ""
	}
	w.listens = append(w.listens, l)
}

// nginxBound keeps the sockets nginx binds: beside a wildcard listen of a
// port, nginx binds a specific address of that port only when a listen
// says bind or implies it (ngx_http.c ngx_http_init_listening: "if there
// is a binding to an "*:port" then we need to bind() to the "*:port"
// only and ignore other implicit bindings").
func nginxBound(ls []nginxListen) []Listen {
	wild := map[string]bool{}
	for _, l := range ls {
		if l.wildcard {
			wild[family(l.Addr)+l.port] = true
		}
	}
	var out []Listen
	for _, l := range ls {
		if l.port != "" && !l.wildcard && !l.bind && wild[family(l.Addr)+l.port] {
			continue
		}
		out = append(out, l.Listen)
	}
	return dedupe(out)
}

func family(addr string) string {
	if strings.HasPrefix(addr, "[") {
		return "6:"
	}
	return "4:"
}

// haproxyListens reads the bind lines of an HAProxy configuration (-f
// FILE or DIR, as many as given). HAProxy takes a socket from its parent
// only where a bind line names it, fd@N; every other bind line makes it
// bind its own socket, beside systemd's. So every bind must be fd@N, with
// the N being 3, 4, ... for the ListenStream= lines in order, and the
// addresses come from --listen: fd@N does not say which.
func haproxyListens(root string, argv []string, given []Listen, dir string) ([]Listen, error) {
	binds, files, err := haproxyBinds(root, argv, dir)
	if err != nil {
		return nil, err
	}
	if len(binds) == 0 {
		return nil, socketErrorf("--socket: HAProxy's configuration (%s) has no bind line in a frontend or listen section: nothing for a socket unit to hold", strings.Join(files, ", "))
	}
	var own []string
	var addrs []string
	fds := map[int]string{}
	next := 3
	for _, b := range binds {
		if n, ok := strings.CutPrefix(b.addr, "fd@"); ok {
			fd, err := strconv.Atoi(n)
			if err != nil {
				return nil, socketErrorf("--socket: %s: bind %s: fd@ needs a number", b.from, b.addr)
			}
			if prev, dup := fds[fd]; dup {
				return nil, socketErrorf("--socket: %s: bind fd@%d again (first at %s): one socket serves one bind line", b.from, fd, prev)
			}
			fds[fd] = b.from
			continue
		}
		addr, err := haproxyAddr(b.addr)
		if err != nil {
			return nil, socketErrorf("--socket: %s: bind %v", b.from, err)
		}
		own = append(own, fmt.Sprintf("%s \"bind %s\" to \"bind fd@%d%s\"", b.from, b.raw, next, b.rest))
		addrs = append(addrs, "--listen "+addr)
		next++
	}
	if len(own) > 0 {
		if len(fds) > 0 {
			return nil, socketErrorf("--socket: HAProxy binds its own sockets beside inherited ones (bind fd@N), so it would ignore systemd's: change %s, numbering after the fd@ lines already there, and run this again with one --listen per fd, in fd order; nothing written", strings.Join(own, ", "))
		}
		return nil, socketErrorf("--socket: HAProxy listens only on sockets its configuration names with bind fd@N and would ignore systemd's: change %s, then run this again with %s; nothing written", strings.Join(own, ", "), strings.Join(addrs, " "))
	}
	for i := 0; i < len(fds); i++ {
		if _, ok := fds[3+i]; !ok {
			return nil, socketErrorf("--socket: HAProxy's bind lines name fd@N for N other than 3 to %d: systemd passes a socket unit's sockets as descriptors 3, 4, ... in order (sd_listen_fds(3)); number them from 3", 2+len(fds))
		}
	}
	if len(given) != len(fds) {
		return nil, socketErrorf("--socket: HAProxy's configuration binds fd@3 to fd@%d, which do not say where to listen: pass --listen ADDR %d times, the address of fd@3 first (%d given)", 2+len(fds), len(fds), len(given))
	}
	out := make([]Listen, len(given))
	for i, g := range given {
		out[i] = Listen{Addr: g.Addr, From: fmt.Sprintf("--listen, for bind fd@%d at %s", 3+i, fds[3+i])}
	}
	for _, b := range binds {
		if fd, err := strconv.Atoi(strings.TrimPrefix(b.addr, "fd@")); err == nil && b.backlog > 0 {
			out[fd-3].Backlog = b.backlog
		}
	}
	return out, nil
}

type haproxyBind struct {
	addr, raw, rest, from string
	backlog               int
}

// haproxySections are the keywords that start a section
// (configuration.txt, "2.1. ... sections"); bind lines count in frontend
// and listen sections.
var haproxySections = map[string]bool{
	"global": true, "defaults": true, "frontend": true, "backend": true, "listen": true,
	"peers": true, "resolvers": true, "userlist": true, "program": true, "mailers": true,
	"cache": true, "ring": true, "http-errors": true, "crt-store": true, "log-forward": true,
}

// haproxyBinds reads the bind lines of the files an haproxy command line
// loads, found as haproxy finds them (haproxyconf.Files, the reader the
// supervisor uses too: -f, "--", -C DIR, a directory's *.cfg files).
//
// haproxy runs in dir, the unit's working directory ("" when it cannot
// be told): a relative name without -C is under it, as under -C DIR.
func haproxyBinds(root string, argv []string, dir string) (binds []haproxyBind, read []string, err error) {
	if dir != "" {
		// haproxy takes the last -C: one of the command's own wins.
		argv = append([]string{argv[0], "-C", dir}, argv[1:]...)
	}
	files, glued := haproxyconf.Files(root, argv)
	if len(glued) > 0 {
		// haproxy takes the next word as the file or directory:
		// measured with 2.6.12, "-f/etc/h.cfg -p F" loads a file
		// named "-p".
		return nil, nil, socketErrorf("--socket: HAProxy reads %s as %s followed by the next word, which becomes its argument: write %s %s", glued[0], glued[0][:2], glued[0][:2], glued[0][2:])
	}
	if len(files) == 0 {
		return nil, nil, socketErrorf("--socket: the HAProxy command has no -f FILE: cannot read its bind lines")
	}
	var out []haproxyBind
	for _, p := range files {
		if strings.ContainsAny(p, "$%") {
			return nil, nil, socketErrorf("--socket: HAProxy's configuration %s is only known at run time: cannot read its bind lines", p)
		}
		data, err := readUnder(root, p)
		if err != nil {
			return nil, nil, fmt.Errorf("--socket: cannot read HAProxy's configuration %s: %w", p, UnwrapPath(err))
		}
		binds, err := haproxyFileBinds(p, string(data))
		if err != nil {
			return nil, nil, err
		}
		out = append(out, binds...)
		read = append(read, p)
	}
	return out, read, nil
}

// haproxyFileBinds reads the bind lines of one file as haproxy does
// (haproxyconf: quotes, escapes, comments, conditional blocks, setenv),
// those of frontend and listen sections. The environment haproxy will
// get is the unit's, known only when systemd starts it: a bind line that
// names a variable is an error that says so.
func haproxyFileBinds(path, data string) ([]haproxyBind, error) {
	var out []haproxyBind
	section := ""
	raw := strings.Split(data, "\n")
	for _, l := range haproxyconf.Lines(data, nil, nil) {
		f := l.Words
		from := fmt.Sprintf("%s:%d", path, l.Num)
		if haproxySections[f[0]] {
			section = f[0]
			if f[0] == "listen" && len(f) > 2 {
				// The old form "listen NAME ADDR": haproxy 2.6 refuses it
				// (measured with 2.6.12: "please use the 'bind' keyword
				// for listening addresses").
				return nil, socketErrorf("--socket: %s: haproxy 2.6 refuses an address on the listen line (%s): move it to a bind line in the section", from, haproxyconf.Quote(f[2]))
			}
			continue
		}
		if f[0] != "bind" || (section != "frontend" && section != "listen") || len(f) < 2 {
			continue
		}
		if strings.Contains(raw[l.Num-1], "$") {
			return nil, socketErrorf("--socket: %s: %s: the address names an environment variable, known only when haproxy starts: give the addresses with --listen", from, strings.TrimSpace(raw[l.Num-1]))
		}
		// Quoted again: the words go into a suggested bind line, where an
		// unquoted '#' would start a comment.
		quoted := make([]string, len(f))
		for i, w := range f {
			quoted[i] = haproxyconf.Quote(w)
		}
		b := haproxyBind{raw: strings.Join(quoted[1:], " "), from: from}
		if len(f) > 2 {
			b.rest = " " + strings.Join(quoted[2:], " ")
		}
		for j := 2; j+1 < len(f); j++ {
			if f[j] == "backlog" {
				b.backlog, _ = strconv.Atoi(f[j+1])
			}
		}
		for _, a := range strings.Split(f[1], ",") {
			b.addr = a
			out = append(out, b)
		}
	}
	return out, nil
}

// haproxyAddr reads a bind address (configuration.txt, "bind"): an
// optional ipv4@/ipv6@/unix@ prefix, ":80", "*:80", "0.0.0.0:80",
// ":::80", "[::]:80", or a path for a unix socket.
func haproxyAddr(a string) (string, error) {
	switch {
	case strings.HasPrefix(a, "unix@"):
		a = strings.TrimPrefix(a, "unix@")
		fallthrough
	case strings.HasPrefix(a, "/"):
		return a, nil
	case strings.HasPrefix(a, "ipv4@"), strings.HasPrefix(a, "tcp4@"), strings.HasPrefix(a, "tcp@"):
		a = a[strings.IndexByte(a, '@')+1:]
	case strings.HasPrefix(a, "ipv6@"), strings.HasPrefix(a, "tcp6@"):
		a = a[strings.IndexByte(a, '@')+1:]
	case strings.Contains(a, "@"):
		return "", fmt.Errorf("%s: a socket unit holds TCP and unix stream sockets only", a)
	}
	if strings.Contains(a, "-") && !strings.HasPrefix(a, "[") {
		return "", fmt.Errorf("%s: a port range; a socket unit listens on fixed ports", a)
	}
	if i := strings.LastIndexByte(a, ':'); i > 0 && strings.Count(a, ":") > 1 && !strings.HasPrefix(a, "[") {
		// ":::80" and "::1:80": IPv6, the port after the last colon.
		host := a[:i]
		if host == "::" || host == "" {
			host = "::"
		}
		a = "[" + host + "]:" + a[i+1:]
	}
	return hostPort(a, 0)
}

// gunicornListens reads where gunicorn binds, with gunicorn 20's
// precedence (gunicorn/app/base.py, load_config): the configuration file,
// then GUNICORN_CMD_ARGS, then the command line, each overriding the one
// before; gunicorn's default is 127.0.0.1:8000 (docs, settings "bind").
// The file is -c FILE (on the command line, else in GUNICORN_CMD_ARGS),
// else gunicorn.conf.py in the working directory when there is one
// (get_default_config_file). Measured with gunicorn 20.1 (--print-config):
// a ./gunicorn.conf.py's bind and backlog apply without -c, a -b on the
// command line overrides its bind but keeps its backlog, and
// GUNICORN_CMD_ARGS's -c and --bind count. gunicorn serves every socket
// systemd passes, whatever --bind says (gunicorn/arbiter.py), but --bind
// is where the operator said it should listen.
func gunicornListens(root string, argv []string, so SocketOptions) ([]Listen, error) {
	cli := gunicornArgs(argv[1:], "")
	envArgs := so.env("GUNICORN_CMD_ARGS")
	// gunicorn splits it as a shell would quote it:
	// shlex.split(os.environ.get("GUNICORN_CMD_ARGS")) (gunicorn/config.py,
	// Config.get_cmd_args_from_env).
	envWords, err := shlexSplit(envArgs)
	if err != nil {
		return nil, unreadf("--socket: GUNICORN_CMD_ARGS=%s: %v (gunicorn itself stops on it: shlex.split, gunicorn/config.py)", envArgs, err)
	}
	env := gunicornArgs(envWords, "GUNICORN_CMD_ARGS ")
	conf, explicit := cli.conf, true
	if conf == "" {
		conf = env.conf
	}
	if conf == "" {
		conf, explicit = "gunicorn.conf.py", false
	}
	var file gunicornSettings
	needBinds := len(cli.binds) == 0 && len(env.binds) == 0
	dir := so.workDir()
	switch {
	case strings.HasPrefix(conf, "python:") || !filepath.IsAbs(conf) && dir == "":
		if explicit && needBinds {
			return nil, unreadf("--socket: gunicorn's -c %s is not an absolute file: cannot read its bind; pass --bind on the command line or --listen ADDR", conf)
		}
		if needBinds {
			wd, _ := so.Unit.LastOf("Service", "WorkingDirectory")
			return nil, unreadf("--socket: gunicorn reads %s from its working directory, which graceshim cannot tell (WorkingDirectory=%s): pass --bind on the command line or --listen ADDR", conf, wd.Value)
		}
	default:
		rel := !filepath.IsAbs(conf)
		if rel {
			conf = filepath.Join(dir, conf)
		}
		data, err := readUnder(root, conf)
		switch {
		case err != nil && explicit && rel:
			return nil, unreadf("--socket: gunicorn reads its -c from its working directory, %s: cannot read %s (%v): pass --listen ADDR", dir, conf, UnwrapPath(err))
		case err != nil && (explicit || !errors.Is(err, fs.ErrNotExist)):
			if needBinds || explicit {
				return nil, fmt.Errorf("--socket: cannot read gunicorn's configuration %s: %w", conf, UnwrapPath(err))
			}
		case err == nil:
			file, err = gunicornFile(conf, string(data))
			if err != nil && needBinds {
				return nil, err
			}
		}
	}
	binds, backlog := file.binds, file.backlog
	for _, a := range []gunicornSettings{env, cli} {
		if len(a.binds) > 0 {
			binds = a.binds
		}
		if a.backlog > 0 {
			backlog = a.backlog
		}
	}
	if len(binds) == 0 {
		binds = []Listen{{Addr: "127.0.0.1:8000", From: "gunicorn's default bind"}}
	}
	for i, b := range binds {
		switch {
		case strings.HasPrefix(b.Addr, "unix:"):
			binds[i].Addr = strings.TrimPrefix(b.Addr, "unix:")
			if !unixPathOK(binds[i].Addr, so.Specifiers && strings.HasPrefix(b.From, "-")) {
				return nil, socketErrorf("--socket: %s: a socket unit needs an absolute path", b.From)
			}
		case strings.HasPrefix(b.Addr, "fd://"):
			return nil, socketErrorf("--socket: %s: gunicorn already takes that descriptor from its parent; give the address to listen on instead", b.From)
		default:
			addr, err := hostPort(strings.TrimPrefix(b.Addr, "tcp://"), 8000)
			if err != nil {
				return nil, socketErrorf("--socket: %s: %v", b.From, err)
			}
			binds[i].Addr = addr
		}
		binds[i].Backlog = backlog
	}
	return dedupe(binds), nil
}

// gunicornSettings are the settings of one source that decide the socket
// unit.
type gunicornSettings struct {
	binds   []Listen
	backlog int
	conf    string
}

// gunicornArgs reads -b/--bind, --backlog and -c/--config from words of
// gunicorn's command line (argparse: "-b ADDR", "-bADDR", "--bind ADDR",
// "--bind=ADDR"); from prefixes where each was read.
func gunicornArgs(words []string, from string) gunicornSettings {
	var g gunicornSettings
	for i := 0; i < len(words); i++ {
		a := words[i]
		name, val, glued := strings.Cut(a, "=")
		if !strings.HasPrefix(a, "--") && len(a) > 2 && (strings.HasPrefix(a, "-b") || strings.HasPrefix(a, "-c")) {
			name, val, glued = a[:2], a[2:], true
		}
		switch name {
		case "-b", "--bind", "--backlog", "-c", "--config":
		default:
			continue
		}
		if !glued {
			if i+1 >= len(words) {
				break
			}
			i++
			val = words[i]
		}
		switch name {
		case "-b", "--bind":
			g.binds = append(g.binds, Listen{Addr: val, From: from + name + " " + val})
		case "--backlog":
			g.backlog, _ = strconv.Atoi(val)
		case "-c", "--config":
			g.conf = val
		}
	}
	return g
}

// gunicornFile reads bind = and backlog = of a gunicorn configuration
// file, Python in which the last assignment wins.
func gunicornFile(conf, data string) (gunicornSettings, error) {
	var g gunicornSettings
	if ms := gunicornBindRe.FindAllStringSubmatch(data, -1); ms != nil {
		m := ms[len(ms)-1]
		for _, q := range quotedRe.FindAllStringSubmatch(m[1], -1) {
			g.binds = append(g.binds, Listen{Addr: q[2], From: conf + ": bind"})
		}
		if len(g.binds) == 0 {
			return g, unreadf("--socket: %s: bind = %s is not a quoted address or a list of them: pass --listen ADDR", conf, m[1])
		}
	}
	if ms := gunicornBacklogRe.FindAllStringSubmatch(data, -1); ms != nil {
		g.backlog, _ = strconv.Atoi(ms[len(ms)-1][1])
	}
	return g, nil
}

var (
	gunicornBindRe    = regexp.MustCompile(`(?m)^bind\s*=\s*(.+)$`)
	gunicornBacklogRe = regexp.MustCompile(`(?m)^backlog\s*=\s*(\d+)`)
	quotedRe          = regexp.MustCompile(`(["'])([^"']*)(["'])`)
	// bind "URI", or port N with an optional "HOST".
	pumaBindRe = regexp.MustCompile(`(?m)^\s*(bind|port)\s*\(?\s*(?:["']([^"']+)["']|(\d+)(?:\s*,\s*["']([^"']+)["'])?)`)
)

// pumaListens reads puma's binds as puma 5 does (lib/puma/cli.rb,
// configuration.rb, dsl.rb): -b/--bind URIs and -p/--port on the command
// line replace those of the configuration; the configuration is each -C
// FILE ("-C -" for none), else the first of config/puma/ENV.rb and
// config/puma.rb in the working directory (ENV from -e, else APP_ENV,
// RACK_ENV, RAILS_ENV, else development); in it, bind URI and port N
// [, HOST] (HOST 0.0.0.0 by default) each add a bind. puma's default is
// tcp://0.0.0.0:9292. Measured with Debian 12's puma 5.6.5: without -C
// it listened where config/puma.rb said, or config/puma/production.rb
// with RACK_ENV=production or -e production, and -b or -p replaced the
// file's binds. puma matches systemd's sockets to its binds
// (lib/puma/binder.rb; docs/systemd.md's puma.socket lists the same
// ports as the binds).
func pumaListens(root string, argv []string, so SocketOptions) ([]Listen, error) {
	var binds []Listen
	var confs []string
	backlog := 0
	env := ""
	for i := 1; i < len(argv); i++ {
		name, val, glued := strings.Cut(argv[i], "=")
		if !strings.HasPrefix(name, "--") && len(name) > 2 && strings.ContainsRune("bpCe", rune(name[1])) {
			name, val, glued = argv[i][:2], argv[i][2:], true
		}
		switch name {
		case "-b", "--bind", "-p", "--port", "-C", "--config", "-e", "--environment":
			if !glued {
				if i+1 >= len(argv) {
					continue
				}
				i++
				val = argv[i]
			}
		default:
			continue
		}
		switch name {
		case "-b", "--bind":
			binds = append(binds, Listen{Addr: val, From: name + " " + val})
		case "-p", "--port":
			binds = append(binds, Listen{Addr: "tcp://0.0.0.0:" + val, From: name + " " + val})
		case "-C", "--config":
			confs = append(confs, val)
		case "-e", "--environment":
			env = val
		}
	}
	dir := so.workDir()
	if len(binds) == 0 && len(confs) == 0 {
		if env == "" {
			env = cmp.Or(so.env("APP_ENV"), so.env("RACK_ENV"), so.env("RAILS_ENV"), "development")
		}
		if dir == "" {
			wd, _ := so.Unit.LastOf("Service", "WorkingDirectory")
			return nil, unreadf("--socket: puma reads config/puma.rb from its working directory, which graceshim cannot tell (WorkingDirectory=%s): pass -b on the command line or --listen ADDR", wd.Value)
		}
		for _, f := range []string{"config/puma/" + env + ".rb", "config/puma.rb"} {
			if _, err := os.Stat(filepath.Join(root, dir, f)); err == nil {
				confs = []string{filepath.Join(dir, f)}
				break
			}
		}
	}
	if len(confs) == 1 && confs[0] == "-" || len(binds) > 0 {
		// No configuration, or the command line's binds replace its.
		confs = nil
	}
	for _, conf := range confs {
		rel := !filepath.IsAbs(conf)
		if rel {
			if dir == "" {
				return nil, unreadf("--socket: puma's -C %s is not an absolute path: cannot read its binds; pass --listen ADDR", conf)
			}
			conf = filepath.Join(dir, conf)
		}
		data, err := readUnder(root, conf)
		if err != nil && rel {
			return nil, unreadf("--socket: puma reads its -C from its working directory, %s: cannot read %s (%v): pass --listen ADDR", dir, conf, UnwrapPath(err))
		}
		if err != nil {
			return nil, fmt.Errorf("--socket: cannot read puma's configuration %s: %w", conf, UnwrapPath(err))
		}
		for _, m := range pumaBindRe.FindAllStringSubmatch(string(data), -1) {
			if m[1] == "bind" {
				binds = append(binds, Listen{Addr: m[2], From: conf + ": bind"})
			} else {
				binds = append(binds, Listen{Addr: "tcp://" + net.JoinHostPort(cmp.Or(m[4], "0.0.0.0"), m[3]), From: conf + ": port"})
			}
		}
	}
	if len(binds) == 0 {
		binds = []Listen{{Addr: "tcp://0.0.0.0:9292", From: "puma's default bind"}}
	}
	for i, b := range binds {
		u, query, _ := strings.Cut(b.Addr, "?")
		if v, ok := strings.CutPrefix(query, "backlog="); ok {
			backlog, _ = strconv.Atoi(strings.SplitN(v, "&", 2)[0])
		}
		switch {
		case strings.HasPrefix(u, "unix://"):
			binds[i].Addr = strings.TrimPrefix(u, "unix://")
			if !unixPathOK(binds[i].Addr, so.Specifiers && strings.HasPrefix(b.From, "-")) {
				return nil, socketErrorf("--socket: %s: a socket unit needs an absolute path", b.From)
			}
		case strings.HasPrefix(u, "tcp://"):
			addr, err := hostPort(strings.TrimPrefix(u, "tcp://"), 9292)
			if err != nil {
				return nil, socketErrorf("--socket: %s: %v", b.From, err)
			}
			binds[i].Addr = addr
		default:
			return nil, socketErrorf("--socket: %s: graceshim passes puma plain tcp:// and unix:// sockets; an ssl:// bind matches none of them and puma would bind its own", b.From)
		}
		binds[i].Backlog = backlog
	}
	return dedupe(binds), nil
}

// uwsgiListens reads uWSGI's --http-socket, --socket (-s) and
// --uwsgi-socket, its backlog --listen (-l, 100 by default) and
// --protocol, from the command line and from the [uwsgi] section of --ini
// files. uWSGI adds each socket systemd passes as a socket of its default
// protocol, uwsgi (core/socket.c uwsgi_setup_systemd: "uwsgi socket 1
// attached to INET address ... fd 3"), whatever --http-socket says:
// measured here with uWSGI 2.0.21, an HTTP client of such a socket gets an
// empty reply unless --protocol=http is given. So HTTP needs
// --protocol=http, and HTTP and uwsgi sockets cannot be mixed. --http
// runs uWSGI's HTTP router, a process of its own that binds itself.
func uwsgiListens(root string, argv []string, specifiers bool, dir string) ([]Listen, error) {
	// The options of the command line and of the files it loads, read
	// as for the hook (uwsgiOptions).
	opts, cannot := uwsgiOptionsIn(root, dir, argv)
	if cannot != "" {
		if format, _ := uwsgiFormat(cannot); format != "" {
			return nil, unreadf("--socket: uWSGI loads %s as %s, which graceshim does not read: name its sockets on the command line (--http-socket/--socket) or in an ini file, or pass --listen ADDR", cannot, format)
		}
		return nil, unreadf("--socket: graceshim cannot read uWSGI's configuration %s (not an absolute file, a specifier, unreadable, or after an option graceshim does not know): pass --listen ADDR", cannot)
	}
	var out []Listen
	backlog, protocol := 0, ""
	var httpFrom, uwsgiFrom string
	for _, o := range opts {
		switch o.key {
		case "http", "https":
			return nil, socketErrorf("--socket: %s: uWSGI's %s option runs its HTTP router, a process that binds its own socket: use http-socket to serve HTTP from the socket systemd passes", o.from, o.key)
		case "listen":
			backlog, _ = strconv.Atoi(o.value)
		case "protocol", "socket-protocol":
			protocol = o.value
		case "http-socket", "socket", "uwsgi-socket":
			if o.key == "http-socket" {
				httpFrom = o.from
			} else {
				uwsgiFrom = o.from
			}
			l := Listen{From: o.from}
			switch {
			case unixPathOK(o.value, specifiers && strings.HasPrefix(o.from, "-")):
				l.Addr = o.value
			case strings.HasPrefix(o.value, "@"):
				return nil, socketErrorf("--socket: %s: an abstract unix socket; a socket unit here holds TCP and unix path sockets", o.from)
			default:
				addr, err := hostPort(o.value, 0)
				if err != nil {
					return nil, socketErrorf("--socket: %s: %v", o.from, err)
				}
				l.Addr = addr
			}
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		return nil, socketErrorf("--socket: the uWSGI command has no http-socket or socket: cannot tell where it listens")
	}
	switch {
	case httpFrom != "" && uwsgiFrom != "":
		return nil, socketErrorf("--socket: uWSGI gives every socket systemd passes one protocol (--protocol), so %s (HTTP) and %s (uwsgi) cannot both come from the socket unit: use one kind", httpFrom, uwsgiFrom)
	case httpFrom != "" && protocol != "http":
		return nil, socketErrorf("--socket: %s: uWSGI speaks its default protocol, uwsgi, on the sockets systemd passes, not HTTP: add --protocol=http (protocol = http in an ini file)", httpFrom)
	}
	for i := range out {
		out[i].Backlog = backlog
	}
	return dedupe(out), nil
}

// shlexSplit splits s as Python's shlex.split(s) does (posix mode, no
// comments): blanks separate words; single quotes keep everything; in
// double quotes a backslash escapes only '"' and '\\'; outside quotes it
// escapes any character. An unclosed quote is an error ("No closing
// quotation"), as is a trailing backslash ("No escaped character").
func shlexSplit(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	in := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		case c == '\'':
			in = true
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("no closing quotation")
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
		case c == '"':
			in = true
			closed := false
			for i++; i < len(s); i++ {
				if s[i] == '"' {
					closed = true
					break
				}
				if s[i] == '\\' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\') {
					i++
				}
				cur.WriteByte(s[i])
			}
			if !closed {
				return nil, errors.New("no closing quotation")
			}
		case c == '\\':
			if i+1 == len(s) {
				return nil, errors.New("no escaped character")
			}
			in = true
			i++
			cur.WriteByte(s[i])
		default:
			in = true
			cur.WriteByte(c)
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words, nil
}
