package supervisor

// Listening sockets the server inherits: a systemd .socket unit's
// (socket activation, sd_listen_fds(3)) or the ones graceshim kept in
// systemd's file descriptor store across a restart (fdstore.go). Holding a
// listening socket outside the server is what keeps a restart from
// refusing anyone: while no server runs, clients wait in the kernel's
// backlog and the next server accepts them.
//
// Each daemon takes them its own way (signals.Preset.Sockets): sd_listen_fds
// (gunicorn, puma, uwsgi, unicorn), nginx's NGINX="3;4;" environment
// variable, HAProxy's "bind fd@3" in its config. nginx and HAProxy still
// decide from their config which sockets they use, so graceshim reads it
// first and refuses to start when the two do not fit (ErrSockets): the
// daemon would fail to bind, or close a socket clients then wait on for
// nothing.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/graceshim/graceshim/signals"
	"github.com/graceshim/graceshim/unitgen/haproxyconf"
)

// ErrSockets marks inherited sockets the server cannot take as they are:
// its preset has no way to take them, or its config does not listen on
// them. Nothing was started.
var ErrSockets = errors.New("inherited sockets do not fit the server")

// socketCheckTimeout bounds the look at the daemon's config (nginx -T).
const socketCheckTimeout = 10 * time.Second

// sockAddr is where a socket listens.
type sockAddr struct {
	stream bool           // SOCK_STREAM; false: a datagram socket
	unix   string         // the path of an AF_UNIX socket ("@name" when abstract), else ""
	ap     netip.AddrPort // an AF_INET or AF_INET6 socket's address
	v6only bool           // an IPv6 socket that takes no IPv4 (IPV6_V6ONLY)
}

func (a sockAddr) String() string {
	s := a.ap.String()
	if a.unix != "" {
		s = "unix:" + a.unix
	}
	if !a.stream {
		s += " (udp)"
	}
	return s
}

// wildcard reports whether a listens on every address of its family.
func (a sockAddr) wildcard() bool { return a.unix == "" && a.ap.Addr().IsUnspecified() }

// same reports whether a and b are the same address, as nginx compares
// them (ngx_cmp_sockaddr: family, address, port).
func (a sockAddr) same(b sockAddr) bool {
	return a.stream == b.stream && a.unix == b.unix && a.ap.Addr().Unmap() == b.ap.Addr().Unmap() && a.ap.Port() == b.ap.Port() && a.ap.Addr().Is4() == b.ap.Addr().Is4()
}

// conflicts reports whether a socket bound to a keeps b from being bound
// (EADDRINUSE): the same port and family with either a wildcard, or an
// IPv6 wildcard that takes IPv4 too (IPV6_V6ONLY off, the default of a
// systemd ListenStream=80, BindIPv6Only=default).
func (a sockAddr) conflicts(b sockAddr) bool {
	if a.unix != "" || b.unix != "" || a.stream != b.stream || a.ap.Port() != b.ap.Port() {
		return a.same(b)
	}
	if a.ap.Addr().Is4() == b.ap.Addr().Is4() {
		return a.same(b) || a.wildcard() || b.wildcard()
	}
	v6, v4 := a, b
	if a.ap.Addr().Is4() {
		v6, v4 = b, a
	}
	_ = v4
	return v6.wildcard() && !v6.v6only
}

// inherited is one socket passed to graceshim.
type inherited struct {
	file *os.File
	fd   int      // its number: graceshim's, then the server's once passed
	name string   // its LISTEN_FDNAMES entry ("" when none)
	addr sockAddr // where it listens
	err  error    // why addr is unknown (not a socket)
}

// stored reports whether graceshim put the socket in the fd store itself.
func (s inherited) stored() bool { return strings.HasPrefix(s.name, fdStoreName) }

