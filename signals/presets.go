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
	// ConfigTest, when set, returns the command that checks the
	// configuration the daemon started with argv would load (nginx -t with
	// the same -c, -p and -g), without touching the running daemon. A
	// reload runs it first and is refused when it fails.
	ConfigTest func(argv []string) []string
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

// presets are the built-in daemons; the facts are from each daemon's
// documentation of its signal handling.
var presets = []Preset{
	{
		Name: "generic", Graceful: syscall.SIGTERM, Fast: syscall.SIGTERM, Reload: syscall.SIGHUP,
		Notes: "TERM passed on as it is; use --map for a daemon with another graceful signal",
	},
	{
		Name: "nginx", Commands: []string{"nginx"},
		Graceful: syscall.SIGQUIT, Fast: syscall.SIGTERM, FastAlso: []syscall.Signal{syscall.SIGINT}, Reload: syscall.SIGHUP, Upgrade: syscall.SIGUSR2,
		Bound: "worker_shutdown_timeout",
		Notes: "TERM and INT are nginx's fast shutdown; USR2 upgrade and WINCH need 'daemon on'",
	},
	{
		Name: "openresty", Commands: []string{"openresty"},
		Graceful: syscall.SIGQUIT, Fast: syscall.SIGTERM, Reload: syscall.SIGHUP, Upgrade: syscall.SIGUSR2,
		Bound: "worker_shutdown_timeout",
		Notes: "nginx with Lua: the same signals as nginx",
	},
	{
		Name: "httpd", Commands: []string{"httpd", "apache2", "apachectl", "apache2ctl"},
		Graceful: syscall.SIGWINCH, Fast: syscall.SIGTERM, Reload: syscall.SIGUSR1,
		Bound: "GracefulShutdownTimeout",
		Notes: "WINCH is graceful-stop; HUP is a hard restart, so reload is USR1; GracefulShutdownTimeout 0 waits forever",
	},
	{
		Name: "haproxy", Commands: []string{"haproxy"},
		Graceful: syscall.SIGUSR1, Fast: syscall.SIGTERM, Reload: syscall.SIGUSR2, NativeNotify: true,
		Bound: "hard-stop-after",
		Notes: "USR1 is the soft stop; QUIT only dumps pools; with -Ws haproxy speaks sd_notify itself",
	},
	{
		Name: "php-fpm", Commands: []string{"php-fpm"},
		Graceful: syscall.SIGQUIT, Fast: syscall.SIGTERM, Reload: syscall.SIGUSR2,
		Bound: "process_control_timeout",
		Notes: "QUIT only drains when process_control_timeout > 0 (the default 0 does not wait)",
	},
	{
		Name: "gunicorn", Commands: []string{"gunicorn"},
		Graceful: syscall.SIGTERM, Fast: syscall.SIGINT, Reload: syscall.SIGHUP, Upgrade: syscall.SIGUSR2, NativeNotify: true,
		Bound: "graceful_timeout",
		Notes: "TERM is graceful (graceful_timeout, 30 s by default); QUIT and INT are fast",
	},
	{
		Name: "unicorn", Commands: []string{"unicorn", "unicorn_rails"},
		Graceful: syscall.SIGQUIT, Fast: syscall.SIGTERM, Reload: syscall.SIGHUP, Upgrade: syscall.SIGUSR2,
		Notes: "TERM and INT are fast; USR2 starts the new master as a child of the old one",
	},
	{
		Name: "puma", Commands: []string{"puma"},
		Graceful: syscall.SIGTERM, Fast: syscall.SIGKILL, Reload: syscall.SIGUSR1, Upgrade: syscall.SIGUSR2, NativeNotify: true,
		Notes: "TERM is graceful and there is no fast stop but KILL; USR2 restarts, USR1 is a phased restart",
	},
	{
		Name: "caddy", Commands: []string{"caddy"},
		Graceful: syscall.SIGTERM, Fast: syscall.SIGQUIT, Reload: syscall.SIGUSR1, NativeNotify: true,
		Bound: "grace_period",
		Notes: "TERM is graceful; QUIT is fast",
	},
	{
		Name: "traefik", Commands: []string{"traefik"},
		Graceful: syscall.SIGTERM, Fast: syscall.SIGINT, Reload: syscall.SIGHUP, NativeNotify: true,
		Bound: "lifeCycle.graceTimeOut",
		Notes: "TERM is graceful; a second INT is fast",
	},
	{
		Name: "postgres", Commands: []string{"postgres", "postmaster"},
		Graceful: syscall.SIGTERM, Fast: syscall.SIGINT, Reload: syscall.SIGHUP,
		Notes: "TERM is smart shutdown, INT fast; QUIT is immediate (crash recovery on start); never signal the group",
	},
	{
		Name: "redis", Commands: []string{"redis-server"},
		Graceful: syscall.SIGTERM, Fast: syscall.SIGINT, NativeNotify: true,
		Notes: "TERM saves and exits; speaks sd_notify with --supervised systemd",
	},
	{
		Name: "sidekiq", Commands: []string{"sidekiq"},
		Graceful: syscall.SIGTERM, PreStop: syscall.SIGTSTP, Fast: syscall.SIGTERM,
		Notes: "TSTP stops fetching jobs, then TERM finishes them within sidekiq's -t timeout",
	},
	{
		Name: "celery", Commands: []string{"celery"},
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
	base := filepath.Base(path)
	trimmed := strings.TrimRight(base, "0123456789.")
	for _, p := range presets {
		for _, c := range p.Commands {
			if base == c || trimmed == c {
				return p, true
			}
		}
	}
	return presets[0], false
}
