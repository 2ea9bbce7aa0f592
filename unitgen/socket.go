package unitgen

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/coreos/go-systemd/v22/unit"

	"github.com/graceshim/graceshim/signals"
)

// Socket activation: a .socket unit whose sockets systemd holds while the
// server stops and starts, so that a connection that arrives in between
// waits in the kernel's accept queue instead of being refused, and the
// next server accepts it. graceshim passes the sockets on (LISTEN_FDS,
// sd_listen_fds(3)); each daemon takes them its own way:
//   - nginx and OpenResty: from graceshim, through NGINX="3;4;", the
//     variable of nginx's binary upgrade; the listen directives must name
//     the same addresses (ngx_add_inherited_sockets in src/core/nginx.c
//     reads them, ngx_init_cycle in src/core/ngx_cycle.c matches them to
//     the directives by address; supervisor/sockets_nginx.go checks it).
//   - HAProxy: only the sockets its configuration names with `bind fd@N`
//     (configuration.txt, "5.1. Bind options", address prefix fd@); a
//     `bind :80` binds its own socket and ignores systemd's.
//   - gunicorn, puma, uWSGI: natively (gunicorn's docs/source/deploy.rst
//     and gunicorn/systemd.py; puma's docs/systemd.md; uWSGI's
//     core/socket.c uwsgi_setup_systemd), checking LISTEN_PID, which
//     graceshim sets to the server's own pid. uWSGI speaks its own
//     protocol on them unless --protocol=http (measured, see
//     uwsgiListens); puma drops a connection or two per restart unless
//     queue_requests is false (measured, e2e/socketunit_test.go).
//
// The socket unit has no PartOf= on the service, unlike Docker's
// docker.socket (moby contrib/init/systemd/docker.socket: PartOf=
// docker.service): PartOf= propagates a restart of the service to the
// socket, which would close the listening sockets for the very restart
// they are kept for.

// DefaultBacklog is the socket unit's Backlog= when the daemon's own
// configuration names none. The accept queue is where clients wait while
// the old server drains and the next one starts, so it must hold every
// connection that arrives meanwhile; beyond it the kernel drops SYNs and
// clients retry after 1 s, 3 s, ... (not refused, but late). The kernel
// caps it at net.core.somaxconn, 4096 by default since Linux 5.4 (128
// before), so 4096 is the most a default host gives; it is written out
// because older systemd defaults to SOMAXCONN, 128 (systemd 219's
// systemd.socket(5)), while 252's default (4294967295) is the sysctl's
// cap. A daemon may listen() again with its own backlog (gunicorn's
// sock.py does: ss showed a gunicorn socket unit's socket at 2048, its
// default).
const DefaultBacklog = 4096

// SocketError says a socket unit cannot be generated for the daemon as it
// is configured: it cannot take the sockets systemd passes, or its
// configuration must change first. The message says what to do; nothing
// is written.
type SocketError struct {
	Msg string
	// unread says the addresses are in a file graceshim does not read:
	// --listen gives them instead.
	unread bool
}

func (e *SocketError) Error() string { return e.Msg }

func socketErrorf(format string, a ...any) error {
	return &SocketError{Msg: fmt.Sprintf(format, a...)}
}

// unreadf is a SocketError for addresses graceshim cannot read, which
// --listen may give.
func unreadf(format string, a ...any) error {
	return &SocketError{Msg: fmt.Sprintf(format, a...), unread: true}
}

// Listen is one socket of a socket unit.
type Listen struct {
	// Addr is the ListenStream= value: 0.0.0.0:80, [::]:80, /run/app.sock.
	Addr string
	// From says where the address was read (file:line, a flag).
	From string
	// Backlog is the daemon's own backlog for this socket, 0 for none.
	Backlog int
	// V6Only is "only" or "both" for an IPv6 wildcard the daemon names
	// the mode of, "" otherwise.
	V6Only string
}

// SocketOptions say where the sockets come from.
type SocketOptions struct {
	// Root is where the daemon's configuration is read (--root), "" for /.
	Root string
	// Listen are addresses given on the command line (--listen), in the
	// order of the descriptors the daemon gets (3, 4, ...). They are
	// needed where the configuration cannot tell (HAProxy's bind fd@N, a
	// command without a preset) and must match it where it can.
	Listen []string
	// Specifiers says the command is a unit's ExecStart= (unit --from),
	// in which systemd expands specifiers: a unix socket under %t (the
	// runtime directory) is then as good a path as /run/..., and
	// ListenStream= expands it the same way (systemd.unit(5),
	// "Specifiers"). A command given after -- has none.
	Specifiers bool
	// Unit is the unit converted (unit --from), nil for a command line:
	// its WorkingDirectory= and Environment= are the daemon's, where
	// gunicorn finds its default gunicorn.conf.py and GUNICORN_CMD_ARGS.
	// A generated unit has neither: the daemon runs in /, systemd's
	// default for a system service (systemd.exec(5), WorkingDirectory=).
	Unit *Unit
}

