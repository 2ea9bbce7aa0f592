package unitgen

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/coreos/go-systemd/v22/unit"

	"github.com/graceshim/graceshim/signals"
	"github.com/graceshim/graceshim/supervisor"
)

// Defaults of Options.
const (
	// DefaultGraceshim is where the generated ExecStart= looks for
	// graceshim when no path is given: where the .deb installs it. The
	// command line passes graceshim's own resolved path instead when it
	// runs from an installed binary (cmd_unit.go).
	DefaultGraceshim = "/usr/bin/graceshim"
	// ExtendTimeoutVersion is the first systemd that honours
	// EXTEND_TIMEOUT_USEC (236). Before it, TimeoutStopSec= has to cover
	// the whole drain.
	ExtendTimeoutVersion = 236
	// ReactTimeout is TimeoutStopSec= when the drain has no bound and
	// graceshim extends the stop timeout itself: long enough for graceshim
	// to take the stop signal and send its first extension, short enough
	// that systemd takes over soon when graceshim hangs.
	ReactTimeout = 30 * time.Second
	// StopMargin is added to drain delay + drain timeout + kill timeout:
	// time for graceshim to react, take the last count and reap the tree.
	StopMargin = 15 * time.Second
	// StartMargin is added to the ready timeout for TimeoutStartSec=.
	StartMargin = 30 * time.Second
)

// Options describe the unit to generate.
type Options struct {
	// Graceshim is graceshim's absolute path; "" means DefaultGraceshim.
	Graceshim string
	// RunFlags are graceshim's flags as --name=value, written into
	// ExecStart= before "--".
	RunFlags []string
	// Argv is the command graceshim runs. Convert fills it from the
	// original ExecStart=.
	Argv []string

	// Preset and Map are the signals graceshim will use, for ExecReload=
	// and SuccessExitStatus=; a zero Preset is picked from Argv[0].
	Preset signals.Preset
	Map    signals.Map
	// MapOver is graceshim's --map, applied over Map.
	MapOver signals.Map
	// keptStop is the converted unit's own stop timeout when Convert
	// keeps it ("TimeoutStopSec=0"), for the header.
	keptStop string
	// keptStart is the converted unit's own start timeout when Convert
	// keeps it ("TimeoutSec=600"), for the header.
	keptStart string
	// Reloads says the daemon is known to reload on the signal graceshim
	// turns HUP into, though its preset does not say so: Convert sets it
	// from the converted unit's own reload (squid's kill -HUP).
	Reloads bool
	// The supervisor's bounds, for TimeoutStopSec= and TimeoutStartSec=;
	// zero means the supervisor's default (none for DrainDelay). A
	// negative DrainTimeout means no bound.
	DrainTimeout time.Duration
	KillTimeout  time.Duration
	ReadyTimeout time.Duration
	DrainDelay   time.Duration

	// SystemdVersion is the systemd the unit is for (e.g. 219, 252).
	SystemdVersion int

	User, Group string
	Description string
	// Env are KEY=VALUE assignments for Environment=.
	Env []string
	// Hardening adds the sandboxing directives that SystemdVersion knows
	// and that leave a web server working.
	Hardening bool
	// Socket is the socket unit (nginx.socket) whose sockets the service
	// takes, "" for none: the service then Requires= and is After= it.
	Socket string
}

func (o *Options) setDefaults() {
	if o.Graceshim == "" {
		o.Graceshim = DefaultGraceshim
	}
	if o.Preset.Graceful == 0 && len(o.Argv) > 0 {
		o.Preset, _ = signals.ForCommand(o.Argv[0])
	}
	if o.Map == nil {
		o.Map = o.Preset.Map()
	}
	if o.MapOver != nil {
		o.Map = o.Map.Merge(o.MapOver)
		o.MapOver = nil
	}
	if o.DrainTimeout == 0 {
		o.DrainTimeout = supervisor.DefaultDrainTimeout
	}
	if o.KillTimeout == 0 {
		o.KillTimeout = supervisor.DefaultKillTimeout
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = supervisor.DefaultReadyTimeout
	}
}

