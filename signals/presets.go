package signals

import (
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
)

// Preset is how one daemon wants to be signalled.
//
// Graceful signals go to the master process only: the master tells its
// workers. Signalling the whole group at the graceful step is wrong for most
// daemons (PostgreSQL backends take QUIT as a crash, nginx workers take TERM
// as a fast exit); the group is signalled only at the final kill.
type Preset struct {
	// Name is the preset's name as given to --preset.
	Name string
	// Commands are the executable names the preset is picked for when no
	// --preset is given (compared with the base name of argv[0]).
	Commands []string
	// Graceful stops the daemon after in-flight work is done.
	Graceful syscall.Signal
	// PreStop, when set, is sent before Graceful (Sidekiq's TSTP: stop
	// fetching new jobs).
	PreStop syscall.Signal
	// Fast stops the daemon without waiting for in-flight work. It is what
	// graceshim escalates to when a drain bound is reached.
	Fast syscall.Signal
	// GracefulAlso and FastAlso are the daemon's other signals that stop
	// it gracefully or fast (nginx: INT is fast as TERM is). Lint judges a
	// unit's stop signal by them; graceshim sends only Graceful and Fast.
	GracefulAlso []syscall.Signal
	FastAlso     []syscall.Signal
	// NoGracefulStop says the daemon has no graceful stop at all
	// (memcached): Graceful is what stops it, at once.
	NoGracefulStop bool
	// Reload makes the daemon re-read its configuration without a stop.
	// Zero when the daemon has none.
	Reload syscall.Signal
	// Upgrade starts a binary upgrade (a new master as a child of the old
	// one). Zero when the daemon has none.
	Upgrade syscall.Signal
	// Group says the graceful signal goes to the child's whole process
	// group rather than the master alone. No built-in preset sets it.
	Group bool
	// NativeNotify says the daemon speaks sd_notify itself.
	NativeNotify bool
	// Sockets says how the daemon takes the listening sockets it inherits
	// (systemd socket activation, graceshim's fd store).
	Sockets Sockets
	// SocketsCaveat, when set, reads the daemon's argv and says what keeps
	// it from serving inherited sockets as its flags suggest, "" when
	// nothing does.
	SocketsCaveat func(argv []string) string
	// ConfigTest, when set, returns the command that checks the
	// configuration the daemon started with argv would load (nginx -t with
	// the same -c, -p and -g), without touching the running daemon. A
	// reload runs it first and is refused when it fails.
	ConfigTest func(argv []string) []string
	// Caveat, when set, reads the configuration the daemon started with
	// argv loads (through read) and says what keeps its graceful stop
	// from being graceful, "" when nothing does or it cannot tell.
	Caveat func(argv []string, read ReadFunc) string
	// ConfigTestLimit, when set, says what ConfigTest cannot see (a
	// broken application behind a config that parses). graceshim says it
	// at start and in the answer to every reload the test lets through.
	ConfigTestLimit string
	// ReloadCommand, when set, returns the command that reloads the daemon
	// started with argv, for daemons whose reload is not a signal (caddy
	// reload, through its admin API). It takes the place of Reload.
	ReloadCommand func(argv []string) []string
	// Bound names the daemon's own setting that bounds its graceful stop,
	// if any, for lint messages.
	Bound string
	// Notes are the facts an operator needs about this daemon's stop.
	Notes string
}

// Map returns the translation the preset implies: systemd's TERM (and an
// interactive INT) become the graceful signal, HUP becomes the reload
// signal. Everything else is passed on unchanged.
func (p Preset) Map() Map {
	m := Map{
		syscall.SIGTERM: p.Graceful,
		syscall.SIGINT:  p.Graceful,
	}
	if p.Reload != 0 {
		m[syscall.SIGHUP] = p.Reload
	}
	return m
}

// StopsGracefully reports whether sig stops the daemon gracefully.
func (p Preset) StopsGracefully(sig syscall.Signal) bool {
	return sig != 0 && (sig == p.Graceful || slices.Contains(p.GracefulAlso, sig))
}

// StopsFast reports whether sig stops the daemon without waiting for the
// work in flight. SIGKILL always does.
func (p Preset) StopsFast(sig syscall.Signal) bool {
	if sig == syscall.SIGKILL {
		return true
	}
	return sig != 0 && !p.StopsGracefully(sig) && (sig == p.Fast || slices.Contains(p.FastAlso, sig))
}