// workDir is the daemon's working directory: the unit's
// WorkingDirectory= when it is an absolute path, "/" without one, ""
// when it cannot be told (~, a specifier).
//
// A user unit's default is the user's home: systemd.exec(5),
// WorkingDirectory=: "Defaults to the root directory when systemd is
// running as a system instance and the respective user's home directory
// if run as user"; there "~" and %h are that home too.
func (so SocketOptions) workDir() string {
	if so.Unit == nil {
		return "/"
	}
	home, user := userUnitHome(so.Unit)
	d, ok := so.Unit.LastOf("Service", "WorkingDirectory")
	if !ok || d.Value == "" {
		if user {
			return home // "" when it cannot be told
		}
		return "/"
	}
	dir := strings.TrimPrefix(d.Value, "-")
	if user && home != "" {
		switch {
		case dir == "~":
			return home
		case dir == "%h" || strings.HasPrefix(dir, "%h/"):
			dir = home + dir[2:]
		}
	}
	if !filepath.IsAbs(dir) || strings.Contains(dir, "%") {
		return ""
	}
	return dir
}

// userUnitHome says whether u is a user unit, one a user manager reads
// (its file under a systemd/user directory of the user load path, see
// LoadPathFor), and the user's home where its place tells it:
// HOME/.config/systemd/user/... (XDG_CONFIG_HOME's default) or
// HOME/.local/share/systemd/user/... . A unit every user's manager reads
// (/etc/systemd/user, /usr/lib/systemd/user) has no one home: "".
func userUnitHome(u *Unit) (home string, user bool) {
	abs, err := filepath.Abs(u.path())
	if err != nil {
		return "", false
	}
	for _, mark := range []string{"/.config/systemd/user/", "/.local/share/systemd/user/"} {
		if i := strings.Index(abs, mark); i > 0 {
			return abs[:i], true
		}
	}
	user = strings.Contains(abs, "/systemd/user/") || strings.Contains(abs, "/systemd/user.control/")
	return "", user
}

// env is the value of the unit's Environment= assignment of name.
func (so SocketOptions) env(name string) string {
	if so.Unit == nil {
		return ""
	}
	v := ""
	for _, d := range so.Unit.List("Service", "Environment") {
		for _, w := range splitEnvWords(d.Value) {
			if k, val, ok := strings.Cut(w, "="); ok && k == name {
				v = val
			}
		}
	}
	return v
}

// specifierDirs are the specifiers systemd expands to an absolute
// directory (systemd.unit(5), "Specifiers": %t runtime, %S state, %C
// cache, %L logs, %E configuration directory, %h home, %T and %V
// temporary directories).
var specifierDirs = []string{"%t", "%S", "%C", "%L", "%E", "%h", "%T", "%V"}

// unixPathOK says whether a unix socket path can go into ListenStream=:
// an absolute path, or with specifiers one under a specifier's
// directory.
func unixPathOK(path string, specifiers bool) bool {
	if filepath.IsAbs(path) {
		return true
	}
	if !specifiers {
		return false
	}
	for _, d := range specifierDirs {
		if path == d || strings.HasPrefix(path, d+"/") {
			return true
		}
	}
	return false
}

// socketPresets lists the presets whose daemons take inherited sockets
// (signals.Preset.Sockets), for the refusal message.
func socketPresets() string {
	var names []string
	for _, p := range signals.Presets() {
		if p.Sockets != signals.SocketsNone && p.Sockets != signals.SocketsUnknown {
			names = append(names, p.Name)
		}
	}
	return strings.Join(names, ", ")
}