// takeInherited takes the sockets systemd passed to graceshim (sd_listen_fds(3):
// LISTEN_PID is graceshim's pid, LISTEN_FDS of them from fd 3 on, named
// by LISTEN_FDNAMES) and unsets the variables, which were meant for
// graceshim, not for whatever else it starts. When LISTEN_FDS is set for
// another process (a shell in ExecStart= that forks graceshim rather than
// exec it: systemd set LISTEN_PID to the shell's pid), it returns no
// sockets and a warning, and marks those fds close-on-exec: passed on,
// they would hold their ports inside the server (which then fails to
// bind them, or listens on a socket it does not know of).
func takeInherited() (socks []inherited, warning string) {
	n, err := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	pid := os.Getenv("LISTEN_PID")
	ok := err == nil && n > 0 && pid == strconv.Itoa(os.Getpid())
	names := strings.Split(os.Getenv("LISTEN_FDNAMES"), ":")
	for _, k := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
		os.Unsetenv(k)
	}
	if !ok {
		if err == nil && n > 0 {
			for fd := 3; fd < 3+n; fd++ {
				// Go opens its own fds close-on-exec: marking one that
				// is not systemd's changes nothing.
				unix.CloseOnExec(fd)
			}
			warning = fmt.Sprintf("LISTEN_FDS=%d is set, but LISTEN_PID=%q is not graceshim's pid %d: the sockets systemd passed are ignored and not handed to the server. ExecStart= must exec graceshim (\"exec graceshim ...\" in a shell), not run it as a child", n, pid, os.Getpid())
		}
		return nil, warning
	}
	out := make([]inherited, n)
	for i := range out {
		fd := 3 + i
		// Not inherited by anything graceshim starts but the server,
		// which gets them through ExtraFiles.
		unix.CloseOnExec(fd)
		out[i].file = os.NewFile(uintptr(fd), "LISTEN_FD_"+strconv.Itoa(fd))
		out[i].fd = fd
		if i < len(names) {
			out[i].name = names[i]
		}
		out[i].addr, out[i].err = socketAddr(fd)
	}
	return out, ""
}

// socketAddr reads where the socket fd listens.
func socketAddr(fd int) (sockAddr, error) {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return sockAddr{}, fmt.Errorf("fd %d is not a socket: %w", fd, err)
	}
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return sockAddr{}, fmt.Errorf("cannot read the type of socket %d: %w", fd, err)
	}
	a := sockAddr{stream: typ == unix.SOCK_STREAM}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		a.ap = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		a.ap = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port))
		v, err := unix.GetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY)
		a.v6only = err == nil && v == 1
	case *unix.SockaddrUnix:
		a.unix = sa.Name
		if a.unix == "" {
			a.unix = "(unnamed)"
		} else if a.unix[0] == 0 {
			a.unix = "@" + a.unix[1:]
		}
	default:
		return sockAddr{}, fmt.Errorf("socket %d is neither IP nor unix", fd)
	}
	return a, nil
}

