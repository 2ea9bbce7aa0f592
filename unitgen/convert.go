package unitgen

import (
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/unit"

	"github.com/graceshim/graceshim/signals"
)

// dropped are [Service] directives a graceshim unit sets itself or that no
// longer apply, with the reason given in the converted unit.
var dropped = map[string]string{
	"Type":            "graceshim speaks sd_notify: Type=notify",
	"NotifyAccess":    "only graceshim (the main process) notifies: NotifyAccess=main",
	"PIDFile":         "systemd's main process is graceshim now; graceshim follows the daemon itself",
	"KillMode":        "KillMode=mixed, so that systemd's SIGTERM reaches graceshim only",
	"KillSignal":      "graceshim takes systemd's SIGTERM and sends the daemon its graceful signal",
	"TimeoutStopSec":  "derived from graceshim's drain bounds and the systemd version",
	"TimeoutSec":      "TimeoutStartSec= and TimeoutStopSec= are derived from graceshim's bounds",
	"SendSIGKILL":     "graceshim escalates itself; systemd's SIGKILL stays as the last resort",
	"RemainAfterExit": "meaningless for Type=notify",
	"GuessMainPID":    "meaningless for Type=notify",
	"ReloadSignal":    "only Type=notify-reload sends it; ExecReload=graceshim reload $MAINPID reloads the daemon now",
}

// ConvertResult is a converted unit and what was changed.
type ConvertResult struct {
	Unit []byte
	// Notes say what was dropped or changed and why; they are also in
	// the unit as comments.
	Notes []string
	// Warnings are things to check by hand.
	Warnings []Warning
	// Options are the generator options used, Argv filled from the
	// original ExecStart=.
	Options Options
}

// converter holds what Convert learns about the unit as it goes.
type converter struct {
	u *Unit
	o Options
	r *ConvertResult
	// dropPre holds the lines of the ExecStartPre= commands dropped:
	// HAProxy's config check, which fails on bind fd@N without the
	// sockets (fdBindTest).
	dropPre map[int]bool
	name    string // the daemon's base name, for messages
	// reloads are the ExecReload= values of the converted unit, in order.
	reloads []string
	// keepStop and keepStart keep the unit's own stop and start timeouts.
	keepStop, keepStart bool
	// execPaths is an ExecPaths= to add for graceshim ("" for none).
	execPaths string
	// dropWatchdog says WatchdogSec= is dropped from the unit.
	dropWatchdog bool
	// relay says graceshim relays the daemon's sd_notify messages.
	relay bool
	// rewrapped says the unit ran graceshim already (converted before).
	rewrapped bool
}

func (c *converter) note(format string, a ...any) {
	c.r.Notes = append(c.r.Notes, fmt.Sprintf(format, a...))
}

func (c *converter) warn(line int, format string, a ...any) {
	c.r.Warnings = append(c.r.Warnings, Warning{c.u.File, line, fmt.Sprintf(format, a...)})
}

