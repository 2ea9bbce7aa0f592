package unitgen

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/graceshim/graceshim/signals"
	"github.com/graceshim/graceshim/supervisor"
)

// Severities of findings.
const (
	SeverityError   = "error"   // requests are lost or a stop fails
	SeverityWarning = "warning" // a stop works, but not as well as it could
	SeverityNote    = "note"    // worth knowing; the stop works (lint exits 0)
)

// Finding is one problem lint found in a unit: what goes wrong on stop and
// the fix. The JSON form is stable.
type Finding struct {
	File      string `json:"file"`
	Line      int    `json:"line"`
	Directive string `json:"directive"`
	Severity  string `json:"severity"`
	Problem   string `json:"problem"`
	Fix       string `json:"fix"`
}

func (f Finding) String() string {
	return fmt.Sprintf("%s:%d: %s: %s: %s\n    fix: %s", f.File, f.Line, f.Severity, f.Directive, f.Problem, f.Fix)
}

// LintOptions tune Lint.
type LintOptions struct {
	// SystemdVersion is the systemd the unit runs under; 0 means a
	// current one (EXTEND_TIMEOUT_USEC available).
	SystemdVersion int
	// Root is prepended to the paths of the daemon's own configuration
	// (/etc/nginx/nginx.conf), to lint the units of another system's
	// image; "" means /.
	Root string
	// LoadPath is where the unit's drop-ins are looked for besides its
	// own directory, highest priority first; nil means systemd 252's
	// load path for the unit (LoadPathFor), under Root.
	LoadPath []string
}

// defaultTimeoutStop is systemd's DefaultTimeoutStopSec.
const defaultTimeoutStop = 90 * time.Second

// lintCtx is what lint learns about a unit before checking it.
type lintCtx struct {
	u        *Unit
	opts     LintOptions
	start    Directive // the ExecStart= in force
	argv     []string  // its words
	cmd      []string  // the daemon's command (inside a wrapper)
	wrapper  string
	preset   signals.Preset
	known    bool // the preset was recognised from the command
	name     string
	findings []Finding
}

func (c *lintCtx) add(d Directive, name, sev, problem, fix string) {
	line := d.Line
	if line == 0 {
		line = c.start.Line
	}
	c.findings = append(c.findings, Finding{File: c.u.File, Line: line, Directive: name, Severity: sev, Problem: problem, Fix: fix})
}

// value returns a directive and whether it was set; an unset one carries
// the default value and line 0.
func (c *lintCtx) value(name, def string) (Directive, bool) {
	d, ok := c.u.Get("Service", name)
	if !ok {
		return Directive{Section: "Service", Name: name, Value: def}, false
	}
	return d, true
}

// Lint explains, per finding, what goes wrong when u is stopped, and the
// fix. Warnings are about the file itself (unknown directives).
func Lint(u *Unit, o LintOptions) []Finding {
	fs := lint(u, o)
	if f, ok := dropinsBeside(u, o); ok {
		fs = append(fs, f)
	}
	return fs
}

func lint(u *Unit, o LintOptions) []Finding {
	if fs := lintNotAServer(u); fs != nil {
		return fs
	}
	c := &lintCtx{u: u, opts: o}
	starts := u.List("Service", "ExecStart")
	if len(starts) == 0 {
		return nil // not a service with a daemon; nothing to say about its stop
	}
	c.start = starts[len(starts)-1]
	line, err := SplitExec(c.start.Value)
	if err != nil {
		c.add(c.start, "ExecStart", SeverityError, fmt.Sprintf("systemd cannot split this command line: %v", err), "quote the arguments as systemd.service(5) says, or generate the unit with graceshim unit")
		return c.findings
	}
	c.argv = line.Argv()
	var wrapErr error
	c.cmd, c.wrapper, _, wrapErr = inner(c.argv)
	if wrapErr != nil {
		c.add(c.start, "ExecStart", SeverityWarning, fmt.Sprintf("cannot read the command: %v", wrapErr), "put -- between the wrapper's flags and the command")
		return c.findings
	}
	// env and `sh -c 'exec ...'` become the daemon they run.
	c.cmd = daemonArgv(c.cmd)
	if len(c.cmd) > 0 {
		c.preset, c.known = signals.ForCommand(c.cmd[0])
		c.name = filepath.Base(c.cmd[0])
		if c.name == "apachectl" || c.name == "apache2ctl" || c.name == "start_apache2" {
			c.name = "Apache" // apachectl only starts it; start_apache2 execs it
		}
	}
	if c.wrapper == "graceshim" {
		c.lintGraceshim()
	} else {
		c.lintKillModeNone()
		c.lintWrapper()
		c.lintStop()
	}
	c.lintPHPFPM()
	c.lintNotify()
	c.lintPIDFile()
	return c.findings
}