// StopTimeout returns TimeoutStopSec= for o and says why, for the comment
// in the unit. ok is false when the stop has no bound (drain timeout 0 on
// a systemd without EXTEND_TIMEOUT_USEC).
func (o Options) StopTimeout() (d time.Duration, why string, ok bool) {
	o.setDefaults()
	extends := o.SystemdVersion >= ExtendTimeoutVersion
	if o.DrainTimeout < 0 {
		if extends {
			return ReactTimeout, fmt.Sprintf("--drain-timeout=0 puts no bound on the drain; graceshim keeps the stop alive with EXTEND_TIMEOUT_USEC every %s, reaching %s ahead, so this only bounds how long graceshim may take to react (a daemon-reload during a stop makes systemd forget the extensions: avoid one)",
				formatSpan(supervisor.DefaultExtendEvery), formatSpan(supervisor.DefaultExtendBy)), true
		}
		return 0, fmt.Sprintf("systemd %d has no EXTEND_TIMEOUT_USEC and --drain-timeout=0 puts no bound on the drain, so neither does systemd", o.SystemdVersion), false
	}
	d = o.DrainDelay + o.DrainTimeout + o.KillTimeout + StopMargin
	bound := fmt.Sprintf("drain delay %s + drain timeout %s + kill timeout %s + %s for graceshim",
		formatSpan(o.DrainDelay), formatSpan(o.DrainTimeout), formatSpan(o.KillTimeout), formatSpan(StopMargin))
	if extends {
		// graceshim extends the stop while it drains, which would allow a
		// short timeout here; but systemd 252 drops those extensions on
		// daemon-reload (measured: a reload 7 s into a stop under
		// TimeoutStopSec=5 killed the drain at once), and package installs
		// reload. So the timeout itself covers graceshim's own bound.
		return d, "covers " + bound + "; graceshim also extends the stop while it drains, but a daemon-reload makes systemd forget extensions, so this covers the whole bound", true
	}
	return d, fmt.Sprintf("systemd %d has no EXTEND_TIMEOUT_USEC (it came in %d), so this covers %s", o.SystemdVersion, ExtendTimeoutVersion, bound), true
}

// StartTimeout returns TimeoutStartSec=: graceshim tells READY=1 when the
// daemon listens, at the latest after the ready timeout (which also bounds
// the wait for a pid file).
func (o Options) StartTimeout() time.Duration {
	o.setDefaults()
	return o.ReadyTimeout + StartMargin
}

// hardening are the sandboxing directives --hardening adds, with the first
// systemd version that knows each. They leave /var, /run and the network
// writable, and keep /proc readable so graceshim can follow its children;
// MemoryDenyWriteExecute (JITs: PHP, LuaJIT), CapabilityBoundingSet and
// RestrictAddressFamilies are left out on purpose, they break common
// daemons or graceshim's netlink connection count. So are
// ProtectKernelTunables and ProtectKernelLogs: inside containers (LXC,
// Docker with systemd) they cannot be set up and the unit fails to start
// with 226/NAMESPACE (measured here under the user manager). And so is
// ProtectControlGroups: under a user manager here it hid the notify
// socket in /run/user/UID, so READY=1 never arrived and start timed out.
var hardening = []struct {
	name, value string
	since       int
}{
	{"NoNewPrivileges", "yes", 187},
	{"PrivateTmp", "yes", 183},
	{"PrivateDevices", "yes", 209},
	{"ProtectSystem", "full", 214},
	{"ProtectHome", "read-only", 214},
	{"SystemCallArchitectures", "native", 209},
	{"RestrictRealtime", "yes", 231},
	{"ProtectKernelModules", "yes", 232},
	{"RestrictNamespaces", "yes", 233},
	{"LockPersonality", "yes", 235},
	{"RestrictSUIDSGID", "yes", 242},
	{"ProtectHostname", "yes", 242},
	{"ProtectClock", "yes", 245},
}