// SocketListens returns the sockets for the daemon argv runs (its preset
// p), read from its configuration or flags. A *SocketError says the
// daemon cannot take them as it is.
//
// How the daemon takes them is its preset's Sockets (signals): nginx's
// listen directives and HAProxy's bind fd@N lines are read; gunicorn,
// puma and uWSGI's binds too. Other daemons that read LISTEN_FDS, and
// daemons graceshim knows nothing about, need --listen; a daemon that
// cannot take them is refused.
func SocketListens(argv []string, p signals.Preset, so SocketOptions) ([]Listen, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("missing command")
	}
	given, err := givenListens(so.Listen)
	if err != nil {
		return nil, err
	}
	var found []Listen
	name := filepath.Base(argv[0])
	switch {
	case p.Sockets == signals.SocketsNone:
		return nil, socketErrorf("--socket: %s (preset %s) cannot take listening sockets from systemd, it binds its own; run it without --socket (the presets that can: %s)", name, p.Name, socketPresets())
	case p.Sockets == signals.SocketsNginxEnv:
		found, err = nginxListens(so.Root, argv)
	case p.Sockets == signals.SocketsFDBind:
		return haproxyListens(so.Root, argv, given, so.workDir())
	case p.Name == "gunicorn":
		found, err = gunicornListens(so.Root, argv, so)
	case p.Name == "puma":
		found, err = pumaListens(so.Root, argv, so)
	case p.Name == "uwsgi":
		found, err = uwsgiListens(so.Root, argv, so.Specifiers, so.workDir())
	case len(given) > 0:
		return given, nil
	case p.Sockets == signals.SocketsListenFDs:
		return nil, socketErrorf("--socket: graceshim does not read where %s listens: pass --listen ADDR once per socket, in the order %s should get them", name, name)
	default:
		return nil, socketErrorf("--socket: graceshim does not know whether %s (preset %s) takes sockets from systemd: pass --listen ADDR (once per socket) if it does (sd_listen_fds(3), LISTEN_FDS), or run it without --socket", name, p.Name)
	}
	var se *SocketError
	if errors.As(err, &se) && se.unread && len(given) > 0 {
		return given, nil
	}
	if err != nil {
		return nil, err
	}
	if len(found) == 0 {
		return nil, socketErrorf("--socket: found no address %s listens on", filepath.Base(argv[0]))
	}
	if len(given) > 0 && !sameAddrs(given, found) {
		return nil, socketErrorf("--socket: --listen %s does not match where %s listens (%s): the daemon would bind its own sockets beside systemd's; fix one or the other", joinAddrs(given), filepath.Base(argv[0]), describeListens(found))
	}
	return found, nil
}

// givenListens checks --listen addresses.
func givenListens(addrs []string) ([]Listen, error) {
	var out []Listen
	for _, a := range addrs {
		addr, err := listenStream(a)
		if err != nil {
			return nil, fmt.Errorf("--listen %q: %w", a, err)
		}
		out = append(out, Listen{Addr: addr, From: "--listen"})
	}
	return out, nil
}

// listenStream checks an address for ListenStream=: IP:PORT, [IPv6]:PORT
// or an absolute path (systemd.socket(5) also reads a bare port as
// dual-stack IPv6, which is written out as [::]:PORT to say so).
func listenStream(a string) (string, error) {
	if strings.HasPrefix(a, "/") {
		return filepath.Clean(a), nil
	}
	if n, err := strconv.Atoi(a); err == nil {
		if n < 1 || n > 65535 {
			return "", fmt.Errorf("port out of range")
		}
		return "[::]:" + a, nil
	}
	ap, err := netip.ParseAddrPort(a)
	if err != nil {
		return "", fmt.Errorf("want IP:PORT, [IPv6]:PORT or an absolute path to a unix socket")
	}
	if ap.Port() == 0 {
		return "", fmt.Errorf("port 0 is no fixed address")
	}
	return ap.String(), nil
}

func sameAddrs(a, b []Listen) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[string]bool{}
	for _, l := range a {
		seen[l.Addr] = true
	}
	for _, l := range b {
		if !seen[l.Addr] {
			return false
		}
	}
	return true
}

func joinAddrs(ls []Listen) string {
	var s []string
	for _, l := range ls {
		s = append(s, l.Addr)
	}
	return strings.Join(s, " ")
}

func describeListens(ls []Listen) string {
	var s []string
	for _, l := range ls {
		s = append(s, l.Addr+" from "+l.From)
	}
	return strings.Join(s, ", ")
}

// dedupe keeps the first of each address, and the larger backlog.
func dedupe(ls []Listen) []Listen {
	var out []Listen
	at := map[string]int{}
	for _, l := range ls {
		if i, ok := at[l.Addr]; ok {
			out[i].Backlog = max(out[i].Backlog, l.Backlog)
			if out[i].V6Only == "" {
				out[i].V6Only = l.V6Only
			}
			continue
		}
		at[l.Addr] = len(out)
		out = append(out, l)
	}
	return out
}