// lintWrapper: an init-like wrapper under KillMode=control-group.
func (c *lintCtx) lintWrapper() {
	if c.wrapper == "" {
		return
	}
	km, set := c.value("KillMode", "control-group")
	if km.Value != "control-group" {
		return
	}
	problem := "KillMode=control-group"
	if !set {
		problem = "KillMode is not set, so control-group,"
	}
	if c.known && c.preset.NoGracefulStop {
		// Nothing to drain whoever sends TERM (memcached).
		c.add(km, "KillMode", SeverityNote,
			fmt.Sprintf("%s sends SIGTERM to every process of the unit, not only through %s; %s has no graceful stop, so every stop closes its connections at once either way", problem, c.wrapper, c.name),
			fmt.Sprintf("KillMode=mixed makes %s the only one systemd signals until the final SIGKILL", c.wrapper))
		return
	}
	if c.known && c.preset.StopsGracefully(syscall.SIGTERM) {
		// The wrapper passes TERM on, and TERM is this daemon's graceful
		// stop anyway: what reaches the daemon is right either way.
		c.add(km, "KillMode", SeverityNote,
			fmt.Sprintf("%s sends SIGTERM to every process of the unit, workers included, not only through %s; %s's graceful stop is SIGTERM, so the stop still drains", problem, c.wrapper, c.name),
			fmt.Sprintf("KillMode=mixed makes %s the only one systemd signals until the final SIGKILL; graceshim unit --from %s also extends the stop timeout while connections drain", c.wrapper, fromHint(c.u)))
		return
	}
	c.add(km, "KillMode", SeverityError,
		fmt.Sprintf("%s sends the stop signal to every process of the unit, so %s gets it straight from systemd; %s cannot translate it or wait for it", problem, orDaemon(c.name), c.wrapper),
		fmt.Sprintf("set KillMode=mixed (the signal goes to %s only, SIGKILL to the rest at the end); %s passes SIGTERM on unchanged, so for a daemon whose graceful signal differs run it under graceshim: graceshim unit --from %s", c.wrapper, c.wrapper, fromHint(c.u)))
}

// lintKillModeNone: systemd kills nothing on stop.
func (c *lintCtx) lintKillModeNone() {
	km, ok := c.u.Get("Service", "KillMode")
	if !ok || km.Value != "none" {
		return
	}
	c.add(km, "KillMode", SeverityError,
		fmt.Sprintf("KillMode=none: systemd signals nothing on stop and leaves %s running outside the unit's control, so a restart starts a second one beside it, and a hung stop is never ended", orDaemon(c.name)),
		fmt.Sprintf("set KillMode=mixed with the daemon's graceful signal as KillSignal=, or run it under graceshim: graceshim unit --from %s", fromHint(c.u)))
}

func orDaemon(name string) string {
	if name == "" {
		return "the daemon"
	}
	return name
}