// Convert turns u into a unit (or, with dropin, a drop-in for
// /etc/systemd/system/NAME.service.d/) that runs u's daemon under
// graceshim. It keeps what still applies (Description, After, User,
// Environment, ExecStartPre, LimitNOFILE, sandboxing, a reload command of
// the daemon's own) and replaces what graceshim does instead (PIDFile, an
// ExecStop= or ExecReload= that signals the daemon, KillSignal, KillMode,
// TimeoutStopSec). A reload is never dropped without one that works:
// `graceshim reload $MAINPID`. o gives graceshim's flags; o.Argv is
// ignored.
func Convert(u *Unit, o Options, dropin bool) (*ConvertResult, error) {
	if err := CheckServer(u); err != nil {
		return nil, err
	}
	if err := checkDelegate(u); err != nil {
		return nil, err
	}
	if o.Socket != "" {
		if err := CheckNoSocketYet(u); err != nil {
			return nil, err
		}
	}
	r := &ConvertResult{}
	c := &converter{u: u, r: r}
	starts := u.List("Service", "ExecStart")
	switch len(starts) {
	case 0:
		return nil, fmt.Errorf("%s: no ExecStart= in [Service]: nothing to run under graceshim", u.File)
	case 1:
	default:
		return nil, fmt.Errorf("%s:%d: %d ExecStart= commands (only Type=oneshot can have more): not a server to run under graceshim", u.File, starts[1].Line, len(starts))
	}
	start := starts[0]
	line, err := SplitExec(start.Value)
	if err != nil {
		return nil, fmt.Errorf("%s:%d: ExecStart=: %w", u.File, start.Line, err)
	}
	if strings.Contains(line.Prefix, "@") {
		return nil, fmt.Errorf("%s:%d: ExecStart= with '@' (a different argv[0]) cannot be run under graceshim", u.File, start.Line)
	}
	if len(line.Words) == 0 {
		return nil, fmt.Errorf("%s:%d: empty ExecStart=", u.File, start.Line)
	}
	argv := line.Argv()
	cmd, wrapper, at, err := inner(argv)
	if err != nil {
		return nil, fmt.Errorf("%s:%d: ExecStart=: %w", u.File, start.Line, err)
	}
	if len(cmd) == 0 {
		return nil, fmt.Errorf("%s:%d: ExecStart= runs %s without a command", u.File, start.Line, wrapper)
	}
	tail := line.RawTail(at)
	runFlags := o.RunFlags
	// rawFlags are graceshim flags already in unit syntax, written as they
	// are: their variables and specifiers must still expand.
	var rawFlags []string
	switch wrapper {
	case "":
	case "graceshim":
		// The unit's graceshim flags stay, but for those given again on
		// the command line, which win; the bounds they set decide the
		// unit's timeouts as they did before.
		for _, f := range existingFlags(line.Words[1:at]) {
			if setIn(runFlags, f.name) {
				continue
			}
			rawFlags = append(rawFlags, f.raw...)
			if err := c.keepFlag(&o, f, start.Line); err != nil {
				return nil, err
			}
		}
		c.rewrapped = true
		c.note("ExecStart= already ran graceshim: its command and flags are kept, its unit settings are made right")
	default:
		c.note("ExecStart=: graceshim replaces %s (graceshim is a subreaper too, and translates signals rather than passing them on)", wrapper)
	}
	// Debian's pg_ctlcluster start runs pg_ctl, which starts postgres in
	// the background and exits only once it is up (measured with
	// postgresql-common 248: 2.2 s). graceshim follows it by the pid
	// file, but a stop that comes before pg_ctlcluster has exited
	// signals pg_ctlcluster, not postgres (measured under systemd 252:
	// a stop 1 s after start killed pg_ctlcluster and systemd's final
	// SIGTERM then ended the sessions in flight). With --foreground it
	// execs postgres in its own pid instead (`exec /bin/sh -c "exec
	// $postgres ..."`, pg_ctlcluster's start()), so graceshim runs the
	// postmaster itself; --stdlog keeps its log in the cluster's log
	// file, where pg_ctl -l wrote it (pg_ctlcluster(1)).
	pgForeground := false
	if filepath.Base(cmd[0]) == "pg_ctlcluster" && pgDaemonizes(cmd) {
		pgForeground = true
		tail = line.Words[at].Raw + " --foreground --stdlog " + line.RawTail(at+1)
		cmd = append([]string{cmd[0], "--foreground", "--stdlog"}, cmd[1:]...)
		c.note("ExecStart=: pg_ctlcluster --foreground --stdlog: it runs postgres in its own pid rather than in the background through pg_ctl, so graceshim runs the postmaster itself and no pid file is needed; the log stays in the cluster's log file")
	}
	o.Argv = cmd
	daemon := daemonArgv(cmd)
	if len(daemon) == 0 {
		daemon = cmd
	}
	c.name = filepath.Base(daemon[0])
	if line.Words[at].Variable || line.Words[at].Specifier {
		c.warn(start.Line, "the command %q is only known at run time; graceshim picks the preset then (pass --preset to be sure)", cmd[0])
	}
	has := func(flag string) bool {
		for _, f := range append(append([]string(nil), runFlags...), rawFlags...) {
			if strings.HasPrefix(f, "--"+flag+"=") || f == "--"+flag {
				return true
			}
		}
		return false
	}
	if o.Preset.Graceful == 0 {
		o.Preset, _ = signals.ForCommand(daemon[0])
		if daemon[0] != cmd[0] && o.Preset.Name != "generic" && !has("preset") {
			// graceshim picks the preset from argv[0] (env, sh): say which.
			runFlags = append(runFlags, "--preset="+o.Preset.Name)
			c.note("ExecStart= runs %s through %s: --preset=%s", c.name, filepath.Base(cmd[0]), o.Preset.Name)
		}
	}

	if o.Preset.Name == "uwsgi" {
		if w := uwsgiConvertWarning(u, daemon); w != "" {
			c.warn(start.Line, "%s", w)
		}
	}

	typ, _ := u.Get("Service", "Type")
	if pf, ok := u.Get("Service", "PIDFile"); ok && typ.Value == "forking" && !has("pidfile") && !pgForeground {
		if rel := pf.Value; rel != "" && !filepath.IsAbs(rel) && !strings.HasPrefix(rel, "%") {
			// systemd prefixes a relative PIDFile= with /run/
			// (systemd.service(5), PIDFile=); graceshim would resolve
			// it against its working directory. A user manager uses
			// its runtime directory instead, which this unit alone
			// does not tell.
			pf.Value = "/run/" + rel
			c.note("PIDFile=%s is relative: systemd reads it under /run/, so --pidfile=%s (a user unit's is %%t/%s)", rel, pf.Value, rel)
		}
		if strings.Contains(pf.Value, "%") && !strings.ContainsAny(pf.Value, " \t\"'\\$;") {
			// PIDFile= expands specifiers (%t/app.pid); so does ExecStart=
			// when the word is written as it is.
			rawFlags = append(rawFlags, "--pidfile="+pf.Value)
		} else {
			runFlags = append(runFlags, "--pidfile="+pf.Value)
		}
		c.note("Type=forking with PIDFile=%s: graceshim follows the daemonized master with --pidfile", pf.Value)
	}
	if pf, env := apachectlPIDFile(u, daemon); typ.Value == "forking" && pf != "" && !has("pidfile") {
		if strings.Contains(pf, "%") {
			rawFlags = append(rawFlags, "--pidfile="+pf)
		} else {
			runFlags = append(runFlags, "--pidfile="+pf)
		}
		c.note("apachectl start leaves Apache running as a daemon, its pid file at $APACHE_PID_FILE of Debian's /etc/apache2/envvars (/run/apache2$SUFFIX/apache2.pid, SUFFIX from %s): graceshim follows it with --pidfile=%s", env, pf)
	}
	if pgDaemonizes(cmd) && !has("pidfile") {
		// graceshim follows a daemonized master only through its pid
		// file (supervisor/doc.go): without one, pg_ctl's exit would
		// look like the server's.
		return nil, fmt.Errorf("%s:%d: ExecStart= %s start runs postgres in the background (pg_ctl start) and the unit has no Type=forking with PIDFile=: graceshim follows a daemonized server only through its pid file; add PIDFile= naming postgresql.conf's external_pid_file (Debian's: /run/postgresql/VERSION-CLUSTER.pid), or start it in the foreground (pg_ctlcluster --foreground)", u.File, start.Line, filepath.Base(cmd[0]))
	}
	if pf, ok := u.Get("Service", "PIDFile"); ok && pgDaemonizes(cmd) && filepath.Base(pf.Value) == "postmaster.pid" {
		// postmaster.pid holds the pid on its first line and the data
		// directory, start time, port, socket directory, listen address,
		// shared memory key and status on the next ones (PostgreSQL
		// docs, "Database File Layout"; measured with PostgreSQL 15: 8
		// lines, the last "ready"), where external_pid_file holds the
		// pid alone; systemd reads the first line only, graceshim's
		// --pidfile a file of one pid.
		return nil, fmt.Errorf("%s:%d: PIDFile=%s: postmaster.pid holds more than the pid (PostgreSQL writes its data directory, port and status on the lines after it) and graceshim's --pidfile reads a file of one pid; name postgresql.conf's external_pid_file in PIDFile= instead, or run postgres itself in the foreground (ExecStart=.../bin/postgres -D DATADIR, as the PostgreSQL docs' systemd unit does)", u.File, pf.Line, pf.Value)
	}
	if m, why := c.stopMap(o.Preset); m != "" && !has("map") && !has("preset") {
		runFlags = append(runFlags, "--map="+m)
		o.MapOver, _ = signals.ParseMap(m)
		c.note("%s", why)
	}
	// A unit of Type=notify says its daemon speaks sd_notify: graceshim
	// relays what it tells systemd (--notify=relay) when its preset does
	// not already say so (squid, varnish, a daemon without a preset).
	if (typ.Value == "notify" || typ.Value == "notify-reload") && wrapper != "graceshim" && !o.Preset.NativeNotify && !has("notify") {
		runFlags = append(runFlags, "--notify=relay")
		c.relay = true
		c.note("Type=%s: %s tells systemd itself when it is ready, so graceshim relays its notifications with --notify=relay", typ.Value, c.name)
	}
	if has("notify=relay") || has("notify=off") {
		c.relay = has("notify=relay")
	} else if o.Preset.NativeNotify {
		c.relay = true
	}
	// The reload signal of a daemon without a preset comes from the
	// unit's own reload: kill -USR1 $MAINPID for lighttpd becomes
	// --map=HUP:USR1, kill -HUP for squid keeps HUP.
	if o.Preset.Name == "generic" && !has("map") && !has("preset") {
		for _, d := range u.List("Service", "ExecReload") {
			if sc := commandOf(d); sc.Sends && !cannotStop(sc.Signal) {
				o.Reloads = true
				if sc.Signal != syscall.SIGHUP {
					m := "HUP:" + signals.Name(sc.Signal)
					if i := slices.IndexFunc(runFlags, func(f string) bool { return strings.HasPrefix(f, "--map=") }); i >= 0 {
						runFlags[i] += "," + m
					} else {
						runFlags = append(runFlags, "--map="+m)
					}
					over, _ := signals.ParseMap(m)
					o.MapOver = o.MapOver.Merge(over)
				}
				break
			}
		}
	}
	// Type=notify-reload (systemd 253): systemctl reload sends the main
	// process ReloadSignal= (SIGHUP by default) and waits for the
	// daemon's RELOADING=1 and READY=1 (systemd.service(5)). graceshim is
	// the main process now and Type=notify: the reload becomes
	// ExecReload=graceshim reload $MAINPID (convertReload), which sends
	// the daemon its signal, HUP mapped to ReloadSignal= when that is
	// another one.
	if typ.Value == "notify-reload" && wrapper != "graceshim" && len(u.List("Service", "ExecReload")) == 0 && !has("map") && !has("preset") {
		sig := syscall.SIGHUP
		if rs, ok := u.Get("Service", "ReloadSignal"); ok {
			s, err := signals.Parse(rs.Value)
			if err != nil {
				c.warn(rs.Line, "ReloadSignal=%s: %v", rs.Value, err)
			} else {
				sig = s
			}
		}
		ours := syscall.SIGHUP
		if o.Preset.Name != "generic" && o.Preset.Reload != 0 {
			ours = o.Preset.Reload
		}
		if o.Preset.Name == "generic" {
			o.Reloads = true
		}
		if sig != ours && o.Preset.ReloadCommand == nil && !cannotStop(sig) {
			m := "HUP:" + signals.Name(sig)
			if i := slices.IndexFunc(runFlags, func(f string) bool { return strings.HasPrefix(f, "--map=") }); i >= 0 {
				runFlags[i] += "," + m
			} else {
				runFlags = append(runFlags, "--map="+m)
			}
			over, _ := signals.ParseMap(m)
			o.MapOver = o.MapOver.Merge(over)
			c.note("Type=notify-reload reloaded %s with SIG%s: graceshim reload sends it with --map=%s", c.name, signals.Name(sig), m)
		} else {
			c.note("Type=notify-reload reloaded %s with SIG%s: graceshim reload sends it", c.name, signals.Name(sig))
		}
	}
	o.RunFlags = runFlags
	o.setDefaults()

	head := append([]string{o.Graceshim}, o.RunFlags...)
	headV, err := JoinExec(head)
	if err != nil {
		return nil, fmt.Errorf("cannot write ExecStart=: %w", err)
	}
	for _, f := range rawFlags {
		headV += " " + f
	}
	headV += " --"
	if err := checkGraceshimPath(o.Graceshim); err != nil {
		return nil, err
	}
	if strings.Contains(line.Prefix, ":") && strings.Contains(headV, "$") {
		return nil, fmt.Errorf("%s:%d: ExecStart= with ':' (no variable expansion) cannot carry graceshim flags with '$'", u.File, start.Line)
	}
	execV := line.Prefix + headV + " " + tail
	c.o = o

	// ExecStop=: drop what signals the daemon.
	var keptStops []Directive
	for _, d := range u.List("Service", "ExecStop") {
		if sc := commandOf(d); sc.Sends {
			if o.Preset.StopsFast(sc.Signal) {
				// The unit's stop was the fast one (Debian's
				// postgresql@.service: pg_ctlcluster -m fast stop);
				// graceshim's stop is the graceful one, bounded by
				// its drain timeout, after which it escalates.
				c.note("dropped ExecStop=%s (%s, %s's fast stop: %s): graceshim sends SIG%s, %s, waits while connections drain and sends the fast stop only after --drain-timeout", d.Value, sc.What, c.name, fastConsequence(o.Preset, sc.Signal), signals.Name(o.Preset.Graceful), gracefulWhat(o.Preset))
				continue
			}
			c.note("dropped ExecStop=%s (%s): graceshim's drain replaces it", d.Value, sc.What)
			continue
		}
		keptStops = append(keptStops, d)
		c.warn(d.Line, "ExecStop= kept: it runs before systemd's SIGTERM, so graceshim's drain starts only after it returns")
	}
	if err := c.convertReload(); err != nil {
		return nil, err
	}
	for _, d := range u.List("Service", "ExecStartPre") {
		if c.fdBindTest(d) {
			if c.dropPre == nil {
				c.dropPre = map[int]bool{}
			}
			c.dropPre[d.Line] = true
		}
	}
	c.keepStart = keptTimeoutStart(u, o)
	for _, d := range u.Directives {
		if d.Section != "Service" {
			continue
		}
		if d.Name == "TimeoutSec" && c.keepStart && !c.longerStop() {
			c.note("replaced TimeoutSec=%s as the stop timeout: derived from graceshim's drain bounds and the systemd version", d.Value)
			continue
		}
		if why, ok := dropped[d.Name]; ok && !(d.Name == "KillMode" && d.Value == "mixed") && !(d.Name == "Type" && d.Value == "notify") {
			if (d.Name == "TimeoutStopSec" || d.Name == "TimeoutSec") && c.longerStop() {
				continue
			}
			c.note("replaced %s=%s: %s", d.Name, d.Value, why)
			if d.Name == "KillMode" && d.Value == "process" {
				// systemd.kill(5): process kills the main process only
				// and leaves the rest; mixed SIGKILLs the rest once the
				// stop ends. What the daemon left running on purpose
				// (helpers, a live-restore's processes) goes with it.
				c.warn(d.Line, "KillMode=process replaced by mixed: processes of the unit that outlive the daemon's stop, which KillMode=process left running, are now killed with SIGKILL when it ends")
			}
		}
	}
	if ts, ok := u.LastOf("Service", "TimeoutStartSec", "TimeoutSec"); ok && c.keepStart {
		c.o.keptStart = ts.Name + "=" + ts.Value
		o.keptStart = c.o.keptStart
		if ts.Name == "TimeoutSec" {
			c.note("kept TimeoutSec=%s as TimeoutStartSec=: longer than graceshim needs", ts.Value)
		} else {
			c.note("kept TimeoutStartSec=%s: longer than graceshim needs", ts.Value)
		}
	}
	if d, ok := c.stopTimeoutDirective(); ok && c.longerStop() {
		c.keepStop = true
		c.o.keptStop = d.Name + "=" + d.Value
		o.keptStop = c.o.keptStop
		c.note("kept %s=%s: the unit gives a stop more time than graceshim's own bound (or no bound at all), and that stays the admin's choice; graceshim still escalates after its --drain-timeout", d.Name, d.Value)
	}
	if _, ok := u.Get("Service", "Restart"); !ok {
		// Written below (unitOptions, dropinOptions), as graceshim's own
		// units have it: said here, so that no change goes unmentioned.
		c.note("added Restart=on-failure: the unit had no Restart= (systemd's default is no); set Restart=no to keep that")
	}
	c.convertNotify()
	c.sandbox()
	c.mainPIDUses(keptStops)

	var opts []*unit.UnitOption
	if dropin {
		opts = c.dropinOptions(execV, keptStops)
	} else {
		opts = c.unitOptions(execV, keptStops)
	}
	if o.Hardening {
		have := map[string]bool{}
		for _, d := range u.Directives {
			if d.Section == "Service" {
				have[d.Name] = true
			}
		}
		opts = insertBeforeInstall(opts, hardeningOptions(o.SystemdVersion, have))
	}
	rl, err := reloadExec(o.Graceshim)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	b.WriteString(header(o, dropin, slices.Contains(c.reloads, rl)))
	b.WriteString("#\n")
	if u.Path != "" {
		// systemctl cat's output through a pipe: the pipe's name
		// (/dev/fd/63) means nothing once the command has run.
		fmt.Fprintf(&b, "# Converted from systemctl cat %s (%s and its drop-ins).\n", filepath.Base(u.Path), u.Path)
	} else {
		fmt.Fprintf(&b, "# Converted from %s.\n", u.File)
	}
	for _, n := range r.Notes {
		for _, l := range wrapComment([]string{n}) {
			b.WriteString("# " + l + "\n")
		}
	}
	out, err := render(b.String(), opts)
	if err != nil {
		return nil, err
	}
	r.Unit = out
	r.Options = o
	return r, nil
}