// passSockets hands the sockets systemd passed to graceshim on to the
// server the way its preset says, after checking that the server's config
// fits them. It returns the sockets passed, whose files (graceshim's
// copies) are closed once the server started; an error (ErrSockets) means
// nothing may be started.
func passSockets(ctx context.Context, cmd *exec.Cmd, opts Options) ([]inherited, error) {
	socks, warning := takeInherited()
	if warning != "" {
		opts.Log.Warnf("%s", warning)
	}
	cmd.Env = withoutListenEnv(cmd.Env)
	socks = dropForeignStored(socks, opts)
	if len(socks) == 0 {
		return nil, nil
	}
	p := opts.Preset
	name := p.Name
	if !p.Runs(opts.Argv[0]) && p.Sockets != signals.SocketsUnknown {
		name = opts.Argv[0] + " (" + p.Name + ")"
	}
	var keep []inherited
	switch p.Sockets {
	case signals.SocketsNone:
		closeAll(socks)
		return nil, fmt.Errorf("%w: %s cannot take the %d listening sockets systemd passed (%s): it binds its own, which the sockets systemd holds would conflict with; run it without a .socket unit and FileDescriptorStoreMax=",
			ErrSockets, name, len(socks), describeSockets(socks))
	case signals.SocketsNginxEnv:
		var err error
		if keep, err = checkNginx(ctx, socks, opts); err != nil {
			closeAll(socks)
			return nil, err
		}
		if err := nonBlocking(keep); err != nil {
			closeAll(socks)
			return nil, err
		}
		// src/core/nginx.c ngx_add_inherited_sockets: the fds, each
		// followed by ';' (or ':'); a trailing one without it is ignored.
		var v strings.Builder
		for i := range keep {
			fmt.Fprintf(&v, "%d;", 3+i)
		}
		if len(keep) > 0 {
			// Even an empty NGINX= would make nginx take itself for a
			// new binary (ngx_inherited) and not daemonize.
			cmd.Env = append(cmd.Env, "NGINX="+v.String())
		}
	case signals.SocketsFDBind:
		if err := checkHAProxy(socks, opts); err != nil {
			closeAll(socks)
			return nil, err
		}
		if err := nonBlocking(socks); err != nil {
			closeAll(socks)
			return nil, err
		}
		// The config names them by number: they keep the numbers systemd
		// gave them.
		keep = socks
	default:
		keep = socks
		if c := p.SocketsCaveat; c != nil && p.Runs(opts.Argv[0]) {
			if caveat := c(opts.Argv); caveat != "" {
				opts.Log.Warnf("%s", caveat)
			}
		}
		if p.Sockets == signals.SocketsUnknown {
			opts.Log.Infof("passing %d listening sockets on as LISTEN_FDS (%s); graceshim does not know whether %s takes them", len(socks), describeSockets(socks), opts.Argv[0])
		}
		names := make([]string, len(keep))
		named := false
		for i, s := range keep {
			names[i] = s.name
			named = named || s.name != ""
		}
		cmd.Env = append(cmd.Env, "LISTEN_FDS="+strconv.Itoa(len(keep)))
		if named {
			// systemd always names them (the socket unit's name by
			// default); a passer that does not leaves the variable out.
			cmd.Env = append(cmd.Env, "LISTEN_FDNAMES="+strings.Join(names, ":"))
		}
		// sd_listen_fds checks LISTEN_PID against the server's own pid,
		// known only once it runs: a shell sets it and execs the server.
		cmd.Args = append([]string{"sh", "-c", `LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@"`, cmd.Path}, cmd.Args[1:]...)
		cmd.Path = "/bin/sh"
	}
	files := make([]*os.File, len(keep))
	for i := range keep {
		files[i] = keep[i].file
		keep[i].fd = 3 + i
	}
	cmd.ExtraFiles = files
	if len(keep) > 0 {
		opts.Log.Infof("%s takes %d inherited listening sockets through %s: %s", name, len(keep), p.Sockets, describeSockets(keep))
	}
	return keep, nil
}

// dropForeignStored drops the sockets graceshim stored in systemd's fd
// store for a preset that takes them by address (nginx, see fdstore.go)
// when the server now is another: the fd store outlives a daemon-reload
// and a restart, so a unit whose ExecStart= changed from nginx to another
// daemon gets nginx's old sockets back. They are graceshim's, not a
// .socket unit's: passed on as LISTEN_FDS, the new server would serve
// nginx's old port; refused, the unit could not start until it was
// stopped for good. They are closed and removed from the store, so the
// old port refuses. Measured with systemd 252 (TestRestartFDStoreOtherDaemon).
func dropForeignStored(socks []inherited, opts Options) []inherited {
	if opts.Preset.Sockets == signals.SocketsNginxEnv {
		return socks
	}
	keep := socks[:0:0]
	for _, s := range socks {
		if !s.stored() {
			keep = append(keep, s)
			continue
		}
		opts.Log.Infof("dropping the socket %s kept in systemd's fd store for an earlier nginx: %s does not take sockets from the store", s.addr, opts.Argv[0])
		s.file.Close()
		removeStored(s.name, opts.Log)
	}
	return keep
}

// withoutListenEnv drops the sd_listen_fds variables from env: passSockets
// sets them again where the server reads them.
func withoutListenEnv(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, "LISTEN_PID=") && !strings.HasPrefix(kv, "LISTEN_FDS=") && !strings.HasPrefix(kv, "LISTEN_FDNAMES=") {
			out = append(out, kv)
		}
	}
	return out
}