// lintStop: the signal that reaches the daemon, ExecStop=, TimeoutStopSec=.
func (c *lintCtx) lintStop() {
	if !c.known {
		return
	}
	if km, ok := c.u.Get("Service", "KillMode"); ok && km.Value == "none" {
		// systemd sends no KillSignal= at all then (systemd.kill(5),
		// KillMode=none): lintKillModeNone says what that means.
		return
	}
	p := c.preset
	ks, ksSet := c.value("KillSignal", "SIGTERM")
	killSig, err := signals.Parse(ks.Value)
	if err != nil {
		c.add(ks, "KillSignal", SeverityError, fmt.Sprintf("KillSignal=%s is not a signal systemd knows: %v", ks.Value, err), "use a signal name such as SIGQUIT")
		return
	}
	stop, stopSet := c.stopTimeout()
	if p.Name == "uwsgi" && c.lintUWSGI(ks, ksSet, stop) {
		return
	}

	var signalled, gracefulStop bool
	for _, d := range c.u.List("Service", "ExecStop") {
		sc := commandOf(d)
		if !sc.Sends {
			continue
		}
		signalled = true
		switch {
		case sc.Loses != "":
			c.add(d, "ExecStop", SeverityError,
				fmt.Sprintf("%s stops %s, but %s", sc.What, c.name, sc.Loses),
				fmt.Sprintf("remove ExecStop= and let systemd send SIG%s (%s's graceful stop) with KillMode=mixed, or run %s under graceshim: graceshim unit --from %s", signals.Name(p.Graceful), c.name, c.name, fromHint(c.u)))
		case p.StopsFast(sc.Signal):
			c.add(d, "ExecStop", SeverityError,
				fmt.Sprintf("%s sends %s, %s's fast stop: %s", sc.What, signals.Name(sc.Signal), c.name, fastConsequence(p, sc.Signal)),
				fastStopFix(p, c.name, fromHint(c.u)))
		case sc.Waits && sc.Then != 0:
			c.add(d, "ExecStop", SeverityError,
				fmt.Sprintf("%s gives the graceful stop at most %s, then sends SIG%s itself (%s), cutting requests that take longer", sc.What, formatSpan(sc.Wait), signals.Name(sc.Then), fastOrNot(sc.Then, p)),
				fmt.Sprintf("remove ExecStop=, set KillSignal=SIG%s and a TimeoutStopSec= that covers your longest request, or run %s under graceshim (graceshim unit --from %s), which extends the timeout while connections drain", signals.Name(p.Graceful), c.name, fromHint(c.u)))
		case sc.Waits:
			c.add(d, "ExecStop", SeverityError,
				fmt.Sprintf("%s gives the graceful stop at most %s, then gives up and returns; systemd then sends KillSignal=%s (%s) to what is left, cutting requests that take longer", sc.What, formatSpan(sc.Wait), ks.Value, fastOrNot(killSig, p)),
				fmt.Sprintf("remove ExecStop=, set KillSignal=SIG%s and a TimeoutStopSec= that covers your longest request, or run %s under graceshim (graceshim unit --from %s), which extends the timeout while connections drain", signals.Name(p.Graceful), c.name, fromHint(c.u)))
		case p.StopsGracefully(sc.Signal) && (p.StopsGracefully(killSig) || cannotStop(killSig)):
			// The graceful signal, then one that does not cut it: the
			// stop timeout is what bounds the drain (checked below).
			gracefulStop = true
		case p.StopsGracefully(sc.Signal):
			c.add(d, "ExecStop", SeverityError,
				fmt.Sprintf("%s returns as soon as the signal is sent; systemd then sends KillSignal=%s (%s) to what is left, so the drain %s started is cut", sc.What, ks.Value, fastOrNot(killSig, p), c.name),
				fmt.Sprintf("remove ExecStop= and set KillSignal=SIG%s, or run %s under graceshim: graceshim unit --from %s", signals.Name(p.Graceful), c.name, fromHint(c.u)))
		}
	}
	if !signalled && p.Name == "postgres" && p.StopsGracefully(killSig) {
		// Each backend takes SIGTERM as pg_terminate_backend sends it
		// and ends its session; only the postmaster reads it as the
		// smart shutdown. Measured with Debian's postgresql@.service
		// without its ExecStop= under systemd 252: the log said
		// "received smart shutdown request", yet a 4 s query in flight
		// was ended at once ("terminating connection due to
		// administrator command"), stop 0.04 s, Result=success.
		if km, kmSet := c.value("KillMode", "control-group"); km.Value == "control-group" {
			what := "KillMode=control-group"
			if !kmSet {
				what = "KillMode is not set, so control-group,"
			}
			c.add(km, "KillMode", SeverityError,
				fmt.Sprintf("%s sends KillSignal=%s to every process of the unit: the postmaster takes it as the smart shutdown, but every backend takes it as pg_terminate_backend's signal and ends its session at once, so each transaction in flight is aborted: a fast stop in effect", what, ks.Value),
				fmt.Sprintf("set KillMode=mixed (the signal to the postmaster only) with a TimeoutStopSec= that bounds the wait for sessions, or run postgres under graceshim: graceshim unit --from %s", fromHint(c.u)))
			return
		}
	}
	switch {
	case signalled:
	case cannotStop(killSig):
		c.add(ks, "KillSignal", SeverityError,
			fmt.Sprintf("KillSignal=%s stops nothing and no ExecStop= stops %s: every stop waits out the stop timeout and ends in SIGKILL, cutting whatever is in flight", ks.Value, c.name),
			fmt.Sprintf("set KillSignal=SIG%s (its graceful stop) with KillMode=mixed, or run %s under graceshim: graceshim unit --from %s", signals.Name(p.Graceful), c.name, fromHint(c.u)))
	case !p.StopsGracefully(killSig):
		problem := fmt.Sprintf("KillSignal=%s is", ks.Value)
		if !ksSet {
			problem = "KillSignal is not set, so systemd sends SIGTERM,"
		}
		c.add(ks, "KillSignal", SeverityError,
			fmt.Sprintf("%s %s for %s: %s", problem, fastOrNot(killSig, p), c.name, "in-flight requests are cut on every stop and restart"),
			fmt.Sprintf("set KillSignal=SIG%s (its graceful stop) with KillMode=mixed, or run %s under graceshim: graceshim unit --from %s", signals.Name(p.Graceful), c.name, fromHint(c.u)))
	default:
		gracefulStop = true
	}

	// The daemon's own bound on a graceful stop, when lint can tell.
	if stop.inf || !gracefulStop {
		return
	}
	g := c.daemonGrace()
	switch {
	case g.unbounded:
		c.add(stop.dir, "TimeoutStopSec", SeverityWarning,
			fmt.Sprintf("the stop timeout (%s) is the whole drain: %s; %s waits for every request, so requests still running after %s are cut by SIGKILL and a stop that takes long shows no reason", formatSpan(stop.d), g.what, c.name, formatSpan(stop.d)),
			fmt.Sprintf("set TimeoutStopSec= to cover your longest request, or run %s under graceshim (graceshim unit --from %s), which extends the timeout while connections drain and says why a stop takes long", c.name, fromHint(c.u)))
	case g.known && stop.d < g.d:
		d := stop.dir
		name := d.Name
		if !stopSet {
			name = "TimeoutStopSec"
		}
		c.add(d, name, SeverityError,
			fmt.Sprintf("the stop timeout (%s) is shorter than %s's own grace (%s): systemd kills it with SIGKILL while it still drains", formatSpan(stop.d), c.name, g.what),
			fmt.Sprintf("set TimeoutStopSec= above %s, or run %s under graceshim, which extends the timeout while connections drain", formatSpan(g.d), c.name))
	}
}