// apachectlPIDFile is the pid file of the Apache that Debian's `apachectl
// start` (apache2ctl) daemonizes: /etc/apache2/envvars sets
// APACHE_PID_FILE=/var/run/apache2$SUFFIX/apache2.pid, SUFFIX being
// "-NAME" for APACHE_CONFDIR=/etc/apache2-NAME (apache2@.service). ""
// when the command is not apachectl start.
func apachectlPIDFile(u *Unit, daemon []string) (pf, from string) {
	if len(daemon) != 2 || daemon[1] != "start" {
		return "", ""
	}
	if b := filepath.Base(daemon[0]); b != "apachectl" && b != "apache2ctl" {
		return "", ""
	}
	suffix, from := "", "the default APACHE_CONFDIR=/etc/apache2"
	for _, d := range u.List("Service", "Environment") {
		for _, kv := range strings.Fields(d.Value) {
			if v, ok := strings.CutPrefix(strings.Trim(kv, `"`), "APACHE_CONFDIR="); ok {
				suffix, from = "", "Environment=APACHE_CONFDIR="+v
				if name, ok := strings.CutPrefix(v, "/etc/apache2-"); ok {
					suffix = "-" + name
				}
			}
		}
	}
	return "/run/apache2" + suffix + "/apache2.pid", from
}