// Generate writes a unit that runs o.Argv under graceshim.
func Generate(o Options) ([]byte, error) {
	if len(o.Argv) == 0 {
		return nil, errors.New("missing command: use graceshim unit [flags] -- COMMAND [ARGS...]")
	}
	o.setDefaults()
	argv := append(append(append([]string{o.Graceshim}, o.RunFlags...), "--"), o.Argv...)
	exec, err := JoinExec(argv)
	if err != nil {
		return nil, fmt.Errorf("cannot write ExecStart=: %w", err)
	}
	if err := checkGraceshimPath(o.Graceshim); err != nil {
		return nil, err
	}
	desc := o.Description
	if desc == "" {
		desc = filepath.Base(o.Argv[0]) + " under graceshim (" + stopKind(o.Preset) + ")"
	}
	descV, err := escapeText("--description", desc)
	if err != nil {
		return nil, err
	}
	opts := []*unit.UnitOption{
		unit.NewUnitOption("Unit", "Description", descV),
		unit.NewUnitOption("Unit", "After", "network-online.target"),
		unit.NewUnitOption("Unit", "Wants", "network-online.target"),
	}
	opts = append(opts, socketDeps(o)...)
	svc, err := serviceOptions(o, exec)
	if err != nil {
		return nil, err
	}
	opts = append(opts, svc...)
	opts = append(opts, unit.NewUnitOption("Service", "Restart", "on-failure"))
	if o.Hardening {
		opts = append(opts, hardeningOptions(o.SystemdVersion, nil)...)
	}
	opts = append(opts, unit.NewUnitOption("Install", "WantedBy", "multi-user.target"))
	return render(header(o, false, o.reloads()), opts)
}

// serviceOptions are the [Service] directives every graceshim unit needs,
// with ExecStart= already written.
func serviceOptions(o Options, exec string) ([]*unit.UnitOption, error) {
	// Type=notify on every version, with ExecReload= running graceshim
	// reload rather than systemd 253's Type=notify-reload: the reload
	// command waits for the outcome and fails, leaving the daemon serving
	// the old configuration, when the config test fails.
	opts := []*unit.UnitOption{
		unit.NewUnitOption("Service", "Type", "notify"),
		unit.NewUnitOption("Service", "NotifyAccess", "main"),
	}
	if o.User != "" {
		if err := checkAccount("--user", o.User); err != nil {
			return nil, err
		}
		opts = append(opts, unit.NewUnitOption("Service", "User", o.User))
	}
	if o.Group != "" {
		if err := checkAccount("--group", o.Group); err != nil {
			return nil, err
		}
		opts = append(opts, unit.NewUnitOption("Service", "Group", o.Group))
	}
	for _, kv := range o.Env {
		v, err := envAssignment(kv)
		if err != nil {
			return nil, err
		}
		opts = append(opts, unit.NewUnitOption("Service", "Environment", v))
	}
	opts = append(opts, unit.NewUnitOption("Service", "ExecStart", exec))
	if o.reloads() {
		rl, err := reloadExec(o.Graceshim)
		if err != nil {
			return nil, err
		}
		opts = append(opts, unit.NewUnitOption("Service", "ExecReload", rl))
	}
	opts = append(opts, timeoutOptions(o, false, false)...)
	opts = append(opts, unit.NewUnitOption("Service", "SuccessExitStatus", successStatus(o)))
	return opts, nil
}

// reloadExec is the ExecReload= of every generated unit whose daemon can
// reload: `graceshim reload $MAINPID` asks the graceshim running as the
// unit's main process, over its control socket, to test the daemon's
// configuration, reload it (signal or the preset's reload command) and
// wait for the outcome; it fails, and the daemon keeps serving the old
// configuration, when the test fails.
func reloadExec(graceshim string) (string, error) {
	head, err := JoinExec([]string{graceshim, "reload"})
	if err != nil {
		return "", fmt.Errorf("cannot write ExecReload=: %w", err)
	}
	return head + " $MAINPID", nil
}