// fastConsequence is what a daemon's fast stop does to the work in
// flight, in the daemon's own terms where its docs say more than "cut".
func fastConsequence(p signals.Preset, sig syscall.Signal) string {
	switch p.Name {
	case "postgres":
		if sig == syscall.SIGQUIT {
			// SIGQUIT "is the Immediate Shutdown mode ... This will
			// lead to recovery (by replaying the WAL log) upon next
			// startup" (same page).
			return "the immediate shutdown: every session is ended without a clean shutdown, and the next start replays the WAL (crash recovery)"
		}
		// PostgreSQL 15 docs, "Shutting Down the Server"
		// (https://www.postgresql.org/docs/15/server-shutdown.html):
		// SIGINT "is the Fast Shutdown mode. The server disallows new
		// connections and sends all existing server processes SIGTERM,
		// which will cause them to abort their current transactions
		// and exit promptly".
		return "every session's current transaction is aborted and the session ended at once, without waiting for clients to finish"
	case "php-fpm":
		// sapi/fpm/fpm/fpm_signals.c: SIGTERM and SIGINT are the
		// master's "terminate", which sends each worker SIGTERM; a
		// worker leaves SIGTERM at its default action (only SIGQUIT
		// has a handler there, fpm_signals_init_child), so it ends at
		// once.
		return "the master sends every worker SIGTERM, which ends it at once, so each request a worker is running is lost"
	case "httpd":
		// https://httpd.apache.org/docs/2.4/stopping.html, Stop Now:
		// "Any requests in progress are terminated".
		return "every request in progress is terminated at once (stopping.html, Stop Now)"
	}
	return "in-flight requests are cut at once"
}

// fastStopFix is lint's fix for an ExecStop= that gives the fast stop.
func fastStopFix(p signals.Preset, name, from string) string {
	if p.Name != "postgres" {
		return fmt.Sprintf("remove ExecStop= and set KillSignal=SIG%s with KillMode=mixed, or run %s under graceshim: graceshim unit --from %s", signals.Name(p.Graceful), name, from)
	}
	// A smart shutdown alone waits for every session, and a pooler's or
	// an idle psql's never ends: bound it. KillMode=mixed matters more
	// than anywhere: a backend that gets SIGTERM ends its session
	// (pg_terminate_backend sends it), so the default control-group
	// SIGTERM to every process is a fast stop too.
	return fmt.Sprintf("run postgres under graceshim (graceshim unit --from %s), which sends SIGTERM, %s, to the postmaster only, waits while sessions end and sends the fast stop only after its drain timeout; or stop with -m smart and a TimeoutStopSec= that bounds the wait (an idle pooled session never ends by itself)", from, gracefulWhat(p))
}

// gracefulWhat names a daemon's graceful stop where it has a name of its
// own.
func gracefulWhat(p signals.Preset) string {
	switch p.Name {
	case "postgres":
		// SIGTERM "is the Smart Shutdown mode. After receiving SIGTERM,
		// the server disallows new connections, but lets existing
		// sessions end their work normally" (same page).
		return "PostgreSQL's smart shutdown, which lets open sessions end their work and accepts no new ones"
	case "httpd":
		return "Apache's graceful-stop, which lets requests in progress complete"
	}
	return "its graceful stop"
}

func fastOrNot(sig syscall.Signal, p signals.Preset) string {
	switch {
	case p.NoGracefulStop && p.StopsGracefully(sig):
		return "its stop, which is never graceful"
	case p.StopsGracefully(sig):
		return "its graceful stop"
	case sig == syscall.SIGKILL:
		return "an immediate kill"
	case p.StopsFast(sig):
		return "its fast stop"
	case cannotStop(sig):
		return "a signal that stops nothing"
	}
	return "not its graceful signal"
}

type stopTimeout struct {
	d   time.Duration
	inf bool
	dir Directive
}

// stopTimeout is the stop timeout in force: the last of TimeoutStopSec=
// and TimeoutSec=, which sets it too (systemd.service(5)).
func (c *lintCtx) stopTimeout() (stopTimeout, bool) {
	d, ok := c.u.LastOf("Service", "TimeoutStopSec", "TimeoutSec")
	if !ok {
		return stopTimeout{d: defaultTimeoutStop, dir: Directive{Section: "Service", Name: "TimeoutStopSec"}}, false
	}
	v, inf, parsed := parseSpan(d.Value)
	if !parsed {
		return stopTimeout{inf: true, dir: d}, true
	}
	return stopTimeout{d: v, inf: inf, dir: d}, true
}