// stopMap is the --map a daemon without a preset needs to get the stop
// signal its unit gave it: KillSignal= when it stops anything, else the
// signal of an ExecStop= that signals the daemon (Red Hat's SCL httpd:
// ExecStop=/bin/kill -WINCH ${MAINPID} with a KillSignal=SIGCONT that
// only makes systemd wait).
func (c *converter) stopMap(p signals.Preset) (m, why string) {
	if p.Name != "generic" {
		return "", ""
	}
	ks, ok := c.u.Get("Service", "KillSignal")
	if ok {
		sig, err := signals.Parse(ks.Value)
		switch {
		case err != nil:
			c.warn(ks.Line, "KillSignal=%s: %v", ks.Value, err)
			return "", ""
		case !cannotStop(sig):
			if sig == syscall.SIGTERM {
				return "", ""
			}
			m = "TERM:" + signals.Name(sig) + ",INT:" + signals.Name(sig)
			return m, fmt.Sprintf("KillSignal=%s was the daemon's stop signal: graceshim sends it with --map=%s", ks.Value, m)
		}
	}
	for _, d := range c.u.List("Service", "ExecStop") {
		sc := commandOf(d)
		if !sc.Sends || sc.Signal == syscall.SIGTERM || cannotStop(sc.Signal) {
			continue
		}
		m = "TERM:" + signals.Name(sc.Signal) + ",INT:" + signals.Name(sc.Signal)
		why = fmt.Sprintf("ExecStop=%s stopped the daemon with %s: graceshim sends it with --map=%s", d.Value, signals.Name(sc.Signal), m)
		if ok {
			why += fmt.Sprintf(" (KillSignal=%s stops nothing: it only made systemd wait after ExecStop=)", ks.Value)
		}
		return m, why
	}
	if ok {
		c.note("KillSignal=%s stops nothing (it only made systemd wait after ExecStop=): graceshim sends the daemon SIGTERM", ks.Value)
	}
	return "", ""
}