// nonBlocking puts the sockets in non-blocking mode (O_NONBLOCK, which
// the socket's every descriptor shares, systemd's too). systemd passes
// them blocking (systemd.socket(5), NonBlocking= defaults to false), as
// sd_listen_fds(3) daemons expect; nginx sets O_NONBLOCK only on the
// sockets it opens itself (src/core/ngx_connection.c
// ngx_open_listening_sockets), as its binary upgrade passes sockets that
// are non-blocking already. Measured with a blocking one: of the workers
// woken for one connection, the losers block in accept(2) (wchan
// inet_csk_accept) and that worker never finishes a graceful stop.
//
// os.File leaves the mode alone: NewFile of a blocking descriptor does
// not register it with the poller, and Fd (which os.StartProcess calls)
// resets only a mode it set itself.
func nonBlocking(socks []inherited) error {
	for _, s := range socks {
		if err := unix.SetNonblock(s.fd, true); err != nil {
			return fmt.Errorf("%w: cannot make socket %s non-blocking: %v", ErrSetup, s.addr, err)
		}
	}
	return nil
}

func closeAll(socks []inherited) {
	for _, s := range socks {
		s.file.Close()
	}
}

// describeSockets lists sockets as "fd 3 127.0.0.1:8080, fd 4 [::]:443".
func describeSockets(socks []inherited) string {
	parts := make([]string, len(socks))
	for i, s := range socks {
		fd := s.fd
		if s.err != nil {
			parts[i] = fmt.Sprintf("fd %d (not a socket)", fd)
			continue
		}
		parts[i] = fmt.Sprintf("fd %d %s", fd, s.addr)
	}
	return strings.Join(parts, ", ")
}

// notSockets fails for the first inherited fd that is not a socket, or
// is a connected stream socket rather than a listening one: what a
// .socket unit with Accept=yes passes, one connection per service
// instance. nginx takes such a socket for a listener without a word
// (measured with 1.22: "using inherited sockets from "3;"", then nothing
// listens on the port and every client is refused), and HAProxy's fd@N
// wants a bound socket, not a connection. Called before the sockets get
// the server's numbers: s.fd is graceshim's.
func notSockets(socks []inherited) error {
	for _, s := range socks {
		if s.err != nil {
			return fmt.Errorf("%w: %v", ErrSockets, s.err)
		}
		if !s.addr.stream || s.addr.unix == "" && !s.addr.ap.IsValid() {
			continue
		}
		if peer, err := unix.Getpeername(s.fd); err == nil && peer != nil {
			if acc, err := unix.GetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err == nil && acc == 0 {
				return fmt.Errorf("%w: fd %d (%s) is a connection, not a listening socket: a .socket unit with Accept=yes passes one connection per service instance; the server needs Accept=no (the default)", ErrSockets, s.fd, s.addr)
			}
		}
	}
	return nil
}

// socketCheck holds what a reload needs to keep the inherited sockets the
// server took: their addresses, and for HAProxy copies of them, since its
// config test (haproxy -c) opens every fd@N the config binds (measured with
// 2.6.12: without them "cannot use file descriptor '3' : Socket operation
// on non-socket", and the reload was refused). HAProxy's sockets come from
// a .socket unit, which holds them anyway, so the copies keep nothing
// open that would be closed otherwise.
type socketCheck struct {
	preset signals.Preset
	argv   []string
	socks  []inherited // as the server has them (fd is its number)
	files  []*os.File  // copies for HAProxy's config test, at fd 3, 4, ...
	env    []string    // the server's environment, which HAProxy's config may name
}