// timeoutOptions are KillMode= and the timeouts, the part of the unit
// that decides whether a stop drains. keepStart and keepStop leave out a
// timeout the unit sets itself (a longer start, no stop timeout at all).
func timeoutOptions(o Options, keepStart, keepStop bool) []*unit.UnitOption {
	stop, _, bounded := o.StopTimeout()
	stopV := "0"
	if bounded {
		stopV = formatSpan(stop)
	}
	opts := []*unit.UnitOption{unit.NewUnitOption("Service", "KillMode", "mixed")}
	if !keepStart {
		opts = append(opts, unit.NewUnitOption("Service", "TimeoutStartSec", formatSpan(o.StartTimeout())))
	}
	if !keepStop {
		opts = append(opts, unit.NewUnitOption("Service", "TimeoutStopSec", stopV))
	}
	return opts
}

// reloads says whether the daemon has a reload graceshim can do: a reload
// signal or command in its preset, a --map that says what HUP becomes, or
// the converted unit's own reload. A preset without one (redis,
// memcached) would die of a plain HUP.
//
// The generic preset's HUP is a guess, not a fact about the daemon: a
// daemon without a HUP handler dies of one, so an unknown daemon gets no
// reload unless --map or its unit says what reloads it.
func (o Options) reloads() bool {
	if o.Reloads || o.Map.Translate(syscall.SIGHUP) != syscall.SIGHUP {
		return true
	}
	if o.Preset.Name == "generic" {
		return false
	}
	if o.Preset.Name == "caddy" && caddyResumes(DaemonArgv(o.Argv)) {
		return false
	}
	return o.Preset.Reload != 0 || o.Preset.ReloadCommand != nil
}

// caddyResumes says whether a caddy command runs the configuration its
// admin API last saved (caddy run --resume) and names no file: Debian's
// caddy-api.service runs it so, and has no ExecReload=. Its configuration
// changes through the API; caddy reload reads a file
// (https://caddyserver.com/docs/command-line#caddy-reload), and with none
// it fails ("no config file to load", measured with Caddy 2.6.2), so such
// a unit gets no reload.
func caddyResumes(argv []string) bool {
	resume := false
	for _, a := range argv {
		name, v, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") {
			continue
		}
		switch name {
		case "config":
			return false
		case "resume":
			resume = v == "" || v == "true" || v == "1"
		}
	}
	return resume
}

// successStatus lists the exit codes of a stop that ended as asked:
// graceshim exits 128+N when the daemon dies of signal N, and a daemon
// without a handler dies of the TERM graceshim passes on or escalates
// with. QUIT is left out: dying of it means a core dump.
func successStatus(o Options) string {
	codes := map[int]bool{128 + int(syscall.SIGTERM): true}
	for _, s := range []syscall.Signal{o.Map.Translate(syscall.SIGTERM), o.Preset.Fast} {
		switch s {
		case 0, syscall.SIGQUIT, syscall.SIGKILL, syscall.SIGABRT, syscall.SIGSEGV:
			continue
		}
		codes[128+int(s)] = true
	}
	var list []int
	for c := range codes {
		list = append(list, c)
	}
	sort.Ints(list)
	var out []string
	for _, c := range list {
		out = append(out, strconv.Itoa(c))
	}
	return strings.Join(out, " ")
}

// hardeningOptions returns the sandboxing directives systemd version v
// knows, leaving out those in have (already set by the unit).
func hardeningOptions(v int, have map[string]bool) []*unit.UnitOption {
	var out []*unit.UnitOption
	for _, h := range hardening {
		if h.since > v || have[h.name] {
			continue
		}
		out = append(out, unit.NewUnitOption("Service", h.name, h.value))
	}
	return out
}