// convertReload decides the ExecReload= lines. A command that signals
// the daemon is replaced by graceshim reload (which reaches the daemon,
// where $MAINPID is graceshim now); a reload command of the daemon's own
// (caddy reload, httpd -k graceful, varnishreload) is kept as it is. A
// reload that tested the configuration first (apachectl graceful) keeps
// that test. A reload is dropped only when the daemon has none graceshim
// can do, and then said loudly.
func (c *converter) convertReload() error {
	o := c.o
	rs := c.u.List("Service", "ExecReload")
	dropped := false
	for _, d := range rs {
		if isGraceshimReload(d) {
			// A unit converted before: its reload is graceshim's own,
			// written again below with this unit's graceshim path.
			dropped = true
			o.Reloads = true
			continue
		}
		sc := commandOf(d)
		if !sc.Sends && c.fdBindTest(d) {
			dropped = true
			continue
		}
		if !sc.Sends {
			c.reloads = append(c.reloads, d.Value)
			continue
		}
		dropped = true
		if !o.reloads() {
			c.note("dropped ExecReload=%s (%s): %s has no reload graceshim knows, and %s would reach it through $MAINPID, which is graceshim now", d.Value, sc.What, c.name, signals.Name(sc.Signal))
			c.warn(d.Line, "ExecReload=%s dropped: %s has no reload signal graceshim knows; give one with --map=HUP:SIGNAL to keep systemctl reload", d.Value, c.name)
			continue
		}
		c.note("replaced ExecReload=%s (%s): graceshim reload $MAINPID reaches %s through graceshim, as %s", d.Value, sc.What, c.name, c.reloadWhat())
		if sc.Tested != "" {
			line, err := SplitExec(d.Value)
			if err == nil && len(line.Words) > 0 {
				test := line.Prefix + line.Words[0].Raw + " " + sc.Tested
				c.reloads = append(c.reloads, test)
				c.note("%s tested the configuration before it signalled; ExecReload=%s keeps that test first, so a broken configuration fails the reload and the daemon keeps serving", sc.What, test)
			}
		}
	}
	if o.Preset.Name == "caddy" && len(rs) == 0 && caddyResumes(DaemonArgv(o.Argv)) {
		c.note("no ExecReload= added: caddy run --resume takes its configuration through its admin API, and caddy reload, which reads a file, has none to read")
	}
	if o.Preset.Name == "uwsgi" && len(rs) == 0 {
		if why := uwsgiReloadLosesSockets(c.u, DaemonArgv(o.Argv)); why != "" {
			// The unit had no reload; one that ends uwsgi is worse.
			c.note("no ExecReload= added: %s, and without them the reloaded uwsgi exits", why)
			c.warn(0, "no ExecReload= added: %s; once they are named, add ExecReload=%s reload $MAINPID", why, o.Graceshim)
			return nil
		}
	}
	// graceshim reload when the unit's reload signalled the daemon, or
	// when the unit had no reload and the daemon has one.
	if o.reloads() && (dropped || len(rs) == 0) {
		rl, err := reloadExec(o.Graceshim)
		if err != nil {
			return err
		}
		c.reloads = append(c.reloads, rl)
	}
	return nil
}

// checkDelegate refuses a unit that delegates its cgroup and keeps what
// runs in it across its own stop (Delegate=yes with KillMode=process or
// none: docker.service, containerd.service): a container manager whose
// containers, or their shims, live in the unit's cgroup and are meant to
// survive a restart of the manager. graceshim's unit needs KillMode=mixed,
// under which systemd SIGKILLs every process left in the cgroup when the
// stop ends (systemd.kill(5)): each stop would kill them.
func checkDelegate(u *Unit) error {
	dl, ok := u.Get("Service", "Delegate")
	if !ok || dl.Value == "" || strings.EqualFold(dl.Value, "no") || strings.EqualFold(dl.Value, "false") || dl.Value == "0" {
		return nil
	}
	km, ok := u.Get("Service", "KillMode")
	if !ok || (km.Value != "process" && km.Value != "none") {
		return nil
	}
	return fmt.Errorf("%s:%d: KillMode=%s with Delegate=%s: the unit manages processes in its own cgroup (containers, their shims) and leaves them running across its stop; graceshim's unit needs KillMode=mixed, under which systemd SIGKILLs every process left in the cgroup when a stop ends, so each stop or restart would kill them: graceshim does not fit this unit", u.File, km.Line, km.Value, dl.Value)
}

// isGraceshimReload says d runs `graceshim reload`, whatever graceshim's
// path: the ExecReload= of a unit graceshim generated or converted.
func isGraceshimReload(d Directive) bool {
	line, err := SplitExec(d.Value)
	if err != nil {
		return false
	}
	argv := line.Argv()
	return len(argv) >= 2 && filepath.Base(argv[0]) == "graceshim" && argv[1] == "reload"
}

// reloadWhat names the reload graceshim does, for the notes.
func (c *converter) reloadWhat() string {
	if c.o.Preset.ReloadCommand != nil {
		return "its own reload command"
	}
	if sig := c.o.Map.Translate(syscall.SIGHUP); sig != syscall.SIGHUP || c.o.Preset.Reload == 0 || c.o.Preset.Name == "generic" {
		return signals.Name(sig)
	}
	return signals.Name(c.o.Preset.Reload)
}