// newSocketCheck returns the check for the sockets passed, nil when none
// were or the preset picks nothing by config.
func newSocketCheck(opts Options, passed []inherited) *socketCheck {
	if len(passed) == 0 || !opts.Preset.Runs(opts.Argv[0]) {
		return nil
	}
	c := &socketCheck{preset: opts.Preset, argv: opts.Argv, env: childEnv(opts.Env)}
	if opts.Preset.Sockets == signals.SocketsFDBind {
		c.env = haproxyconf.Env(opts.Argv, c.env)
	}
	switch opts.Preset.Sockets {
	case signals.SocketsNginxEnv:
	case signals.SocketsFDBind:
		for _, s := range passed {
			fd, err := unix.FcntlInt(uintptr(s.fd), unix.F_DUPFD_CLOEXEC, 3)
			if err != nil {
				opts.Log.Warnf("cannot keep a copy of %s for haproxy's config test: %v", s.addr, err)
				c.closeFiles()
				return nil
			}
			c.files = append(c.files, os.NewFile(uintptr(fd), "config-test-"+s.addr.String()))
		}
	default:
		return nil
	}
	for _, s := range passed {
		c.socks = append(c.socks, inherited{fd: s.fd, name: s.name, addr: s.addr})
	}
	return c
}

func (c *socketCheck) closeFiles() {
	for _, f := range c.files {
		f.Close()
	}
	c.files = nil
}

// Close releases the copies.
func (c *socketCheck) Close() {
	if c != nil {
		c.closeFiles()
	}
}

// testArgv returns the config test a reload runs: nginx -T (test and
// dump) in place of -t, so that the listen directives can be read from
// its output.
func (c *socketCheck) testArgv(test []string) []string {
	if c == nil || c.preset.Sockets != signals.SocketsNginxEnv {
		return test
	}
	out := make([]string, len(test))
	for i, a := range test {
		if a == "-t" {
			a = "-T"
		}
		out[i] = a
	}
	return out
}

// nginx reports whether the server is nginx on inherited sockets, which
// does not daemonize and so ignores USR2: src/core/nginx.c skips
// ngx_daemon when ngx_inherited, and src/os/unix/ngx_process.c ignores
// the changing binary signal while the parent is the one it started with
// (measured: "the changing binary signal is ignored").
func (c *socketCheck) nginx() bool {
	return c != nil && c.preset.Sockets == signals.SocketsNginxEnv
}

// testFiles are the files the config test gets from fd 3 on.
func (c *socketCheck) testFiles() []*os.File {
	if c == nil {
		return nil
	}
	return c.files
}

// refuse says why the configuration a reload would load does not fit the
// sockets the server took ("" when it does): nginx would close a socket no
// listen directive names (its clients would then wait for nothing), or
// fail to bind a directive beside one; HAProxy would lose a socket no
// "bind fd@N" names. out is the config test's output (nginx -T's dump);
// truncated is true when it was cut short, and then nginx's is not judged.
func (c *socketCheck) refuse(ctx context.Context, out string, truncated bool, log *Logger) string {
	if c == nil {
		return ""
	}
	var errs, warns []string
	switch c.preset.Sockets {
	case signals.SocketsNginxEnv:
		if truncated {
			log.Warnf("nginx -T's output is longer than graceshim reads: the reload's listen directives are not checked against the inherited sockets")
			return ""
		}
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		listens, err := parseNginxListens(ctx, out, os.Geteuid() == 0)
		if err != nil {
			return fmt.Sprintf("cannot read nginx's listen directives: %v", err)
		}
		var keep, drop []inherited
		keep, drop, errs, warns = matchNginx(c.socks, listens, true)
		if len(errs) == 0 && len(drop) > 0 {
			for _, s := range drop {
				// graceshim's own stored socket: nginx closes it at the
				// reload and the fd store lets it go once the reload is
				// done (fdStore.keep), so the port refuses, as the config
				// says.
				log.Infof("the reload drops the kept socket %s (fd %d): no listen directive of nginx's names it any more", s.addr, s.fd)
			}
			// Gone from nginx after this reload: a later reload's
			// listen may take its address.
			c.socks = keep
		}
	case signals.SocketsFDBind:
		var text strings.Builder
		for _, f := range haproxyConfigFiles(c.argv) {
			b, err := os.ReadFile(f)
			if err != nil {
				return fmt.Sprintf("cannot read haproxy's config %s: %v", f, err)
			}
			text.Write(b)
			text.WriteByte('\n')
		}
		errs, warns = matchHAProxy(c.socks, haproxyBinds(text.String(), c.env, haproxyconf.CC(c.argv[0])))
	}
	for _, w := range warns {
		log.Warnf("%s", w)
	}
	return strings.Join(errs, "; ")
}