// grace is a daemon's own bound on its graceful stop, as far as lint can
// tell: known with a duration, unbounded (it waits for every request), or
// neither (lint cannot tell and says nothing).
type grace struct {
	d                time.Duration
	what             string
	known, unbounded bool
}

// daemonGrace reads the daemon's own bound on a graceful stop: nginx's
// worker_shutdown_timeout, Apache's GracefulShutdownTimeout, Caddy's
// grace_period (each unbounded when not set), gunicorn's
// --graceful-timeout (30 s by default).
func (c *lintCtx) daemonGrace() grace {
	switch c.preset.Name {
	case "nginx", "openresty":
		conf := nginxConfig(c.opts.Root, c.cmd)
		switch {
		case conf.err != nil:
		case conf.shutdownTimeout > 0:
			return grace{d: conf.shutdownTimeout, what: fmt.Sprintf("worker_shutdown_timeout %s in %s", formatSpan(conf.shutdownTimeout), conf.path), known: true}
		default:
			return grace{what: fmt.Sprintf("%s has no worker_shutdown_timeout in %s", c.name, conf.path), unbounded: true}
		}
	case "httpd":
		// httpd.apache.org/docs/2.4/mod/mpm_common.html#gracefulshutdowntimeout:
		// 0 (the default) waits as long as requests run.
		path, d, err := apacheGrace(c.opts.Root, c.cmd)
		switch {
		case err == nil && d > 0:
			return grace{d: d, what: fmt.Sprintf("GracefulShutdownTimeout %s in %s", formatSpan(d), path), known: true}
		case err == nil:
			return grace{what: fmt.Sprintf("GracefulShutdownTimeout is 0 (the default) in %s, so a graceful stop of %s has no bound of its own", path, c.name), unbounded: true}
		default:
			return grace{what: fmt.Sprintf("GracefulShutdownTimeout is 0 by default, so a graceful stop of %s has no bound of its own unless its configuration sets one", c.name), unbounded: true}
		}
	case "caddy":
		// caddyserver.com/docs/caddyfile/options#grace-period: by
		// default the grace period is eternal.
		path, d, err := caddyGrace(c.opts.Root, c.cmd)
		switch {
		case err == nil && d > 0:
			return grace{d: d, what: fmt.Sprintf("grace_period %s in %s", formatSpan(d), path), known: true}
		case err == nil:
			return grace{what: fmt.Sprintf("%s has no grace_period in %s, and Caddy's default grace period has no end", c.name, path), unbounded: true}
		default:
			return grace{what: "Caddy's grace period has no end unless its configuration sets grace_period", unbounded: true}
		}
	case "gunicorn":
		for i, a := range c.cmd {
			v := ""
			switch {
			case a == "--graceful-timeout" && i+1 < len(c.cmd):
				v = c.cmd[i+1]
			case strings.HasPrefix(a, "--graceful-timeout="):
				v = strings.TrimPrefix(a, "--graceful-timeout=")
			}
			if v != "" {
				if n, err := strconv.Atoi(v); err == nil {
					return grace{d: time.Duration(n) * time.Second, what: "--graceful-timeout " + v, known: true}
				}
			}
		}
		return grace{d: 30 * time.Second, what: "graceful_timeout, 30 s by default", known: true}
	}
	return grace{}
}