// stopTimeoutDirective is the unit's stop timeout in force: the last of
// TimeoutStopSec= and TimeoutSec=, which sets it too (systemd.service(5)).
func (c *converter) stopTimeoutDirective() (Directive, bool) {
	return c.u.LastOf("Service", "TimeoutStopSec", "TimeoutSec")
}

// longerStop says the unit asked for no stop timeout (0 or infinity,
// Debian's redis) or one longer than graceshim's own bound (Debian's
// postgresql@: 1h): the admin's choice, kept.
func (c *converter) longerStop() bool {
	d, ok := c.stopTimeoutDirective()
	if !ok {
		return false
	}
	v, inf, parsed := parseSpan(d.Value)
	if !parsed {
		return false
	}
	ours, _, bounded := c.o.StopTimeout()
	return inf || (bounded && v > ours)
}

// convertNotify keeps what a daemon that speaks sd_notify tells systemd.
// Its own notify flags stay in its command line (redis --supervised
// systemd, haproxy -Ws); WatchdogSec= stays when graceshim relays the
// daemon's own WATCHDOG=1 (supervisor/relay.go: from the daemon's first
// WATCHDOG=1 on graceshim stops feeding the watchdog itself, so a hung
// daemon starves it); otherwise it is dropped, because graceshim alone
// would feed the watchdog whether or not the daemon hangs (measured: puma
// stopped with SIGSTOP kept the unit healthy).
func (c *converter) convertNotify() {
	wd, ok := c.u.Get("Service", "WatchdogSec")
	if !ok {
		return
	}
	if _, inf, parsed := parseSpan(wd.Value); parsed && inf {
		return // WatchdogSec=0: no watchdog
	}
	if c.relay {
		c.note("kept WatchdogSec=%s: %s speaks sd_notify and graceshim relays its WATCHDOG=1 to systemd, feeding the watchdog no more itself once the daemon does, so a hung %s still trips it", wd.Value, c.name, c.name)
		return
	}
	c.dropWatchdog = true
	c.note("dropped WatchdogSec=%s: %s does not tell systemd it is alive, and graceshim would feed the watchdog for it, hung or not", wd.Value, c.name)
	c.warn(wd.Line, "WatchdogSec=%s dropped: %s is not known to speak sd_notify, so graceshim would feed the watchdog for a hung daemon; pass --notify=relay if it does", wd.Value, c.name)
}

// sandbox extends what would stop graceshim from running: NoExecPaths= /
// ExecPaths= allow-lists (Debian's redis-server.service: NoExecPaths=/
// with ExecPaths= of redis itself, so graceshim fails with 203/EXEC), and
// warns about paths that hide it (ProtectHome=, PrivateTmp=,
// InaccessiblePaths=).
func (c *converter) sandbox() {
	g := c.o.Graceshim
	if len(c.u.List("Service", "NoExecPaths")) > 0 || len(c.u.List("Service", "ExecPaths")) > 0 {
		c.execPaths = g
		for _, d := range c.u.List("Service", "ExecPaths") {
			if slices.Contains(strings.Fields(d.Value), g) {
				c.execPaths = "" // converted before: allowed already
			}
		}
		c.note("added ExecPaths=%s: the unit limits what may be executed (NoExecPaths=/ExecPaths=), and graceshim runs ExecStart= and ExecReload= now", g)
	}
	if d, ok := c.u.Get("Service", "ProtectHome"); ok && (isYes(d.Value) || d.Value == "tmpfs") && (strings.HasPrefix(g, "/home/") || strings.HasPrefix(g, "/root/") || strings.HasPrefix(g, "/run/user/")) {
		c.warn(d.Line, "ProtectHome=%s hides %s: the unit cannot start graceshim from there; install graceshim elsewhere (/usr/bin) or pass --graceshim", d.Value, g)
	}
	if d, ok := c.u.Get("Service", "PrivateTmp"); ok && isYes(d.Value) && (strings.HasPrefix(g, "/tmp/") || strings.HasPrefix(g, "/var/tmp/")) {
		c.warn(d.Line, "PrivateTmp=%s hides %s: the unit cannot start graceshim from there; install graceshim elsewhere (/usr/bin) or pass --graceshim", d.Value, g)
	}
	if d, ok := c.u.Get("Service", "RestrictAddressFamilies"); ok && !strings.HasPrefix(d.Value, "~") && !strings.Contains(d.Value, "AF_NETLINK") && d.Value != "" {
		c.note("RestrictAddressFamilies=%s leaves out AF_NETLINK: graceshim counts connections from /proc/net instead of sock_diag, which costs more on a busy server", d.Value)
	}
	for _, d := range c.u.List("Service", "InaccessiblePaths") {
		for _, p := range strings.Fields(d.Value) {
			p = strings.TrimLeft(p, "-+")
			if p == g || strings.HasPrefix(g, strings.TrimSuffix(p, "/")+"/") {
				c.warn(d.Line, "InaccessiblePaths=%s hides %s: the unit cannot start graceshim", p, g)
			}
		}
	}
}

// mainPIDUses warns about the commands kept that use $MAINPID for
// something else than signalling the daemon: $MAINPID is graceshim now.
func (c *converter) mainPIDUses(keptStops []Directive) {
	var check []Directive
	for _, name := range []string{"ExecStartPost", "ExecStopPost", "ExecCondition"} {
		check = append(check, c.u.List("Service", name)...)
	}
	check = append(check, keptStops...)
	if c.rewrapped {
		return // $MAINPID was graceshim already
	}
	for _, d := range c.u.List("Service", "ExecReload") {
		if !commandOf(d).Sends && !isGraceshimReload(d) {
			check = append(check, d)
		}
	}
	for _, d := range check {
		if strings.Contains(d.Value, "$MAINPID") || strings.Contains(d.Value, "${MAINPID}") {
			c.warn(d.Line, "%s=%s uses $MAINPID, which is graceshim's pid now, not %s's: the command gets graceshim's", d.Name, d.Value, c.name)
			c.note("kept %s=%s, but $MAINPID is graceshim's pid now, not %s's", d.Name, d.Value, c.name)
		}
	}
}