// header is the comment at the top of a generated unit. graceshimReload
// says whether the unit's ExecReload= runs graceshim reload: a converted
// unit may keep its own reload command (Fedora's httpd -k graceful) or
// get none (caddy run --resume), and its header must not say otherwise.
func header(o Options, dropin, graceshimReload bool) string {
	// The daemon's name, not a wrapper's that execs it (env, sh -c
	// 'exec ...', bundle exec, Debian's systemd-memcached-wrapper).
	name := filepath.Base(o.Argv[0])
	if d := DaemonArgv(o.Argv); len(d) > 0 {
		name = filepath.Base(d[0])
	}
	graceful := signals.Name(o.Map.Translate(syscall.SIGTERM))
	stop, why, _ := o.StopTimeout()
	stopV := "0 (no bound)"
	if stop > 0 {
		stopV = formatSpan(stop)
	}
	kind := "unit"
	if dropin {
		kind = "drop-in"
	}
	stopLine := fmt.Sprintf("TimeoutStopSec=%s: %s.", stopV, why)
	if o.keptStop != "" {
		stopLine = fmt.Sprintf("%s is the converted unit's own: it gives a stop more time than graceshim's bound (%s), or no bound at all.", o.keptStop, stopV)
	}
	startLine := fmt.Sprintf("TimeoutStartSec=%s: READY=1 is sent when %s listens, at the latest after the ready timeout (%s).",
		formatSpan(o.StartTimeout()), name, formatSpan(o.ReadyTimeout))
	if o.keptStart != "" {
		startLine = fmt.Sprintf("%s is the converted unit's own start timeout: it gives a start more time than graceshim needs, or no bound at all (%s: READY=1 is sent when %s listens, at the latest after the ready timeout, %s).",
			o.keptStart, formatSpan(o.StartTimeout()), name, formatSpan(o.ReadyTimeout))
	}
	lines := []string{
		fmt.Sprintf("Generated by graceshim for systemd %d; regenerate rather than edit (graceshim unit).", o.SystemdVersion),
		stopSentence(kind, name, graceful, o.Preset),
		fmt.Sprintf("KillMode=mixed matters: under the default control-group mode systemd sends SIGTERM to every process of the unit, so %s would get it straight from systemd and graceshim could not translate anything. mixed sends SIGTERM to graceshim only, SIGKILL to the rest at the end.", name),
		stopLine,
		startLine,
	}
	if graceshimReload {
		lines = append(lines, fmt.Sprintf("ExecReload= runs graceshim reload: graceshim tests %s's configuration first where the preset knows how, then reloads it and waits for the outcome; a failed reload leaves %s serving the old configuration and fails systemctl reload.", name, name))
	}
	if o.Socket != "" {
		lines = append(lines, socketHeader(o))
	}
	if o.Preset.Caveat != nil || o.Preset.NoGracefulStop || o.Preset.ConfigTestLimit != "" {
		// A setting of the daemon's own can defeat its graceful stop
		// (php-fpm's process_control_timeout), the daemon may have none
		// (memcached), or its config test may not see everything (uwsgi):
		// graceshim says so at start; the unit says it always, whatever
		// this host's configuration is.
		lines = append(lines, fmt.Sprintf("%s's stop: %s.", name, o.Preset.Notes))
	}
	if o.Hardening {
		lines = append(lines, "Hardening: sandboxing that leaves /var, /run and the network writable; ProtectSystem=full makes /usr, /boot and /etc read-only. Add ReadWritePaths= for anything else the daemon writes.")
	}
	var b strings.Builder
	for _, l := range wrapComment(lines) {
		b.WriteString("# " + l + "\n")
	}
	return b.String()
}