// hostPort reads HOST:PORT, [IPv6]:PORT, HOST or :PORT as daemons write
// them, with def the port when none is given; "", "*" and "0.0.0.0" are
// IPv4's wildcard (nginx's "*:80", HAProxy's ":80"), localhost is
// 127.0.0.1. Host names are refused: a socket unit binds an address.
func hostPort(s string, def int) (string, error) {
	host, port := s, strconv.Itoa(def)
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", fmt.Errorf("%q: unclosed [", s)
		}
		host = s[1:end]
		if rest := s[end+1:]; rest != "" {
			if !strings.HasPrefix(rest, ":") {
				return "", fmt.Errorf("%q: want [IPv6]:PORT", s)
			}
			port = rest[1:]
		}
	case strings.Count(s, ":") == 1:
		host, port, _ = strings.Cut(s, ":")
	case strings.Count(s, ":") > 1:
		return "", fmt.Errorf("%q: write an IPv6 address in brackets", s)
	default:
		if _, err := strconv.Atoi(s); err == nil {
			host, port = "", s
		}
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("%q: no port number", s)
	}
	switch host {
	case "", "*":
		host = "0.0.0.0"
	case "localhost":
		host = "127.0.0.1"
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return "", fmt.Errorf("%q: %s is a host name; a socket unit binds an address: write the address instead", s, host)
	}
	return netip.AddrPortFrom(ip, uint16(n)).String(), nil
}

// SocketUnitOptions describe a socket unit.
type SocketUnitOptions struct {
	// Service is the service unit's name (nginx.service).
	Service string
	// Daemon names the daemon, for the description and comments.
	Daemon  string
	Listens []Listen
	// SystemdVersion is the systemd the unit is for.
	SystemdVersion int
	// Wait is how long a queued client may wait during a restart
	// (Options.QueueWait), "" when not known.
	Wait string
}

// GenerateSocket writes the socket unit that holds ls for the service.
func GenerateSocket(o SocketUnitOptions) ([]byte, error) {
	if len(o.Listens) == 0 {
		return nil, fmt.Errorf("no socket to listen on")
	}
	// One Backlog= for every socket of the unit: the daemon's own when it
	// asks for more than DefaultBacklog, never less, since the queue is
	// where clients wait out a restart (a daemon that listen()s again
	// with its own backlog, as gunicorn does, still gets its figure).
	backlog, from := DefaultBacklog, ""
	for _, l := range o.Listens {
		if l.Backlog > backlog {
			backlog, from = l.Backlog, l.From
		}
	}
	v6 := ""
	for _, l := range o.Listens {
		switch {
		case l.V6Only == "":
		case v6 == "":
			v6 = l.V6Only
		case v6 != l.V6Only:
			return nil, socketErrorf("--socket: %s sets ipv6only both on and off; one socket unit has one BindIPv6Only=: use one of them", o.Daemon)
		}
	}
	descV, err := escapeText("--description", o.Daemon+" listening sockets, held by systemd across restarts")
	if err != nil {
		return nil, err
	}
	opts := []*unit.UnitOption{unit.NewUnitOption("Unit", "Description", descV)}
	var srcs []string
	for _, l := range o.Listens {
		opts = append(opts, unit.NewUnitOption("Socket", "ListenStream", l.Addr))
		srcs = append(srcs, l.Addr+" ("+l.From+")")
	}
	opts = append(opts, unit.NewUnitOption("Socket", "Backlog", strconv.Itoa(backlog)))
	if v6 != "" {
		// One setting for every socket of the unit (systemd.socket(5));
		// CUPS's org.cups.cupsd.socket sets ipv6-only beside an IPv4
		// socket of the same port, as nginx's default ipv6only=on needs.
		opts = append(opts, unit.NewUnitOption("Socket", "BindIPv6Only", map[string]string{"only": "ipv6-only", "both": "both"}[v6]))
	}
	if addr := specificAddr(o.Listens); addr != "" {
		// sockets.target comes early at boot, before the network is up:
		// systemd.socket(5), ListenStream=: "If an IP address is used
		// here, it is often desirable to listen on it before the
		// interface it is configured on is up and running ... it is
		// recommended to set the FreeBind= option".
		opts = append(opts, unit.NewUnitOption("Socket", "FreeBind", "yes"))
	}
	opts = append(opts, unit.NewUnitOption("Install", "WantedBy", "sockets.target"))

	backlogWhy := fmt.Sprintf("Backlog=%d: clients wait in this queue while the old server drains and the next one starts; beyond it the kernel drops their SYNs and they retry after 1 s, 3 s, ...; the kernel caps it at net.core.somaxconn (4096 by default since Linux 5.4).", backlog)
	if from != "" {
		backlogWhy = fmt.Sprintf("Backlog=%d: the daemon's own backlog (%s), above graceshim's %d; clients wait in this queue while the old server drains and the next one starts.", backlog, from, DefaultBacklog)
	}
	lines := []string{
		fmt.Sprintf("Generated by graceshim for systemd %d; regenerate rather than edit (graceshim unit --socket).", o.SystemdVersion),
		fmt.Sprintf("systemd holds these sockets and passes them to %s (LISTEN_FDS, \"in the order of configuration\", systemd.socket(5): descriptor 3 is the first ListenStream=); graceshim passes them on to %s. While %s restarts they stay open: a client that connects meanwhile waits instead of being refused.", o.Service, o.Daemon, o.Daemon),
		"Listening on " + strings.Join(srcs, ", ") + ".",
		backlogWhy,
		waitLine(o),
		fmt.Sprintf("While this socket is active, the next connection starts %s again after a stop: stop the socket too (systemctl stop %s) to refuse connections.", o.Service, strings.TrimSuffix(o.Service, ".service")+".socket"),
		fmt.Sprintf("No PartOf=%s: it would pass a restart of the service on to the socket and close it for the restart it is kept for.", o.Service),
	}
	if addr := specificAddr(o.Listens); addr != "" {
		lines = append(lines, fmt.Sprintf("FreeBind=yes: %s is an interface's address, and sockets.target starts before the network is up (systemd.socket(5) recommends it).", addr))
	}
	if o.Daemon == "puma" {
		lines = append(lines, "puma: set queue_requests false in its config. Measured with puma 5.6.5 in cluster mode: with the default (true), 1 or 2 of about 200 connections made during a restart were accepted and closed unanswered (EOF) in 3 of 4 runs; with false, none.")
	}
	var b strings.Builder
	for _, l := range wrapComment(lines) {
		b.WriteString("# " + l + "\n")
	}
	return render(b.String(), opts)
}