// presets are the built-in daemons. Every fact comes from the daemon's own
// documentation or source, cited next to it, and was checked against the
// daemon from Debian 12's package by the end-to-end matrix
// (e2e/matrix_test.go).
var presets = []Preset{
	{
		Name: "generic", Graceful: syscall.SIGTERM, Fast: syscall.SIGTERM, Reload: syscall.SIGHUP,
		Notes: "TERM passed on as it is; use --map for a daemon with another graceful signal",
	},
	// nginx: https://nginx.org/en/docs/control.html ("TERM, INT fast
	// shutdown; QUIT graceful shutdown; HUP changing configuration ...;
	// USR2 upgrading an executable file"); nginx -h: "-t : test
	// configuration and exit"; worker_shutdown_timeout in
	// https://nginx.org/en/docs/ngx_core_module.html. nginx does not
	// speak sd_notify (Debian's nginx.service is Type=forking).
	{
		Name: "nginx", Commands: []string{"nginx"},
		Sockets:  SocketsNginxEnv,
		Graceful: syscall.SIGQUIT, Fast: syscall.SIGTERM, FastAlso: []syscall.Signal{syscall.SIGINT},
		Reload: syscall.SIGHUP, Upgrade: syscall.SIGUSR2,
		ConfigTest: nginxConfigTest,
		Bound:      "worker_shutdown_timeout",
		Notes:      "TERM and INT are nginx's fast shutdown; USR2 upgrade and WINCH need 'daemon on'",
	},
	// OpenResty is nginx with Lua: the same control.html applies, and
	// openresty -t is nginx -t.
	{
		Name: "openresty", Commands: []string{"openresty"},
		Sockets:  SocketsNginxEnv,
		Graceful: syscall.SIGQUIT, Fast: syscall.SIGTERM, FastAlso: []syscall.Signal{syscall.SIGINT},
		Reload: syscall.SIGHUP, Upgrade: syscall.SIGUSR2,
		ConfigTest: nginxConfigTest,
		Bound:      "worker_shutdown_timeout",
		Notes:      "nginx with Lua: the same signals as nginx",
	},
	// Apache httpd: https://httpd.apache.org/docs/2.4/stopping.html
	// (TERM "stop now", HUP "restart now", USR1 "graceful restart", WINCH
	// "graceful-stop"; "GracefulShutdownTimeout ... 0 ... wait
	// indefinitely"); INT is handled as TERM (server/mpm/event/event.c
	// set_signals: sig_term for SIGTERM and SIGINT; measured with 2.4 from
	// Debian 12: INT logs "caught SIGTERM, shutting down" and cuts a
	// download in flight). A graceful restart
	// with a broken config makes the parent exit (stopping.html: "the
	// server will ... exit with an error"; apachectl graceful runs -t
	// first for that reason, see Debian's apache2ctl). Debian's apache2
	// is not built with mod_systemd (apache2.service is Type=forking);
	// Fedora's httpd is, so there it speaks sd_notify.
	//
	// openSUSE's apache2.service runs /usr/sbin/start_apache2, a script
	// that reads /etc/sysconfig/apache2, picks the MPM's binary and ends
	// in `exec $apache_bin ...` with its own arguments (SUSE's container
	// images rewrite that line into their apache2-foreground), so httpd
	// keeps the pid, and `start_apache2 ... -t` is httpd's config test
	// (SUSE's tooling runs `/usr/sbin/start_apache2 -t`). Its binaries
	// are httpd-prefork, httpd-worker, httpd-event (httpd2-prefork ...
	// before 2.4.4x; `systemctl status apache2` shows them as Main PID).
	{
		Name: "httpd", Commands: []string{"httpd", "apache2", "apachectl", "apache2ctl",
			"start_apache2", "httpd-prefork", "httpd-worker", "httpd-event", "httpd2-prefork", "httpd2-worker", "httpd2-event"},
		Sockets:  SocketsNone,
		Graceful: syscall.SIGWINCH, Fast: syscall.SIGTERM, FastAlso: []syscall.Signal{syscall.SIGINT},
		Reload:     syscall.SIGUSR1,
		ConfigTest: httpdConfigTest,
		Bound:      "GracefulShutdownTimeout",
		Notes:      "WINCH is graceful-stop; HUP is a hard restart, so reload is USR1; GracefulShutdownTimeout 0 waits forever; run the apache2/httpd binary with -DFOREGROUND (apache2ctl runs it as a child, out of reach of graceful signals)",
	},
	// HAProxy: management guide, section "Stopping and restarting HAProxy"
	// (https://docs.haproxy.org/2.6/management.html): "SIGUSR1 ... soft
	// stop", "SIGTERM ... immediate", SIGINT the same, SIGQUIT dumps
	// pools; in master-worker mode (-W, -Ws) USR2 makes the master
	// re-exec itself (same pid) with the new config; -c "only performs a
	// check of the configuration files"; -Ws is master-worker "with
	// support of `notify` type of systemd service" (haproxy -h).
	// hard-stop-after bounds the soft stop.
	{
		Name: "haproxy", Commands: []string{"haproxy"},
		Sockets:  SocketsFDBind,
		Graceful: syscall.SIGUSR1, Fast: syscall.SIGTERM, FastAlso: []syscall.Signal{syscall.SIGINT},
		Reload: syscall.SIGUSR2, NativeNotify: true,
		ConfigTest: haproxyConfigTest,
		Bound:      "hard-stop-after",
		Notes:      "USR1 is the soft stop; QUIT only dumps pools; USR2 reloads only in master-worker mode (-W or -Ws); with -Ws haproxy speaks sd_notify itself",
	},
	// php-fpm: sapi/fpm/fpm/fpm_signals.c (sig_handler: SIGTERM and
	// SIGINT are 'T' terminate, SIGQUIT 'Q' finish, SIGUSR1 '1' reopen
	// logs, SIGUSR2 '2' reload) and fpm_process_ctl.c (reload is
	// fpm_pctl_exec: an execvp of php-fpm in the same pid; "finish" waits
	// for running requests only up to process_control_timeout, whose
	// default is 0 per php-fpm.conf's "Default Value: 0", so by default
	// QUIT does not wait at all). -t tests the configuration (php-fpm -h),
	// -R is needed for a root pool there too. Built --with-fpm-systemd it
	// speaks sd_notify (Debian's php8.2-fpm.service is Type=notify).
	{
		Name: "php-fpm", Commands: []string{"php-fpm"},
		Sockets:  SocketsNone,
		Graceful: syscall.SIGQUIT, Fast: syscall.SIGTERM, FastAlso: []syscall.Signal{syscall.SIGINT},
		Reload: syscall.SIGUSR2, NativeNotify: true,
		ConfigTest: phpFPMConfigTest,
		Caveat:     phpFPMCaveat,
		Bound:      "process_control_timeout",
		Notes:      "QUIT drains only when the global process_control_timeout is above 0: its default 0 (Debian's too) makes QUIT cut every request; set e.g. process_control_timeout = 30s; USR2 reload re-executes php-fpm in the same pid",
	},
	// gunicorn: docs/source/signals.rst ("QUIT, INT: Quick shutdown;
	// TERM: Graceful shutdown. Waits for workers to finish their current
	// requests up to the graceful_timeout; HUP: Reload the configuration,
	// start the new worker processes ... and gracefully shutdown older
	// workers"; "USR2: Upgrade the Gunicorn on the fly" with the new
	// master as a child, then TERM the old one); --check-config "Check
	// the configuration and exit" (it loads the application, so a broken
	// app fails it too); gunicorn/arbiter.py sends READY=1 through
	// gunicorn/systemd.py since 20.0.
	{
		Name: "gunicorn", Commands: []string{"gunicorn"},
		Sockets:  SocketsListenFDs,
		Graceful: syscall.SIGTERM, Fast: syscall.SIGINT, FastAlso: []syscall.Signal{syscall.SIGQUIT},
		Reload: syscall.SIGHUP, Upgrade: syscall.SIGUSR2, NativeNotify: true,
		ConfigTest: gunicornConfigTest,
		Bound:      "graceful_timeout",
		Notes:      "TERM is graceful (graceful_timeout, 30 s by default); QUIT and INT are fast; a HUP with a broken app makes the new workers fail to boot and the arbiter exit",
	},
	// unicorn: SIGNALS (https://yhbt.net/unicorn/SIGNALS.html, Debian's
	// /usr/share/doc/unicorn/SIGNALS.gz): "HUP - reloads config file and
	// gracefully restart all workers", "INT/TERM - quick shutdown", "QUIT
	// - graceful shutdown", "USR2 - reexecute the running binary" (the new
	// master is a child of the old one). unicorn has no config test mode
	// and no sd_notify; see unicornCheck for the check graceshim runs.
	{
		Name: "unicorn", Commands: []string{"unicorn", "unicorn_rails"},
		Sockets:  SocketsListenFDs,
		Graceful: syscall.SIGQUIT, Fast: syscall.SIGTERM, FastAlso: []syscall.Signal{syscall.SIGINT},
		Reload: syscall.SIGHUP, Upgrade: syscall.SIGUSR2,
		ConfigTest: unicornConfigTest,
		Notes:      "TERM and INT are fast; USR2 starts the new master as a child of the old one; the config test loads the config file and the app with unicorn's own code",
	},
	// puma: docs/signals.md ("TERM ... attempt to finish then exit", "INT
	// ... attempt to finish then exit", "USR2 restart workers. This also
	// reloads the Puma configuration file", "USR1 restart workers in
	// phases, a rolling restart. This will not reload the configuration
	// file"); docs/restart.md: a hot restart (USR2) is an exec of puma in
	// the same process, so it is a reload, not an upgrade with a child
	// master; lib/puma/launcher.rb restart! (Kernel.exec). docs/systemd.md
	// and launcher.rb integrate_with_systemd: puma (5.1+) speaks sd_notify
	// and the watchdog when NOTIFY_SOCKET is set and the sd_notify gem is
	// installed (Debian: ruby-sd-notify; measured: its 0.1.1 cannot reach
	// an abstract NOTIFY_SOCKET "@...", and puma exits). INT measured
	// graceful with 5.6.5. puma has no config test mode; see pumaCheck
	// for the check graceshim runs.
	{
		Name: "puma", Commands: []string{"puma"},
		Sockets:  SocketsListenFDs,
		Graceful: syscall.SIGTERM, GracefulAlso: []syscall.Signal{syscall.SIGINT}, Fast: syscall.SIGKILL,
		Reload: syscall.SIGUSR2, NativeNotify: true,
		ConfigTest: pumaConfigTest,
		Notes:      "TERM and INT are graceful and there is no fast stop but KILL; the config test loads the config file and the app with puma's own code; USR2 is a hot restart in the same pid that re-reads the config; USR1 a phased restart (cluster mode) that does not; sd_notify needs the sd_notify gem (ruby-sd-notify)",
	},
	// uWSGI: https://uwsgi-docs.readthedocs.io/en/latest/Management.html
	// ("SIGHUP gracefully reload all the workers and the master process;
	// SIGTERM brutally reload ... (use --die-on-term to respect the
	// convention of shutting down the instance); SIGINT, SIGQUIT
	// immediately kill the entire uWSGI stack") and ThingsToKnow.html
	// (TERM reloads until uWSGI 2.1). Neither default nor --die-on-term
	// gives a graceful stop by signal: the master's
	// gracefully_kill_them_all does, bound to TERM with
	// --hook-master-start "unix_signal:15 gracefully_kill_them_all"
	// (unbit/uwsgi issue #849), bounded by --worker-reload-mercy (60 s).
	// uWSGI speaks sd_notify (core/notify.c; Systemd.html: "uWSGI is a
	// new-style daemon for systemd"). It has no config test mode; its
	// reload (HUP) re-executes the master, so a config the new uWSGI
	// cannot start with ends the service. graceshim's test reads the
	// options with --get and loads the app with --no-server (see
	// uwsgiCheck).
	{
		Name: "uwsgi", Commands: []string{"uwsgi", "uwsgi-core", "uwsgi_python"},
		Sockets: SocketsListenFDs, SocketsCaveat: uwsgiSocketsCaveat,
		Graceful: syscall.SIGTERM, Fast: syscall.SIGINT, FastAlso: []syscall.Signal{syscall.SIGQUIT},
		Reload: syscall.SIGHUP, NativeNotify: true,
		ConfigTest:      uwsgiConfigTest,
		ConfigTestLimit: uwsgiConfigTestLimit,
		Bound:           "worker-reload-mercy",
		Notes:           "TERM is a brutal reload by default and an immediate stop with --die-on-term: start uwsgi with --master --hook-master-start \"unix_signal:15 gracefully_kill_them_all\" so that TERM is a graceful stop; INT and QUIT kill at once; uWSGI has no config test: graceshim's reads the options (uwsgi --get) and loads the app without binding (--no-server), except under lazy-apps, and refuses an unknown option only under strict = true",
	},
	// Caddy 2: sigtrap.go and sigtrap_posix.go (v2.6): INT and TERM are a
	// graceful exit ("shutting down ... gracefully"; a second INT forces
	// it), QUIT "quitting process immediately", USR1 and USR2 log "not
	// implemented" and so does HUP (ignored on purpose): the reload is the admin API, run
	// by `caddy reload --config FILE` (https://caddyserver.com/docs/command-line#caddy-reload),
	// which Debian's caddy.service uses as ExecReload; `caddy validate`
	// checks a config (https://caddyserver.com/docs/command-line#caddy-validate).
	// caddy speaks sd_notify (notify/notify_linux.go; caddy.service is
	// Type=notify). grace_period (global option) bounds the graceful stop.
	{
		Name: "caddy", Commands: []string{"caddy"},
		Sockets:  SocketsNone,
		Graceful: syscall.SIGTERM, GracefulAlso: []syscall.Signal{syscall.SIGINT}, Fast: syscall.SIGQUIT,
		NativeNotify:  true,
		ConfigTest:    caddyConfigTest,
		ReloadCommand: caddyReloadCommand,
		Bound:         "grace_period",
		Notes:         "TERM and INT are graceful, QUIT is fast; USR1 is not implemented in Caddy 2: the reload is caddy reload through the admin API, which must stay enabled (no 'admin off')",
	},
	// lighttpd: doc/initscripts.txt ("SIGTERM - shut down immediately",
	// "SIGINT - shut down gracefully", "SIGUSR1 - reload gracefully
	// (serve existing connections, then reload config)" since 1.4.46,
	// "SIGHUP - re-open log files (NOTE: does not reload lighttpd
	// configuration)"); src/server.c signal_handler; lighttpd -h: "-tt
	// test config-file, and exit" after loading modules (Debian's
	// lighttpd.service runs it in ExecStartPre). No sd_notify in Debian's
	// build (lighttpd.service is Type=simple).
	// server.graceful-shutdown-timeout bounds the graceful stop.
	// Measured with 1.4.69: on INT lighttpd stops accepting and finishes
	// the responses in flight without their connection.kbytes-per-second
	// limit; on USR1 with a broken config it exits (status 255).
	{
		Name: "lighttpd", Commands: []string{"lighttpd"},
		Sockets:  SocketsListenFDs,
		Graceful: syscall.SIGINT, Fast: syscall.SIGTERM,
		Reload:     syscall.SIGUSR1,
		ConfigTest: lighttpdConfigTest,
		Bound:      "server.graceful-shutdown-timeout",
		Notes:      "INT is graceful, TERM immediate; USR1 is the graceful restart that reloads the config; HUP only reopens logs",
	},
	// Traefik: https://doc.traefik.io/traefik/ (TERM graceful within
	// lifeCycle.graceTimeOut; a second INT is immediate).
	{
		Name: "traefik", Commands: []string{"traefik"},
		Graceful: syscall.SIGTERM, Fast: syscall.SIGINT, Reload: syscall.SIGHUP, NativeNotify: true,
		Bound: "lifeCycle.graceTimeOut",
		Notes: "TERM is graceful; a second INT is fast",
	},
	// PostgreSQL: https://www.postgresql.org/docs/current/server-shutdown.html
	// (SIGTERM Smart Shutdown, SIGINT Fast Shutdown, SIGQUIT Immediate
	// Shutdown: "recovery ... on next startup"); SIGHUP reloads
	// postgresql.conf.
	{
		Name: "postgres", Commands: []string{"postgres", "postmaster"},
		Sockets:  SocketsNone,
		Graceful: syscall.SIGTERM, Fast: syscall.SIGINT, FastAlso: []syscall.Signal{syscall.SIGQUIT},
		Reload: syscall.SIGHUP,
		Notes:  "TERM is smart shutdown, INT fast; QUIT is immediate (crash recovery on start); never signal the group",
	},
	// Redis: https://redis.io/docs/latest/operate/oss_and_stack/management/signals/
	// ("SIGTERM and SIGINT ... performs a graceful shutdown": an RDB save
	// when save points are set, waiting up to shutdown-timeout for
	// replicas); src/server.c sigShutdownHandler: a second SIGINT while a
	// shutdown is pending exits at once ("You insist... exiting now").
	// --supervised systemd sends READY=1 once the data set is loaded
	// (redis.conf "supervised"). Redis has no reload signal (CONFIG SET)
	// and no config test.
	{
		Name: "redis", Commands: []string{"redis-server"},
		Sockets:  SocketsNone,
		Graceful: syscall.SIGTERM, GracefulAlso: []syscall.Signal{syscall.SIGINT}, Fast: syscall.SIGINT, NativeNotify: true,
		Bound: "shutdown-timeout",
		Notes: "TERM saves and exits; an INT after it exits at once; speaks sd_notify with --supervised systemd (or auto)",
	},
	// memcached: memcached.c main installs sig_handler for SIGINT and
	// SIGTERM (stop_main_loop = EXIT_NORMALLY) and sig_usrhandler for
	// SIGUSR1 ("Graceful shutdown signal handled", GRACE_STOP: with -e,
	// the cache is saved to the memory file for a warm restart,
	// https://github.com/memcached/memcached/wiki/WarmRestart). None of
	// them waits for clients: every connection is closed at once
	// (measured with 1.6.18: TERM and USR1 both close an open
	// connection within about 2 s). So the graceful signal is TERM, the
	// stop every unit sends anyway. No sd_notify, no reload, no config
	// file (flags only).
	{
		Name: "memcached", Commands: []string{"memcached"},
		Sockets:  SocketsNone,
		Graceful: syscall.SIGTERM, Fast: syscall.SIGTERM, FastAlso: []syscall.Signal{syscall.SIGINT}, NoGracefulStop: true,
		Notes: "memcached has no graceful stop: TERM, INT and USR1 all close every connection at once (TERM is kept); a stop loses the cache unless memcached runs with -e and is stopped with USR1 (--map TERM:USR1), which saves it for a warm restart",
	},
	// Sidekiq: https://github.com/sidekiq/sidekiq/wiki/Signals (TSTP
	// "quiet", TERM shuts down within -t seconds).
	{
		Name: "sidekiq", Commands: []string{"sidekiq"},
		Sockets:  SocketsNone,
		Graceful: syscall.SIGTERM, PreStop: syscall.SIGTSTP, Fast: syscall.SIGTERM,
		Notes: "TSTP stops fetching jobs, then TERM finishes them within sidekiq's -t timeout",
	},
	// Celery: https://docs.celeryq.dev/en/stable/userguide/workers.html
	// ("TERM ... warm shutdown", QUIT cold shutdown, HUP restart).
	{
		Name: "celery", Commands: []string{"celery"},
		Sockets:  SocketsNone,
		Graceful: syscall.SIGTERM, Fast: syscall.SIGQUIT, Reload: syscall.SIGHUP,
		Notes: "TERM is a warm shutdown, QUIT a cold one",
	},
}