// wrapComment wraps lines at about 78 columns.
func wrapComment(lines []string) []string {
	var out []string
	for _, l := range lines {
		for len(l) > 74 {
			// A word longer than the line (a long path) stays whole; a
			// cut inside the continuation indent would loop forever.
			cut := strings.LastIndexByte(l[:74], ' ')
			if cut <= 2 {
				break
			}
			out = append(out, l[:cut])
			l = "  " + l[cut+1:]
		}
		out = append(out, l)
	}
	return out
}

// render serializes opts with go-systemd after the header comment.
func render(head string, opts []*unit.UnitOption) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(head)
	b.WriteString("\n")
	if _, err := io.Copy(&b, unit.Serialize(opts)); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// formatSpan writes d as a systemd time span ("5min 25s"), rounded up to
// whole seconds.
func formatSpan(d time.Duration) string {
	if d <= 0 {
		return "0"
	}
	s := int64((d + time.Second - 1) / time.Second)
	var parts []string
	if h := s / 3600; h > 0 {
		parts = append(parts, fmt.Sprintf("%dh", h))
	}
	if m := s / 60 % 60; m > 0 {
		parts = append(parts, fmt.Sprintf("%dmin", m))
	}
	if sec := s % 60; sec > 0 {
		parts = append(parts, fmt.Sprintf("%ds", sec))
	}
	return strings.Join(parts, " ")
}

func checkGraceshimPath(p string) error {
	if !filepath.IsAbs(p) {
		return fmt.Errorf("--graceshim %q: the path must be absolute (systemd before 239 requires it)", p)
	}
	return nil
}

var (
	envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	account = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$`)
)

func checkAccount(flag, v string) error {
	if !account.MatchString(v) {
		return fmt.Errorf("%s %q: not a user or group name", flag, v)
	}
	return nil
}

// envAssignment writes KEY=VALUE for Environment=: quoted, with '\' and
// '"' escaped and '%' doubled (Environment= expands specifiers, not
// variables).
func envAssignment(kv string) (string, error) {
	k, v, ok := strings.Cut(kv, "=")
	if !ok || !envName.MatchString(k) {
		return "", fmt.Errorf("--env %q: want NAME=VALUE with NAME made of letters, digits and '_'", kv)
	}
	if strings.ContainsAny(v, "\n\r\x00") || !utf8.ValidString(v) {
		return "", fmt.Errorf("--env %q: the value contains a newline or a byte a unit file cannot carry", kv)
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "%", "%%", "\t", `\t`)
	return `"` + k + "=" + r.Replace(v) + `"`, nil
}

// escapeText writes free text (Description=): '%' doubled, no newline.
func escapeText(flag, s string) (string, error) {
	if strings.ContainsAny(s, "\n\r\x00") || !utf8.ValidString(s) {
		return "", fmt.Errorf("%s %q: contains a newline or a byte a unit file cannot carry", flag, s)
	}
	return strings.ReplaceAll(strings.TrimSpace(s), "%", "%%"), nil
}

// stopKind is what the unit's Description says of the daemon's stop:
// "graceful stop", unless the preset says the daemon has none (memcached).
func stopKind(p signals.Preset) string {
	if p.NoGracefulStop {
		return "no graceful stop"
	}
	return "graceful stop"
}

// stopSentence is the header's line on what a stop does. For a daemon
// without a graceful stop it must not promise a drain.
func stopSentence(kind, name, sig string, p signals.Preset) string {
	if p.NoGracefulStop {
		return fmt.Sprintf("This %s runs %s under graceshim: systemd's SIGTERM reaches graceshim, which sends %s its stop signal (%s) and tells systemd how the stop goes (systemctl status shows it). %s has no graceful stop: it closes every connection at once, so nothing is drained.", kind, name, name, sig, name)
	}
	return fmt.Sprintf("This %s runs %s under graceshim: systemd's SIGTERM reaches graceshim, which sends %s its graceful signal (%s), waits for live connections to drain and tells systemd how the stop goes (systemctl status shows it).", kind, name, name, sig)
}
