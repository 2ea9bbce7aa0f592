package signals

import "strings"

// Sockets says how a daemon takes listening sockets it inherits: the
// sockets of a systemd .socket unit (LISTEN_FDS, sd_listen_fds(3)), or the
// ones graceshim kept in systemd's file descriptor store across a restart.
// The supervisor hands them over accordingly (supervisor/sockets.go).
//
// What each preset's value rests on (Debian 12's packages):
//   - nginx, openresty: src/core/nginx.c ngx_add_inherited_sockets reads
//     NGINX="3;4;"; measured with nginx 1.22.1 ("using inherited sockets
//     from "3;"", served). With the variable set nginx does not daemonize,
//     so it ignores USR2 (measured: "the changing binary signal is
//     ignored"): no binary upgrade while it runs on inherited sockets.
//   - haproxy: bind fd@N (configuration.html section 11); 2.6 reads no
//     LISTEN_FDS. Measured with 2.6.12: served on fd@3; a reload (USR2
//     with -Ws) keeps it.
//   - gunicorn: gunicorn/arbiter.py start() and systemd.py listen_fds
//     (20.1: it then serves the inherited sockets and ignores --bind;
//     measured, and restarted behind a .socket unit by e2e/restart_test.go).
//   - unicorn: unicorn/http_server.rb inherit_listeners! "emulate
//     sd_listen_fds() for systemd"; measured with 6.0 ("inherited
//     addr=127.0.0.1:P fd=3").
//   - puma: lib/puma/binder.rb create_activated_fds (5.x); a socket is
//     used where a --bind names its address (or with
//     --bind-to-activated-sockets), others are closed; measured with
//     5.6.5 ("* Activated tcp://127.0.0.1:P").
//   - uwsgi: core/socket.c uwsgi_setup_systemd ("- SystemD socket
//     activation detected -"); measured with 2.0.21: the sockets speak the
//     uwsgi protocol unless --protocol http, and --http-socket does not
//     apply to them.
//   - lighttpd: server.systemd-socket-activation = "enable" (1.4.53+);
//     measured with 1.4.69.
//   - none: Debian's apache2 is built without mod_systemd's socket
//     activation, php-fpm takes only its own FPM_SOCKETS, Caddy 2.6 has no
//     fd listener (2.9 adds one), PostgreSQL, Redis 7.0 and memcached bind
//     their own; Sidekiq and Celery do not listen.
type Sockets int

const (
	// SocketsUnknown: graceshim does not know whether the daemon takes
	// inherited sockets. LISTEN_FDS is passed on as it is, for a daemon
	// that calls sd_listen_fds(3) itself.
	SocketsUnknown Sockets = iota
	// SocketsListenFDs: the daemon reads LISTEN_FDS and LISTEN_PID
	// itself (sd_listen_fds(3) or its own copy of it).
	SocketsListenFDs
	// SocketsNginxEnv: the daemon takes them from its NGINX environment
	// variable, "3;4;", the mechanism of nginx's binary upgrade
	// (src/core/nginx.c ngx_add_inherited_sockets), and uses those its
	// listen directives name.
	SocketsNginxEnv
	// SocketsFDBind: the daemon's config names them, bind fd@3 (HAProxy,
	// https://docs.haproxy.org/2.6/configuration.html#11: "fd@<n>").
	SocketsFDBind
	// SocketsNone: the daemon cannot take inherited sockets; it binds its
	// own, and a socket held by systemd would conflict with them.
	SocketsNone
)

// String names the way, for messages.
func (s Sockets) String() string {
	switch s {
	case SocketsListenFDs:
		return "LISTEN_FDS"
	case SocketsNginxEnv:
		return "the NGINX environment variable"
	case SocketsFDBind:
		return "bind fd@N in its config"
	case SocketsNone:
		return "none"
	}
	return "unknown"
}

// uwsgiSocketsCaveat: uWSGI serves the sockets it inherits with its own
// uwsgi protocol, whatever --http-socket says (core/socket.c
// uwsgi_setup_systemd adds them as new sockets, and the configured socket
// 0 is then not bound); --protocol http makes them speak HTTP. Measured
// with 2.0.21: with --http-socket on the inherited address, curl got an
// empty reply and uwsgi logged "invalid request block size".
func uwsgiSocketsCaveat(argv []string) string {
	http, proto := false, false
	for _, a := range argv[1:] {
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		switch {
		case !strings.HasPrefix(a, "-"):
		case name == "http-socket" || name == "https-socket":
			http = true
		case name == "protocol" || name == "socket-protocol":
			proto = true
		}
	}
	if http && !proto {
		return "uwsgi speaks its uwsgi protocol on inherited sockets, whatever --http-socket says: add --protocol http if HTTP clients connect to them"
	}
	return ""
}