// commandOf classifies an Exec*= directive's command.
func commandOf(d Directive) signalCmd {
	line, err := SplitExec(d.Value)
	if err != nil {
		return signalCmd{}
	}
	return classifySignalCmd(line.Argv())
}

// keptTimeoutStart says whether the unit's own start timeout is kept: the
// last of TimeoutStartSec= and TimeoutSec=, which sets it too
// (systemd.service(5)).
func keptTimeoutStart(u *Unit, o Options) bool {
	ts, ok := u.LastOf("Service", "TimeoutStartSec", "TimeoutSec")
	if !ok {
		return false
	}
	d, inf, ok := parseSpan(ts.Value)
	return ok && (inf || d > o.StartTimeout())
}

// unitOptions builds the whole converted unit.
func (c *converter) unitOptions(exec string, stops []Directive) []*unit.UnitOption {
	u, o := c.u, c.o
	var opts []*unit.UnitOption
	sections := append([]string(nil), u.Sections...)
	for _, s := range []string{"Unit", "Service"} {
		if !contains(sections, s) {
			sections = append(sections, s)
		}
	}
	// [Unit] first, [Install] last, the rest in file order.
	order := []string{"Unit"}
	for _, s := range sections {
		if s != "Unit" && s != "Install" {
			order = append(order, s)
		}
	}
	if contains(sections, "Install") {
		order = append(order, "Install")
	}
	for _, s := range order {
		if s != "Service" {
			if s == "Unit" {
				if _, ok := u.Get("Unit", "Description"); !ok {
					opts = append(opts, unit.NewUnitOption("Unit", "Description", filepath.Base(o.Argv[0])+" under graceshim ("+stopKind(o.Preset)+")"))
				}
			}
			for _, d := range u.Directives {
				if d.Section == s {
					opts = append(opts, unit.NewUnitOption(s, d.Name, d.Value))
				}
			}
			if s == "Unit" {
				opts = append(opts, newSocketDeps(u, o)...)
			}
			continue
		}
		startLine := -1
		if starts := u.List("Service", "ExecStart"); len(starts) > 0 {
			startLine = starts[len(starts)-1].Line
		}
		opts = append(opts,
			unit.NewUnitOption("Service", "Type", "notify"),
			unit.NewUnitOption("Service", "NotifyAccess", "main"))
		for _, d := range u.Directives {
			if d.Section != "Service" {
				continue
			}
			switch {
			case d.Name == "TimeoutStartSec" || d.Name == "TimeoutStopSec" || d.Name == "TimeoutSec":
				// Written below: the timeouts in force, kept or derived.
			case dropped[d.Name] != "":
			case d.Name == "ExecStart":
				// One ExecStart=, where the command in force was: the
				// last after the last reset (an empty ExecStart=, as
				// `systemctl cat` output has when a drop-in overrides
				// it). A second one makes systemd refuse the unit
				// ("more than one ExecStart= setting", systemd.service(5)).
				if d.Line == startLine {
					opts = append(opts, unit.NewUnitOption("Service", "ExecStart", exec))
				}
			case d.Name == "ExecStop" || d.Name == "ExecReload":
				// Written below, from the kept lists.
			case d.Name == "ExecStartPre" && c.dropPre[d.Line]:
			case d.Name == "Restart" || d.Name == "SuccessExitStatus":
				// Written below, after the timeouts, with graceshim's
				// exit codes: where a conversion of the result puts
				// them too.
			case d.Name == "WatchdogSec" && c.dropWatchdog:
			default:
				opts = append(opts, unit.NewUnitOption("Service", d.Name, d.Value))
			}
		}
		if c.execPaths != "" {
			opts = append(opts, unit.NewUnitOption("Service", "ExecPaths", c.execPaths))
		}
		for _, v := range c.reloads {
			opts = append(opts, unit.NewUnitOption("Service", "ExecReload", v))
		}
		for _, d := range stops {
			opts = append(opts, unit.NewUnitOption("Service", "ExecStop", d.Value))
		}
		opts = append(opts, timeoutOptions(o, c.keepStart, c.keepStop)...)
		// The kept ones are written by their own names: a TimeoutSec=
		// kept for one of them must not set the other.
		if d, ok := u.LastOf("Service", "TimeoutStartSec", "TimeoutSec"); ok && c.keepStart {
			opts = append(opts, unit.NewUnitOption("Service", "TimeoutStartSec", d.Value))
		}
		if d, ok := c.stopTimeoutDirective(); ok && c.keepStop {
			opts = append(opts, unit.NewUnitOption("Service", "TimeoutStopSec", d.Value))
		}
		restart := "on-failure"
		if d, ok := u.Get("Service", "Restart"); ok {
			restart = d.Value
		}
		opts = append(opts,
			unit.NewUnitOption("Service", "Restart", restart),
			unit.NewUnitOption("Service", "SuccessExitStatus", c.successStatus()))
	}
	return opts
}

// dropinOptions builds a drop-in that overrides what the unit gets wrong.
// List directives are reset with an empty assignment first; single ones
// are set again.
func (c *converter) dropinOptions(exec string, stops []Directive) []*unit.UnitOption {
	u, o := c.u, c.o
	svc := func(name, value string) *unit.UnitOption { return unit.NewUnitOption("Service", name, value) }
	// [Unit] first: go-systemd writes sections in first-seen order.
	opts := append(newSocketDeps(u, o), svc("Type", "notify"), svc("NotifyAccess", "main"))
	if _, ok := u.Get("Service", "PIDFile"); ok {
		opts = append(opts, svc("PIDFile", ""))
	}
	opts = append(opts, svc("ExecStart", ""), svc("ExecStart", exec))
	if len(u.List("Service", "ExecStop")) != len(stops) {
		opts = append(opts, svc("ExecStop", ""))
		for _, d := range stops {
			opts = append(opts, svc("ExecStop", d.Value))
		}
	}
	if len(c.dropPre) > 0 {
		// A drop-in cannot remove one line of a list: reset it and
		// write the ones kept.
		opts = append(opts, svc("ExecStartPre", ""))
		for _, d := range u.List("Service", "ExecStartPre") {
			if !c.dropPre[d.Line] {
				opts = append(opts, svc("ExecStartPre", d.Value))
			}
		}
	}
	if !slices.Equal(c.reloads, values(u.List("Service", "ExecReload"))) {
		opts = append(opts, svc("ExecReload", ""))
		for _, v := range c.reloads {
			opts = append(opts, svc("ExecReload", v))
		}
	}
	if c.execPaths != "" {
		opts = append(opts, svc("ExecPaths", c.execPaths))
	}
	if c.dropWatchdog {
		opts = append(opts, svc("WatchdogSec", "0"))
	}
	if _, ok := u.Get("Service", "KillSignal"); ok {
		opts = append(opts, svc("KillSignal", "SIGTERM"))
	}
	if d, ok := u.Get("Service", "SendSIGKILL"); ok && d.Value != "yes" {
		opts = append(opts, svc("SendSIGKILL", "yes"))
	}
	if _, ok := u.Get("Service", "RemainAfterExit"); ok {
		opts = append(opts, svc("RemainAfterExit", "no"))
	}
	opts = append(opts, timeoutOptions(o, c.keepStart, c.keepStop)...)
	if _, ok := u.Get("Service", "Restart"); !ok {
		opts = append(opts, svc("Restart", "on-failure"))
	}
	if codes := c.successStatus(); !slices.Equal(strings.Fields(codes), successCodes(c.u)) {
		opts = append(opts, svc("SuccessExitStatus", codes))
	}
	return opts
}