// lintGraceshim checks a unit that already runs graceshim.
func (c *lintCtx) lintGraceshim() {
	typ, typSet := c.value("Type", "simple")
	if typ.Value != "notify" {
		what := "Type=" + typ.Value
		if !typSet {
			what = "Type is not set (simple)"
		}
		c.add(typ, "Type", SeverityError,
			fmt.Sprintf("%s: systemd ignores graceshim's READY=1, STATUS= and EXTEND_TIMEOUT_USEC=, so a long drain is cut at TimeoutStopSec= and nobody sees why", what),
			"set Type=notify and NotifyAccess=main (graceshim unit writes both)")
	}
	km, kmSet := c.value("KillMode", "control-group")
	if km.Value != "mixed" {
		what := "KillMode=" + km.Value
		if !kmSet {
			what = "KillMode is not set, so control-group,"
		}
		problem := fmt.Sprintf("%s sends SIGTERM to every process of the unit, so %s gets it straight from systemd and graceshim cannot translate it into the graceful signal", what, orDaemon(c.name))
		if km.Value == "process" || km.Value == "none" {
			problem = fmt.Sprintf("KillMode=%s never kills what graceshim leaves behind when graceshim itself fails", km.Value)
		}
		c.add(km, "KillMode", SeverityError, problem, "set KillMode=mixed: SIGTERM to graceshim only, SIGKILL to the rest at the final timeout")
	}
	if ks, ok := c.u.Get("Service", "KillSignal"); ok {
		if sig, err := signals.Parse(ks.Value); err == nil && sig != syscall.SIGTERM && sig != syscall.SIGINT {
			c.add(ks, "KillSignal", SeverityWarning,
				fmt.Sprintf("KillSignal=%s: graceshim translates SIGTERM into the daemon's graceful signal; %s is passed on as it is", ks.Value, signals.Name(sig)),
				"remove KillSignal= (SIGTERM is the default)")
		}
	}
	if c.preset.Name == "uwsgi" {
		c.lintUWSGIGraceshim()
	}
	drain, kill, delay := c.graceshimBounds()
	need := delay + drain + kill
	stop, _ := c.stopTimeout()
	switch {
	case stop.inf:
	case c.opts.SystemdVersion > 0 && c.opts.SystemdVersion < ExtendTimeoutVersion && drain <= 0:
		c.add(stop.dir, "TimeoutStopSec", SeverityError,
			fmt.Sprintf("systemd %d has no EXTEND_TIMEOUT_USEC and graceshim's drain has no bound (--drain-timeout=0), so systemd cuts every drain at the stop timeout (%s)", c.opts.SystemdVersion, formatSpan(stop.d)),
			"give graceshim a --drain-timeout and a TimeoutStopSec= that covers it, or set TimeoutStopSec=infinity")
	case c.opts.SystemdVersion > 0 && c.opts.SystemdVersion < ExtendTimeoutVersion && stop.d < need:
		c.add(stop.dir, "TimeoutStopSec", SeverityError,
			fmt.Sprintf("systemd %d has no EXTEND_TIMEOUT_USEC, so the stop timeout (%s) must cover graceshim's drain delay + drain timeout + kill timeout (%s); systemd kills the drain first", c.opts.SystemdVersion, formatSpan(stop.d), formatSpan(need)),
			fmt.Sprintf("set TimeoutStopSec=%s or regenerate with graceshim unit --systemd-version %d", formatSpan(need+StopMargin), c.opts.SystemdVersion))
	case drain > 0 && stop.d < need:
		// systemd 252 forgets EXTEND_TIMEOUT_USEC on daemon-reload
		// (measured: a reload during a stop under a short TimeoutStopSec
		// killed the drain at once).
		c.add(stop.dir, "TimeoutStopSec", SeverityWarning,
			fmt.Sprintf("the stop timeout (%s) is shorter than graceshim's drain delay + drain timeout + kill timeout (%s): graceshim's EXTEND_TIMEOUT_USEC keeps the stop alive, but a daemon-reload during a stop makes systemd forget it and cut the drain", formatSpan(stop.d), formatSpan(need)),
			fmt.Sprintf("set TimeoutStopSec=%s or regenerate with graceshim unit", formatSpan(need+StopMargin)))
	}
}

// graceshimBounds reads graceshim's drain, kill and delay flags from the
// ExecStart= words.
func (c *lintCtx) graceshimBounds() (drain, kill, delay time.Duration) {
	drain, kill = supervisor.DefaultDrainTimeout, supervisor.DefaultKillTimeout
	for i, a := range c.argv {
		if a == "--" {
			break
		}
		name, v, ok := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !ok && i+1 < len(c.argv) {
			v = c.argv[i+1]
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			continue
		}
		switch name {
		case "drain-timeout", "stop-timeout":
			drain = d
		case "kill-timeout":
			kill = d
		case "drain-delay":
			delay = d
		}
	}
	return drain, kill, delay
}

// lintNotify: Type=notify with a NotifyAccess= that drops the daemon's
// notifications.
func (c *lintCtx) lintNotify() {
	typ, _ := c.value("Type", "simple")
	if typ.Value != "notify" && typ.Value != "notify-reload" {
		return
	}
	na, set := c.value("NotifyAccess", "main")
	switch {
	case na.Value == "none":
		c.add(na, "NotifyAccess", SeverityError,
			"Type=notify with NotifyAccess=none: systemd accepts no READY=1, so every start times out",
			"remove NotifyAccess= (Type=notify implies main)")
	case na.Value == "main" && c.wrapper != "" && c.wrapper != "graceshim":
		how := "NotifyAccess is not set (Type=notify implies main)"
		if set {
			how = "NotifyAccess=main"
		}
		c.add(na, "NotifyAccess", SeverityError,
			fmt.Sprintf("%s, but %s is the main process and the notifications come from %s, its child: systemd drops them, start times out and stop gets no EXTEND_TIMEOUT_USEC", how, c.wrapper, orDaemon(c.name)),
			"set NotifyAccess=all, or run the daemon under graceshim, which notifies itself as the main process")
	}
}