// Presets returns the built-in presets, sorted by name.
func Presets() []Preset {
	out := append([]Preset(nil), presets...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Lookup returns the preset with the given name.
func Lookup(name string) (Preset, error) {
	for _, p := range presets {
		if p.Name == strings.ToLower(name) {
			return p, nil
		}
	}
	names := make([]string, 0, len(presets))
	for _, p := range Presets() {
		names = append(names, p.Name)
	}
	return Preset{}, fmt.Errorf("unknown preset %q (known: %s)", name, strings.Join(names, ", "))
}

// ForCommand picks the preset for an executable path by its base name; a
// trailing version ("php-fpm8.2", "nginx-debug" is not one) is ignored. It
// reports false and the generic preset when nothing matches.
func ForCommand(path string) (Preset, bool) {
	for _, p := range presets {
		if p.Runs(path) {
			return p, true
		}
	}
	return presets[0], false
}

// Runs reports whether the executable at path is the preset's daemon, by
// its base name as ForCommand matches it. ConfigTest and ReloadCommand
// rewrite the daemon's own argv: for a wrapper (an entrypoint script that
// execs nginx) they would run the wrapper, so they apply only where Runs.
func (p Preset) Runs(path string) bool {
	base := filepath.Base(path)
	trimmed := strings.TrimRight(base, "0123456789.")
	for _, c := range p.Commands {
		if base == c || trimmed == c {
			return true
		}
	}
	return false
}

// The config tests below turn the argv a daemon was started with into the
// command that checks the same configuration: the flags that choose which
// config is read (file, prefix, directives, defines) are kept, everything
// that starts, stops or daemonizes is dropped. They are pure: nothing is
// looked up on disk.

// flagSpec says how a daemon's options are read: which take a value (and
// are kept or dropped with it) and which stand alone but are kept.
type flagSpec struct {
	keepValue map[string]bool // option takes a value; kept with it
	dropValue map[string]bool // option takes a value; dropped with it
	keepBool  map[string]bool // option takes no value; kept
	// short says single-dash options are one letter and may carry their
	// value attached ("-c/etc/x.conf", "-DFOREGROUND"). Otherwise
	// "-name" is a long option (Go's flag package, haproxy's -sf).
	short bool
}

func set(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// parsed is an argv read by a flagSpec.
type parsed struct {
	kept        []string // kept options, with their values, in order
	positionals []string // the non-option arguments
	values      map[string]string
}

// parse reads args (argv without argv[0]). "--" ends the options; an
// option whose value is missing at the end is dropped.
func (f flagSpec) parse(args []string) parsed {
	p := parsed{values: map[string]string{}}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			p.positionals = append(p.positionals, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			p.positionals = append(p.positionals, a)
			continue
		}
		name, value, hasValue := a, "", false
		switch {
		case strings.HasPrefix(a, "--"):
			if j := strings.IndexByte(a, '='); j > 0 {
				name, value, hasValue = a[:j], a[j+1:], true
			}
		case f.short && len(a) > 2 && (f.keepValue[a[:2]] || f.dropValue[a[:2]]):
			name, value, hasValue = a[:2], a[2:], true
		case !f.short:
			if j := strings.IndexByte(a, '='); j > 0 {
				name, value, hasValue = a[:j], a[j+1:], true
			}
		}
		takes := f.keepValue[name] || f.dropValue[name]
		if takes && !hasValue {
			if i+1 >= len(args) {
				break
			}
			i++
			value, hasValue = args[i], true
		}
		switch {
		case f.keepValue[name]:
			p.values[name] = value
			if a == name {
				p.kept = append(p.kept, name, value)
			} else {
				p.kept = append(p.kept, a)
			}
		case f.keepBool[name]:
			p.kept = append(p.kept, a)
		}
	}
	return p
}

func cmd(argv0 string, args ...string) []string {
	return append([]string{argv0}, args...)
}

// nginxConfigTest is nginx -t -q with the same -c, -p, -g and -e
// (nginx -h).
func nginxConfigTest(argv []string) []string {
	if len(argv) == 0 {
		return nil
	}
	spec := flagSpec{short: true, keepValue: set("-c", "-p", "-g", "-e"), dropValue: set("-s")}
	return cmd(argv[0], append([]string{"-t", "-q"}, spec.parse(argv[1:]).kept...)...)
}

// httpdConfigTest is httpd -t (apache2 -t) with the same -f, -d, -D, -C
// and -c; apachectl and apache2ctl pass options they do not know on to
// the binary, so the same words work through them (Debian's apache2ctl:
// "$HTTPD ${APACHE_ARGUMENTS} "$@"").
func httpdConfigTest(argv []string) []string {
	if len(argv) == 0 {
		return nil
	}
	spec := flagSpec{short: true, keepValue: set("-f", "-d", "-D", "-C", "-c"), dropValue: set("-k", "-e", "-E")}
	return cmd(argv[0], append(spec.parse(argv[1:]).kept, "-t")...)
}

// haproxyConfigTest is haproxy -c with the same -f files (or the
// files after "--"), -C and -L (haproxy -h; Debian's haproxy.service
// ExecReload does the same, with -q). Without -q: haproxy 2.6's -q hides
// the [ALERT] lines too (measured: a config with an unknown keyword, -c -q
// exits 1 printing nothing), and a refused reload must say why.
func haproxyConfigTest(argv []string) []string {
	if len(argv) == 0 {
		return nil
	}
	spec := flagSpec{
		keepValue: set("-f", "-C", "-L"),
		dropValue: set("-p", "-S", "-x", "-m", "-n", "-N", "-sf", "-st"),
	}
	p := spec.parse(argv[1:])
	args := append([]string{"-c"}, p.kept...)
	// haproxy reads the words after "--" as config files; -sf and -st
	// take a list of pids, which parse left as positionals.
	var files []string
	for _, a := range p.positionals {
		if strings.Trim(a, "0123456789") != "" {
			files = append(files, a)
		}
	}
	if len(files) > 0 {
		args = append(append(args, "--"), files...)
	}
	return cmd(argv[0], args...)
}

// phpFPMConfigTest is php-fpm -t with the same config (-y,
// --fpm-config), php.ini (-c, -n, -d), prefix (-p) and -R, which the
// test needs as much as the daemon (php-fpm -h).
func phpFPMConfigTest(argv []string) []string {
	if len(argv) == 0 {
		return nil
	}
	spec := flagSpec{
		short:     true,
		keepValue: set("-y", "--fpm-config", "-c", "--php-ini", "-p", "--prefix", "-d", "--define"),
		dropValue: set("-g", "--pid"),
		keepBool:  set("-n", "--no-php-ini", "-R", "--allow-to-run-as-root"),
	}
	return cmd(argv[0], append([]string{"-t"}, spec.parse(argv[1:]).kept...)...)
}

// gunicornConfigTest is the same gunicorn command with --check-config,
// which reads every setting and loads the application, then exits
// (gunicorn --help; docs/source/settings.rst check_config).
func gunicornConfigTest(argv []string) []string {
	if len(argv) == 0 {
		return nil
	}
	return cmd(argv[0], append([]string{"--check-config"}, argv[1:]...)...)
}

// unicornCheck is the script behind unicornConfigTest. Its arguments
// are pairs of a kind and a file, in the order unicorn loads them:
// "config" is the -c file, evaluated by unicorn's own
// Unicorn::Configurator as a reload evaluates it
// (lib/unicorn/configurator.rb reload: instance_eval of the file), so a
// directive unicorn does not know fails it, not only a syntax error;
// "app" is the rackup, loaded with unicorn's own Unicorn.builder
// (lib/unicorn.rb), which runs the application's code as a worker's boot
// does. That matters because a HUP makes every new worker load the app:
// measured with unicorn 6.0.0 from Debian 12, a HUP with a config.ru that
// parses but names an undefined constant leaves the master up and its
// workers failing to boot in a loop, serving nothing. A kind ending in
// "?" is unicorn's default file, checked only when it exists. When
// unicorn cannot be loaded (another Ruby than the server's), the files
// are syntax-checked and a warning says so. One line per error:
// "FILE:LINE: error: ...", without the receiver dump Ruby 3.1 puts in a
// NoMethodError's message.
const unicornCheck = `status = 0
ARGV.each_slice(2) do |kind, f|
  next if kind.end_with?("?") && !File.exist?(f)
  begin
    begin
      require "unicorn"
      require "rack" if kind.start_with?("app") && f.end_with?(".ru")
    rescue LoadError => e
      warn "#{f}: warning: unicorn cannot be loaded (#{e.message}): syntax checked only"
      RubyVM::InstructionSequence.compile_file(f)
      next
    end
    if kind.start_with?("config")
      Unicorn::Configurator.new(config_file: f)
    else
      Unicorn.builder(f, nil).call(nil, Struct.new(:default_middleware).new(false))
    end
  rescue ScriptError, StandardError => e
    at = (e.backtrace || []).map { |l| l[/\A(.+?:\d+)/, 1] }.find { |l| l && l.start_with?(f + ":") } || f
    msg = e.is_a?(NameError) ? "undefined directive or name '#{e.name}'" : e.message.lines.first.to_s.strip
    warn "#{at}: error: #{msg}"
    status = 1
  end
end
exit status
`

// unicornConfigTest runs unicornCheck on unicorn's -c config file and
// its rackup file (the first argument, config.ru by default: unicorn(1)).
func unicornConfigTest(argv []string) []string {
	if len(argv) == 0 {
		return nil
	}
	spec := flagSpec{
		short:     true,
		keepValue: set("-c", "--config-file"),
		dropValue: set("-E", "--env", "-o", "--host", "-p", "--port", "-l", "--listen", "-I", "--include", "-r", "--require"),
	}
	p := spec.parse(argv[1:])
	var files []string
	for _, k := range []string{"-c", "--config-file"} {
		if v := p.values[k]; v != "" {
			files = append(files, "config", v)
		}
	}
	if len(p.positionals) > 0 {
		files = append(files, "app", p.positionals[0])
	} else {
		files = append(files, "app?", "config.ru")
	}
	return append([]string{"ruby", "-e", unicornCheck, "--"}, files...)
}

// pumaCheck is the script behind pumaConfigTest. Its arguments are "-C
// FILE" when the command names a config file ("-C -" for none) and the
// rackup file when it names one. It does what puma does at boot, with
// puma's own code: Puma::Configuration reads the config file (by default
// config/puma/ENV.rb or config/puma.rb, docs/configuration.md) with
// Puma::DSL, where a directive puma does not know fails, then #app loads
// the rackup the config names (lib/puma/configuration.rb load_rackup),
// running the application's own code as a boot does. That matters because
// puma's reload (USR2) re-executes puma: measured with 5.6.5 from Debian
// 12, a USR2 with a config.ru that parses but names an undefined constant
// ends puma. When puma cannot be loaded (another Ruby than the server's),
// the files are syntax-checked and a warning says so. One line per error,
// as unicornCheck writes it.
const pumaCheck = `files = []
opts = {}
if ARGV[0] == "-C"
  ARGV.shift
  opts[:config_files] = [ARGV.shift]
  files << opts[:config_files][0]
end
if ARGV[0]
  opts[:rackup] = ARGV.shift
  files << opts[:rackup]
end
begin
  require "puma"
  require "puma/configuration"
rescue LoadError => e
  warn "warning: puma cannot be loaded (#{e.message}): syntax checked only"
  files.each { |f| RubyVM::InstructionSequence.compile_file(f) if f != "-" && File.exist?(f) }
  exit 0
end
begin
  c = Puma::Configuration.new(opts)
  c.load
  files << c.options[:rackup].to_s
  c.app
rescue ScriptError, StandardError => e
  locs = (e.backtrace || []).map { |l| l[/\A(.+?:\d+)/, 1] }.compact
  at = locs.find { |l| files.any? { |f| l.start_with?(f + ":") } } || "puma"
  msg = e.is_a?(NameError) ? "undefined directive or name '#{e.name}'" : e.message.lines.first.to_s.strip
  warn "#{at}: error: #{msg}"
  exit 1
end
`

// pumaConfigTest runs pumaCheck with the command's -C and rackup (puma
// --help).
func pumaConfigTest(argv []string) []string {
	if len(argv) == 0 {
		return nil
	}
	spec := flagSpec{
		short:     true,
		keepValue: set("-C", "--config"),
		dropValue: set("-b", "--bind", "--bind-to-activated-sockets", "--control-url", "--control-token",
			"-e", "--environment", "-I", "--include", "-p", "--port", "--pidfile", "-S", "--state",
			"-t", "--threads", "-w", "--workers", "--tag", "--redirect-stdout", "--redirect-stderr",
			"--dir", "--early-hints", "--extra-runtime-dependencies", "-R", "--restart-cmd",
			"--fork-worker", "--idle-timeout"),
	}
	p := spec.parse(argv[1:])
	out := []string{"ruby", "-e", pumaCheck, "--"}
	if c := p.values["-C"] + p.values["--config"]; c != "" {
		out = append(out, "-C", c)
	}
	if len(p.positionals) > 0 {
		out = append(out, p.positionals[0])
	}
	return out
}

// caddyFlags are the caddy run flags that choose the config; Caddy's
// CLI reads "-config" and "--config", with the value attached by "=" or
// in the next word.
var caddyFlags = flagSpec{
	keepValue: set("--config", "-config", "--adapter", "-adapter"),
	dropValue: set("--envfile", "-envfile", "--pidfile", "-pidfile", "--pingback", "-pingback"),
}

// caddyConfig returns the --config and --adapter words of a caddy run
// argv, written as --flag value.
func caddyConfig(argv []string) []string {
	p := caddyFlags.parse(argv[1:])
	var out []string
	for _, f := range []string{"config", "adapter"} {
		if v, ok := p.values["--"+f]; ok {
			out = append(out, "--"+f, v)
		} else if v, ok := p.values["-"+f]; ok {
			out = append(out, "--"+f, v)
		}
	}
	return out
}

// caddyConfigTest is caddy validate with run's --config and --adapter
// (without --config both run and validate read ./Caddyfile).
func caddyConfigTest(argv []string) []string {
	if len(argv) == 0 {
		return nil
	}
	return cmd(argv[0], append([]string{"validate"}, caddyConfig(argv)...)...)
}

// caddyReloadCommand is caddy reload with run's --config and --adapter:
// it loads the file into the running caddy through its admin API, whose
// address it reads from the same config. --force reloads even an
// unchanged file, as Debian's caddy.service does.
func caddyReloadCommand(argv []string) []string {
	if len(argv) == 0 {
		return nil
	}
	return cmd(argv[0], append(append([]string{"reload"}, caddyConfig(argv)...), "--force")...)
}

// lighttpdConfigTest is lighttpd -tt (test the config after loading the
// modules) with the same -f and -m (lighttpd -h).
func lighttpdConfigTest(argv []string) []string {
	if len(argv) == 0 {
		return nil
	}
	spec := flagSpec{short: true, keepValue: set("-f", "-m")}
	return cmd(argv[0], append([]string{"-tt"}, spec.parse(argv[1:]).kept...)...)
}

// uwsgiConfigTestLimit is what uwsgiConfigTest does not see.
const uwsgiConfigTestLimit = "uwsgi's config test loads the app in a uWSGI that binds nothing (--no-server), " +
	"but not under lazy-apps (the workers load it) nor with safe-pidfile, daemonize, emperor or a router such as http = (then it only reads the options); " +
	"and without strict = true uWSGI ignores an option it does not know, so no test refuses one"

// uwsgiCheck is the script behind uwsgiConfigTest; its arguments are the
// daemon's command line. Step 1 is that command with --get (uwsgi --help:
// "print the specified option value and exit"): uWSGI reads every config
// file and option as a start does, loads the plugins they name, and exits
// before binding or loading the app; under strict mode an unknown option
// is "[strict-mode] unknown config directive" and exit 1 (core/uwsgi.c,
// uwsgi_opt_get), and a missing --ini file fails too. Step 2 is the
// command with --no-server --need-app: uWSGI loads the app as a start
// does in the master (not under lazy-apps), then logs "no-server mode
// requested. Goodbye." and exits 0, or, with an app that fails to import,
// "no app loaded. GAME OVER" and exit 22. Measured with 2.0.21 from
// Debian 12, with another process listening on the config's port: step 2
// binds no socket, runs no master hook and creates no master-fifo or
// stats socket, but it does write the pid files (hence --pidfile and
// --pidfile2 /dev/null after the daemon's own, the last of which wins),
// appends to logto, and runs the exec-asap, hook-asap and pre-app hooks,
// as every start and reload does. What step 2 would act on is left out:
// safe-pidfile (a rename onto the path), daemonize (the test would go to
// the background), the emperor (measured: it starts and never exits, and
// would start the vassals), and the routers and other sockets uWSGI binds
// before the app loads (measured: "http = 127.0.0.1:P" binds P in step 2
// and fails with "Address already in use" while the daemon holds it).
// With any of them set, step 2 is skipped and a line on stderr says so.
const uwsgiCheck = `out=$("$@" --get safe-pidfile --get safe-pidfile2 --get daemonize --get daemonize2 --get emperor \
	--get http --get https --get fastrouter --get rawrouter --get sslrouter --get forkptyrouter \
	--get shared-socket --get zerg-server --get cache-udp-server --get legion --get snmp --get udp) || exit 1
if [ -n "$out" ]; then
	echo "uwsgi config test: options read; the app is not loaded (safe-pidfile, daemonize, emperor or a router is set)" >&2
	exit 0
fi
exec "$@" --pidfile /dev/null --pidfile2 /dev/null --no-server --need-app
`

// uwsgiConfigTest runs uwsgiCheck on the daemon's own command line. A
// reload re-executes uWSGI's master, so a config or an app it cannot
// start with ends the service; uWSGI 2.0.21 after a HUP with an app.py
// that fails to compile logs "no app loaded. going in full dynamic mode"
// and answers every request with 500, or with need-app exits (measured).
func uwsgiConfigTest(argv []string) []string {
	if len(argv) == 0 {
		return nil
	}
	return append([]string{"sh", "-c", uwsgiCheck, "uwsgi-config-test"}, argv...)
}
