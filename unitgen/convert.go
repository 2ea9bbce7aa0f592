package unitgen

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

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

// Convert turns u into a unit (or, with dropin, a drop-in for
// /etc/systemd/system/NAME.service.d/) that runs u's daemon under
// graceshim. It keeps what still applies (Description, After, User,
// Environment, ExecStartPre, LimitNOFILE, ...) and drops what graceshim
// replaces (PIDFile, an ExecStop= that signals the daemon, KillSignal,
// KillMode, TimeoutStopSec). o gives graceshim's flags; o.Argv is ignored.
func Convert(u *Unit, o Options, dropin bool) (*ConvertResult, error) {
	r := &ConvertResult{}
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
	cmd, wrapper, at := inner(argv)
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
		if len(runFlags) == 0 {
			for _, w := range line.Words[1 : at-1] {
				rawFlags = append(rawFlags, w.Raw)
			}
		}
		r.Notes = append(r.Notes, "ExecStart= already ran graceshim: its command is kept, its unit settings are made right")
	default:
		r.Notes = append(r.Notes, fmt.Sprintf("ExecStart=: graceshim replaces %s (graceshim is a subreaper too, and translates signals rather than passing them on)", wrapper))
	}
	o.Argv = cmd
	if line.Words[at].Variable || line.Words[at].Specifier {
		r.Warnings = append(r.Warnings, Warning{u.File, start.Line, fmt.Sprintf("the command %q is only known at run time; graceshim picks the preset then (pass --preset to be sure)", cmd[0])})
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
		o.Preset, _ = signals.ForCommand(cmd[0])
	}

	typ, _ := u.Get("Service", "Type")
	if pf, ok := u.Get("Service", "PIDFile"); ok && typ.Value == "forking" && !has("pidfile") {
		if strings.Contains(pf.Value, "%") && !strings.ContainsAny(pf.Value, " \t\"'\\$;") {
			// PIDFile= expands specifiers (%t/app.pid); so does ExecStart=
			// when the word is written as it is.
			rawFlags = append(rawFlags, "--pidfile="+pf.Value)
		} else {
			runFlags = append(runFlags, "--pidfile="+pf.Value)
		}
		r.Notes = append(r.Notes, fmt.Sprintf("Type=forking with PIDFile=%s: graceshim follows the daemonized master with --pidfile", pf.Value))
	}
	if ks, ok := u.Get("Service", "KillSignal"); ok && !has("map") && !has("preset") {
		sig, err := signals.Parse(ks.Value)
		if err != nil {
			r.Warnings = append(r.Warnings, Warning{u.File, ks.Line, fmt.Sprintf("KillSignal=%s: %v", ks.Value, err)})
		} else if o.Preset.Name == "generic" && sig != syscall.SIGTERM {
			m := "TERM:" + signals.Name(sig) + ",INT:" + signals.Name(sig)
			runFlags = append(runFlags, "--map="+m)
			o.MapOver, _ = signals.ParseMap(m)
			r.Notes = append(r.Notes, fmt.Sprintf("KillSignal=%s was the daemon's stop signal: graceshim sends it with --map=%s", ks.Value, m))
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

	// ExecStop= and ExecReload=: drop what signals the daemon.
	var keptStops, keptReloads []Directive
	for _, d := range u.List("Service", "ExecStop") {
		if c := commandOf(d); c.Sends {
			r.Notes = append(r.Notes, fmt.Sprintf("dropped ExecStop=%s (%s): graceshim's drain replaces it", d.Value, c.What))
			continue
		}
		keptStops = append(keptStops, d)
		r.Warnings = append(r.Warnings, Warning{u.File, d.Line, "ExecStop= kept: it runs before systemd's SIGTERM, so graceshim's drain starts only after it returns"})
	}
	// graceshim's HUP becomes the reload when the unit had none, or when
	// its reload was a signal graceshim now sends; a unit whose reload is
	// a command of the daemon's own (caddy reload) keeps just that.
	hup := o.reloads()
	if rs := u.List("Service", "ExecReload"); len(rs) > 0 {
		hup = false
		for _, d := range rs {
			hup = hup || (commandOf(d).Sends && o.reloads())
		}
	}
	for _, d := range u.List("Service", "ExecReload") {
		if c := commandOf(d); c.Sends {
			r.Notes = append(r.Notes, fmt.Sprintf("dropped ExecReload=%s (%s): systemd's HUP to graceshim reaches the daemon as %s", d.Value, c.What, signals.Name(o.Map.Translate(syscall.SIGHUP))))
			continue
		}
		keptReloads = append(keptReloads, d)
	}
	for _, d := range u.Directives {
		if d.Section != "Service" {
			continue
		}
		if why, ok := dropped[d.Name]; ok && !(d.Name == "KillMode" && d.Value == "mixed") && !(d.Name == "Type" && d.Value == "notify") {
			r.Notes = append(r.Notes, fmt.Sprintf("replaced %s=%s: %s", d.Name, d.Value, why))
		}
	}
	if ts, ok := u.Get("Service", "TimeoutStartSec"); ok {
		if d, inf, ok := parseSpan(ts.Value); ok && (inf || d > o.StartTimeout()) {
			r.Notes = append(r.Notes, fmt.Sprintf("kept TimeoutStartSec=%s: longer than graceshim needs", ts.Value))
		}
	}

	var opts []*unit.UnitOption
	if dropin {
		opts = dropinOptions(u, o, execV, keptStops, keptReloads, hup)
	} else {
		opts, err = unitOptions(u, o, execV, keptStops, keptReloads, hup)
		if err != nil {
			return nil, err
		}
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
	head2 := header(o, dropin)
	var b strings.Builder
	b.WriteString(head2)
	b.WriteString("#\n")
	fmt.Fprintf(&b, "# Converted from %s.\n", u.File)
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

// commandOf classifies an Exec*= directive's command.
func commandOf(d Directive) signalCmd {
	line, err := SplitExec(d.Value)
	if err != nil {
		return signalCmd{}
	}
	return classifySignalCmd(line.Argv())
}

// keptTimeoutStart says whether the unit's own TimeoutStartSec= is kept.
func keptTimeoutStart(u *Unit, o Options) bool {
	ts, ok := u.Get("Service", "TimeoutStartSec")
	if !ok {
		return false
	}
	d, inf, ok := parseSpan(ts.Value)
	return ok && (inf || d > o.StartTimeout())
}

// unitOptions builds the whole converted unit.
func unitOptions(u *Unit, o Options, exec string, stops, reloads []Directive, hup bool) ([]*unit.UnitOption, error) {
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
	keptStart := keptTimeoutStart(u, o)
	for _, s := range order {
		if s != "Service" {
			if s == "Unit" {
				if _, ok := u.Get("Unit", "Description"); !ok {
					opts = append(opts, unit.NewUnitOption("Unit", "Description", filepath.Base(o.Argv[0])+" under graceshim (graceful stop)"))
				}
			}
			for _, d := range u.Directives {
				if d.Section == s {
					opts = append(opts, unit.NewUnitOption(s, d.Name, d.Value))
				}
			}
			continue
		}
		opts = append(opts,
			unit.NewUnitOption("Service", "Type", "notify"),
			unit.NewUnitOption("Service", "NotifyAccess", "main"))
		for _, d := range u.Directives {
			if d.Section != "Service" {
				continue
			}
			switch {
			case dropped[d.Name] != "":
			case d.Name == "ExecStart":
				if d.Value != "" {
					opts = append(opts, unit.NewUnitOption("Service", "ExecStart", exec))
				}
			case d.Name == "ExecStop" || d.Name == "ExecReload":
				// Written below, from the kept lists.
			case d.Name == "TimeoutStartSec" && !keptStart:
			default:
				opts = append(opts, unit.NewUnitOption("Service", d.Name, d.Value))
			}
		}
		for _, d := range reloads {
			opts = append(opts, unit.NewUnitOption("Service", "ExecReload", d.Value))
		}
		if hup {
			opts = append(opts, unit.NewUnitOption("Service", "ExecReload", "/bin/kill -HUP $MAINPID"))
		}
		for _, d := range stops {
			opts = append(opts, unit.NewUnitOption("Service", "ExecStop", d.Value))
		}
		for _, t := range timeoutOptions(o) {
			if t.Name == "TimeoutStartSec" && keptStart {
				continue
			}
			opts = append(opts, t)
		}
		if _, ok := u.Get("Service", "Restart"); !ok {
			opts = append(opts, unit.NewUnitOption("Service", "Restart", "on-failure"))
		}
		opts = append(opts, unit.NewUnitOption("Service", "SuccessExitStatus", successStatus(o)))
	}
	return opts, nil
}

// dropinOptions builds a drop-in that overrides what the unit gets wrong.
// List directives are reset with an empty assignment first; single ones
// are set again.
func dropinOptions(u *Unit, o Options, exec string, stops, reloads []Directive, hup bool) []*unit.UnitOption {
	svc := func(name, value string) *unit.UnitOption { return unit.NewUnitOption("Service", name, value) }
	opts := []*unit.UnitOption{svc("Type", "notify"), svc("NotifyAccess", "main")}
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
	opts = append(opts, svc("ExecReload", ""))
	for _, d := range reloads {
		opts = append(opts, svc("ExecReload", d.Value))
	}
	if hup {
		opts = append(opts, svc("ExecReload", "/bin/kill -HUP $MAINPID"))
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
	keptStart := keptTimeoutStart(u, o)
	for _, t := range timeoutOptions(o) {
		if t.Name == "TimeoutStartSec" && keptStart {
			continue
		}
		opts = append(opts, t)
	}
	if _, ok := u.Get("Service", "Restart"); !ok {
		opts = append(opts, svc("Restart", "on-failure"))
	}
	opts = append(opts, svc("SuccessExitStatus", successStatus(o)))
	return opts
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