func values(ds []Directive) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Value)
	}
	return out
}

func insertBeforeInstall(opts, add []*unit.UnitOption) []*unit.UnitOption {
	// go-systemd groups options by section in first-seen order, so
	// appending keeps them in [Service].
	return append(opts, add...)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// CommandWarnings warns about commands a unit names that do not exist on
// this host: the unit may well be meant for another one.
func CommandWarnings(file string, paths ...string) []Warning {
	var out []Warning
	for _, p := range paths {
		if p == "" || strings.ContainsAny(p, "$%") {
			continue
		}
		if _, err := exec.LookPath(p); err != nil {
			out = append(out, Warning{File: file, Msg: fmt.Sprintf("command %s not found on this host (fine if the unit is for another host)", p)})
		}
	}
	return out
}

// flagWords is one graceshim flag of an ExecStart= with its value: one
// word (--drain-timeout=10m) or two (--drain-timeout 10m).
type flagWords struct {
	name  string   // "drain-timeout"
	value string   // its value as the command sees it
	raw   []string // the words in unit syntax
	// expands says systemd expands a variable or specifier in it.
	expands bool
}

// existingFlags groups the graceshim flags among words (those before the
// command, a "--" included or not).
func existingFlags(words []Word) []flagWords {
	var out []flagWords
	for i := 0; i < len(words); i++ {
		w := words[i]
		if w.Value == "--" || !strings.HasPrefix(w.Value, "-") {
			break
		}
		key, value, glued := strings.Cut(w.Value, "=")
		name := strings.TrimLeft(key, "-")
		if name == "stop-timeout" {
			name = "drain-timeout" // its alias
		}
		f := flagWords{name: name, value: value, raw: []string{w.Raw}, expands: w.Variable || w.Specifier}
		if takes, _ := GraceshimFlag(key); takes && !glued && i+1 < len(words) {
			i++
			f.value = words[i].Value
			f.raw = append(f.raw, words[i].Raw)
			f.expands = f.expands || words[i].Variable || words[i].Specifier
		}
		out = append(out, f)
	}
	return out
}

// setIn says flags (--name=value words) set the flag name.
func setIn(flags []string, name string) bool {
	for _, f := range flags {
		if f == "--"+name || strings.HasPrefix(f, "--"+name+"=") {
			return true
		}
	}
	return false
}

// keepFlag takes into o what a graceshim flag of the unit being converted
// again sets: the bounds the timeouts are derived from, the preset and
// the map. A value systemd expands at start is not known now: the
// timeouts then assume the default, and a warning says so.
func (c *converter) keepFlag(o *Options, f flagWords, line int) error {
	bound := map[string]*time.Duration{
		"drain-timeout": &o.DrainTimeout,
		"kill-timeout":  &o.KillTimeout,
		"ready-timeout": &o.ReadyTimeout,
		"drain-delay":   &o.DrainDelay,
	}[f.name]
	if bound == nil && f.name != "preset" && f.name != "map" {
		return nil
	}
	if f.expands {
		c.warn(line, "ExecStart= runs graceshim with %s, known only when systemd starts it: the unit's timeouts assume its default", strings.Join(f.raw, " "))
		return nil
	}
	bad := func(err error) error {
		return fmt.Errorf("%s:%d: ExecStart= runs graceshim with --%s=%s: %w", c.u.File, line, f.name, f.value, err)
	}
	switch f.name {
	case "preset":
		p, err := signals.Lookup(f.value)
		if err != nil {
			return bad(err)
		}
		o.Preset = p
	case "map":
		m, err := signals.ParseMap(f.value)
		if err != nil {
			return bad(err)
		}
		o.MapOver = m
	default:
		d, err := time.ParseDuration(f.value)
		switch {
		case err != nil:
			return bad(err)
		case d < 0:
			return bad(errors.New("must not be negative"))
		case d == 0 && f.name == "drain-timeout":
			d = -1 // no bound
		}
		*bound = d
	}
	return nil
}

// successStatus is the converted unit's SuccessExitStatus=: the unit's own
// codes and graceshim's, each once. The directive is a list that
// accumulates (systemd.service(5)), so a unit converted again must not
// gain a second one.
func (c *converter) successStatus() string {
	codes := successCodes(c.u)
	for _, code := range strings.Fields(successStatus(c.o)) {
		if !slices.Contains(codes, code) {
			codes = append(codes, code)
		}
	}
	return strings.Join(codes, " ")
}

// successCodes are the codes of u's SuccessExitStatus= lines in force: an
// empty assignment resets the list.
func successCodes(u *Unit) []string {
	var codes []string
	for _, d := range u.List("Service", "SuccessExitStatus") {
		if strings.TrimSpace(d.Value) == "" {
			codes = nil
			continue
		}
		for _, code := range strings.Fields(d.Value) {
			if !slices.Contains(codes, code) {
				codes = append(codes, code)
			}
		}
	}
	return codes
}