// socketHeader is the line a service unit's header gets for its socket.
func socketHeader(o Options) string {
	name := filepath.Base(o.Argv[0])
	return fmt.Sprintf("Requires=/After=%s: systemd opens the listening sockets before %s starts and keeps them across its restarts; graceshim passes them on to %s. Stopping the socket stops this service too (Requires=).", o.Socket, name, name)
}

// socketDeps are the [Unit] lines of a service that takes o.Socket's
// sockets. Requires= starts the socket with the service, so the daemon
// gets the sockets even when the service is started first (puma's
// docs/systemd.md: "The Requires directive ... ensures the socket is
// started before the service" together with the ordering); After= orders
// the service after it. A socket unit gets Before= its service
// implicitly (systemd.socket(5)), but no Requires=.
func socketDeps(o Options) []*unit.UnitOption {
	if o.Socket == "" {
		return nil
	}
	return []*unit.UnitOption{
		unit.NewUnitOption("Unit", "Requires", o.Socket),
		unit.NewUnitOption("Unit", "After", o.Socket),
	}
}

// DaemonArgv is the daemon's own command line in argv: past env and
// sh -c 'exec ...' wrappers.
func DaemonArgv(argv []string) []string {
	if d := daemonArgv(argv); len(d) > 0 {
		return d
	}
	return argv
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)`)

// ExpandUnitEnv replaces $VAR and ${VAR} in argv with the values the
// unit's Environment= lines give (Debian's haproxy.service: -f $CONFIG
// with Environment="CONFIG=/etc/haproxy/haproxy.cfg"), for reading the
// daemon's configuration. EnvironmentFile= is not read: a reference it
// would set stays as it is, and the reader says it is only known at run
// time.
func ExpandUnitEnv(u *Unit, argv []string) []string {
	env := map[string]string{}
	for _, d := range u.List("Service", "Environment") {
		for _, w := range splitEnvWords(d.Value) {
			if k, v, ok := strings.Cut(w, "="); ok {
				env[k] = v
			}
		}
	}
	out := make([]string, len(argv))
	for i, a := range argv {
		out[i] = envRef.ReplaceAllStringFunc(a, func(ref string) string {
			m := envRef.FindStringSubmatch(ref)
			name := m[1] + m[2]
			if v, ok := env[name]; ok {
				return v
			}
			return ref
		})
	}
	return out
}

// splitEnvWords splits an Environment= value into its assignments:
// blank-separated, double or single quotes grouping.
func splitEnvWords(s string) []string {
	var out []string
	var b strings.Builder
	var q byte
	in := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case q != 0 && c == q:
			q = 0
		case q != 0:
			b.WriteByte(c)
		case c == '"' || c == '\'':
			q, in = c, true
		case c == ' ' || c == '\t':
			if in {
				out = append(out, b.String())
				b.Reset()
				in = false
			}
		default:
			b.WriteByte(c)
			in = true
		}
	}
	if in {
		out = append(out, b.String())
	}
	return out
}

// newSocketDeps are the socketDeps u does not have yet: converting a
// converted unit again adds nothing.
func newSocketDeps(u *Unit, o Options) []*unit.UnitOption {
	var out []*unit.UnitOption
	for _, d := range socketDeps(o) {
		have := false
		for _, x := range u.List("Unit", d.Name) {
			if slices.Contains(strings.Fields(x.Value), d.Value) {
				have = true
			}
		}
		if !have {
			out = append(out, d)
		}
	}
	return out
}

// fdBindTest says d is HAProxy's own config test (haproxy -c) in a unit
// converted with a socket, and drops it with a note. systemd runs
// ExecReload= and ExecStartPre= (HAProxy's own contrib/systemd unit of
// 1.5-1.7, Fedora's) without the socket unit's sockets, so HAProxy's check of
// "bind fd@3" fails ("cannot use file descriptor '3' : Socket operation
// on non-socket", measured with Debian's haproxy.service converted this
// way); graceshim reload runs the same test with the sockets.
func (c *converter) fdBindTest(d Directive) bool {
	if c.o.Socket == "" || c.o.Preset.Sockets != signals.SocketsFDBind {
		return false
	}
	line, err := SplitExec(d.Value)
	if err != nil {
		return false
	}
	argv := line.Argv()
	if len(argv) == 0 || !c.o.Preset.Runs(argv[0]) || !slices.Contains(argv[1:], "-c") {
		return false
	}
	if d.Name == "ExecStartPre" {
		// Before every start, with no socket passed: the check would
		// fail and the service never start.
		c.note("dropped ExecStartPre=%s: systemd runs it without %s's sockets, so HAProxy's check of bind fd@N fails and the service would never start; HAProxy checks its configuration as it starts, and graceshim reload before a reload", d.Value, c.o.Socket)
		return true
	}
	c.note("dropped ExecReload=%s: systemd runs it without %s's sockets, so HAProxy's check of bind fd@N fails; graceshim reload tests the configuration with them", d.Value, c.o.Socket)
	return true
}

// specificAddr returns the first address of ls that is an IP of an
// interface (not a wildcard, not loopback), "" when there is none.
func specificAddr(ls []Listen) string {
	for _, l := range ls {
		ap, err := netip.ParseAddrPort(l.Addr)
		if err == nil && !ap.Addr().IsUnspecified() && !ap.Addr().IsLoopback() {
			return l.Addr
		}
	}
	return ""
}

// QueueWait says how long a client queued on the socket may wait during
// a restart: the service's stop timeout (the old server's drain, bounded
// by graceshim's drain delay, --drain-timeout and kill timeout) plus its
// start timeout, as the unit sets them, for the socket unit's comment.
func (o Options) QueueWait() string {
	o.setDefaults()
	stop := "TimeoutStopSec=0 (no bound)"
	if d, _, ok := o.StopTimeout(); ok {
		stop = "TimeoutStopSec=" + formatSpan(d)
	}
	if o.keptStop != "" {
		stop = o.keptStop
	}
	start := "TimeoutStartSec=" + formatSpan(o.StartTimeout())
	if o.keptStart != "" {
		start = o.keptStart
	}
	return stop + " + " + start
}

func waitLine(o SocketUnitOptions) string {
	if o.Wait == "" {
		return fmt.Sprintf("A client queued during a restart waits for the old %s's drain and the new one's start.", o.Daemon)
	}
	return fmt.Sprintf("A client queued during a restart waits for the old %s's drain and the new one's start: at most %s of %s; a lower --drain-timeout shortens it.", o.Daemon, o.Wait, o.Service)
}