// lintPIDFile: a pid file systemd or the daemon cannot agree on.
func (c *lintCtx) lintPIDFile() {
	pf, ok := c.u.Get("Service", "PIDFile")
	path := pf.Value
	what := "PIDFile"
	if c.wrapper == "graceshim" {
		// graceshim's own --pidfile is what matters then.
		for i, a := range c.argv {
			if a == "--" {
				break
			}
			if v, found := strings.CutPrefix(a, "--pidfile="); found {
				path, what, ok = v, "ExecStart", true
				pf = c.start
			} else if a == "--pidfile" && i+1 < len(c.argv) {
				path, what, ok = c.argv[i+1], "ExecStart", true
				pf = c.start
			}
		}
	}
	if !ok || path == "" || strings.HasPrefix(path, "%") {
		// A specifier (%t/app.pid) expands to an absolute path.
		return
	}
	if !filepath.IsAbs(path) && what == "PIDFile" {
		// systemd prefixes a relative PIDFile= with /run/
		// (systemd.service(5), PIDFile=), or a user manager's runtime
		// directory: not an error.
		path = "/run/" + path
	}
	switch {
	case !filepath.IsAbs(path):
		c.add(pf, what, SeverityError, fmt.Sprintf("pid file %q is not an absolute path: systemd refuses it and the main process is never found", path), "use an absolute path under /run")
		return
	case strings.HasPrefix(path, "/var/run/"):
		c.add(pf, what, SeverityWarning, fmt.Sprintf("pid file %s is under the legacy /var/run: systemd warns on every load and reads /run%s", path, strings.TrimPrefix(path, "/var/run")), "use /run"+strings.TrimPrefix(path, "/var/run"))
	case strings.HasPrefix(path, "/tmp/") || strings.HasPrefix(path, "/var/tmp/"):
		if d, ok := c.u.Get("Service", "PrivateTmp"); ok && isYes(d.Value) && what == "PIDFile" {
			c.add(pf, what, SeverityError, fmt.Sprintf("pid file %s is in /tmp with PrivateTmp=yes: the daemon writes it in its private /tmp, systemd looks in the host's and never finds the main process", path), "put the pid file under /run")
			return
		}
	}
	if c.preset.Name == "nginx" || c.preset.Name == "openresty" {
		conf := nginxConfig(c.opts.Root, c.cmd)
		if conf.err == nil && conf.pid != "" && filepath.Clean(conf.pid) != filepath.Clean(path) && filepath.Clean(conf.pid) != filepath.Clean("/run"+strings.TrimPrefix(path, "/var/run")) {
			c.add(pf, what, SeverityError,
				fmt.Sprintf("pid file %s is not where nginx writes it (pid %s in %s): the master is never found, so the stop signal goes nowhere", path, conf.pid, conf.path),
				fmt.Sprintf("make them agree: %s=%s", what, conf.pid))
		}
	}
}

func isYes(v string) bool {
	switch strings.ToLower(v) {
	case "yes", "true", "on", "1":
		return true
	}
	return false
}

// nginxConf is what lint reads from nginx's configuration.
type nginxConf struct {
	path            string
	shutdownTimeout time.Duration
	pid             string
	err             error
}

var (
	nginxComment   = regexp.MustCompile(`(?m)#.*$`)
	nginxDirective = regexp.MustCompile(`(?m)(?:^|[;{}])\s*(worker_shutdown_timeout|pid)\s+([^;\s]+)\s*;`)
)

// nginxConfig reads the settings that decide a stop from the config an
// nginx command line names. Where that config is follows nginx's own
// rules (ngx_process_options in src/core/nginx.c): -c FILE, relative to
// the -p prefix when given, else to the compiled-in prefix; without -c,
// the compiled-in path, relative to the prefix when it is relative. The compiled-in paths come from the
// binary's location: /usr/sbin/nginx is a distribution's build
// (/etc/nginx/nginx.conf: Debian, Fedora, Arch); PREFIX/sbin/nginx and
// OpenResty use PREFIX/conf/nginx.conf (nginx's configure default;
// OpenResty's prefix is /usr/local/openresty/nginx). Elsewhere, on this
// host, `nginx -V` tells; otherwise lint says nothing rather than read
// another nginx's file. -g directives override the file. It reads the
// main file only, not its includes: these two settings live in the main
// context.
func nginxConfig(root string, cmd []string) nginxConf {
	var conf nginxConf
	if len(cmd) == 0 {
		conf.err = errors.New("no command")
		return conf
	}
	prefix, confPath, err := nginxBuild(root, cmd[0])
	// nginx's own option parsing (ngx_get_options in src/core/nginx.c):
	// flags may be clustered (-tq), and -c, -p, -g, -e and -s take the
	// rest of their word or, when it is empty, the next word (measured
	// with nginx 1.22: "-c/tmp/x.conf" and "-tc/tmp/x.conf" test
	// /tmp/x.conf).
	var global, cflag, pflag string
	for i := 1; i < len(cmd); i++ {
		a := cmd[i]
		if len(a) < 2 || a[0] != '-' {
			continue // nginx: "invalid option"
		}
		for j := 1; j < len(a); j++ {
			switch f := a[j]; f {
			case 'c', 'p', 'g', 'e', 's':
				v := a[j+1:]
				if v == "" && i+1 < len(cmd) {
					i++
					v = cmd[i]
				}
				switch f {
				case 'c':
					cflag = v
				case 'p':
					pflag = v
				case 'g':
					global = v
				}
				j = len(a)
			}
		}
	}
	if pflag != "" {
		prefix = pflag
	}
	switch {
	case cflag != "" && filepath.IsAbs(cflag):
		conf.path = cflag
	case cflag != "" && prefix != "":
		// A relative -c is under the prefix, -p or the compiled-in one
		// (ngx_process_options: ngx_conf_full_name(cycle,
		// &cycle->conf_file, 0); measured with Debian's nginx 1.22:
		// "nginx -t -c nginx.conf" opens /usr/share/nginx/nginx.conf).
		conf.path = filepath.Join(prefix, cflag)
	case cflag == "" && err == nil && filepath.IsAbs(confPath):
		conf.path = confPath
	case cflag == "" && prefix != "" && confPath != "":
		conf.path = filepath.Join(prefix, confPath)
	default:
		conf.err = fmt.Errorf("cannot tell which configuration %s reads: %v", cmd[0], err)
		return conf
	}
	read := conf.path
	if root != "" {
		read = filepath.Join(root, conf.path)
	}
	data, err := os.ReadFile(read)
	if err != nil {
		conf.err = err
		return conf
	}
	text := nginxComment.ReplaceAllString(string(data), "") + "\n" + global
	for _, m := range nginxDirective.FindAllStringSubmatch(text, -1) {
		switch m[1] {
		case "worker_shutdown_timeout":
			if d, ok := nginxTime(m[2]); ok {
				conf.shutdownTimeout = d
			}
		case "pid":
			conf.pid = m[2]
			if !filepath.IsAbs(conf.pid) && prefix != "" {
				conf.pid = filepath.Join(prefix, conf.pid)
			}
		}
	}
	return conf
}

var nginxV = regexp.MustCompile(`--(prefix|conf-path)=(\S+)`)

// nginxBuild returns the compiled-in prefix and configuration path of the
// nginx binary at path (see nginxConfig).
func nginxBuild(root, path string) (prefix, confPath string, err error) {
	switch {
	case path == "/usr/sbin/nginx" || path == "/usr/bin/nginx" || path == "/sbin/nginx":
		return "/usr/share/nginx", "/etc/nginx/nginx.conf", nil
	case filepath.Base(path) == "openresty" && !strings.HasSuffix(filepath.Dir(path), "/nginx/sbin"):
		// OpenResty's bin/openresty (and the packages' /usr/bin/openresty)
		// link to /usr/local/openresty/nginx/sbin/nginx.
		return "/usr/local/openresty/nginx", "conf/nginx.conf", nil
	case filepath.Base(filepath.Dir(path)) == "sbin" && filepath.IsAbs(path) && !slices.Contains([]string{"/", "/usr", "/usr/local"}, filepath.Dir(filepath.Dir(path))):
		return filepath.Dir(filepath.Dir(path)), "conf/nginx.conf", nil
	}
	if root != "" || !filepath.IsAbs(path) {
		return "", "", fmt.Errorf("%s is not a build lint knows", path)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "-V").CombinedOutput()
	if err != nil {
		return "", "", fmt.Errorf("cannot run %s -V: %w", path, err)
	}
	for _, m := range nginxV.FindAllStringSubmatch(string(out), -1) {
		if m[1] == "prefix" {
			prefix = m[2]
		} else {
			confPath = m[2]
		}
	}
	if confPath == "" {
		confPath = "conf/nginx.conf"
	}
	if prefix == "" && !filepath.IsAbs(confPath) {
		return "", "", fmt.Errorf("%s -V names no prefix", path)
	}
	return prefix, confPath, nil
}

// nginxTime reads an nginx time ("30s", "1m", "500ms", "10" seconds).
func nginxTime(s string) (time.Duration, bool) {
	units := map[string]time.Duration{"ms": time.Millisecond, "s": time.Second, "m": time.Minute, "h": time.Hour, "d": 24 * time.Hour}
	var total time.Duration
	re := regexp.MustCompile(`(\d+)(ms|s|m|h|d)?`)
	rest := s
	for rest != "" {
		m := re.FindStringSubmatchIndex(rest)
		if m == nil || m[0] != 0 {
			return 0, false
		}
		n, _ := strconv.Atoi(rest[m[2]:m[3]])
		u := time.Second
		if m[4] >= 0 {
			u = units[rest[m[4]:m[5]]]
		}
		total += time.Duration(n) * u
		rest = rest[m[1]:]
	}
	return total, total > 0
}
