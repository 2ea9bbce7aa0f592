// Command graceshim runs a server as a systemd unit's main process and
// stops it without losing a request. See README.md.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/debug"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/graceshim/graceshim/signals"
	"github.com/graceshim/graceshim/supervisor"
	"github.com/graceshim/graceshim/supervisor/conns"
	"github.com/graceshim/graceshim/supervisor/early"
)

// Exit codes of graceshim's own errors. When graceshim runs a command, it
// otherwise exits with the command's status, or 128+N when a signal N
// killed it.
const (
	exitFindings = 1   // lint found problems; initscript --check: a fix is needed
	exitUsage    = 2   // bad flags or arguments, unknown signal or preset, unreadable or unparsable input
	exitWrite    = 3   // an output path exists (without --force) or cannot be written
	exitUnsure   = 4   // initscript: a stop path graceshim cannot understand; nothing rewritten
	exitUpgrade  = 5   // upgrade: it did not happen; the running service is untouched or rolled back
	exitReload   = 6   // reload: refused (config test failed) or failed; the running service is kept
	exitSockets  = 7   // the inherited listening sockets do not fit the server (its preset or config); nothing started
	exitShim     = 125 // graceshim failed while supervising (no pid file in time, a broken setup)
	exitNoExec   = 126 // the command exists but cannot be run
	exitNotFound = 127 // the command does not exist
)

const exitCodesHelp = `EXIT STATUS:
   the command's own status, or 128+N when signal N killed it
   1    lint found problems; initscript --check: a fix is needed
   2    usage: bad flags or arguments, unknown signal or preset, unreadable input
   3    an output file exists (use --force) or cannot be written
   4    initscript: a stop path graceshim cannot understand; nothing rewritten
   5    upgrade: it did not happen; the running service is untouched or rolled back
   6    reload: refused (the config test failed) or not confirmed; the server keeps serving
   7    sockets: the listening sockets systemd passes do not fit the server's preset or config; nothing started or written
   10   status: no process has that pid
   11   status: the process is not a graceshim
   12   status: permission denied (root and graceshim's own user only)
   13   status: the unit is not running, or systemd cannot be asked
   14   status: graceshim did not answer
   125  graceshim failed while supervising (e.g. the pid file never appeared)
   126  the command is not executable
   127  the command was not found
`

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

// exitError carries the exit code for an error; main is the only place that
// turns errors into exit codes.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// withCode marks err with an exit code; nil stays nil.
func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: code, err: err}
}

func usageErrorf(format string, a ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, a...)}
}

// exitCode maps an error returned by the app to graceshim's exit code.
func exitCode(err error) int {
	var st *supervisor.ExitStatus
	var ee *exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &st):
		return st.Code()
	case errors.As(err, &ee):
		return ee.code
	case errors.Is(err, exec.ErrNotFound), errors.Is(err, os.ErrNotExist):
		return exitNotFound
	case errors.Is(err, os.ErrPermission):
		return exitNoExec
	case errors.Is(err, supervisor.ErrSockets):
		return exitSockets
	case errors.Is(err, supervisor.ErrSetup):
		return exitShim
	case errors.Is(err, supervisor.ErrBadOption):
		return exitUsage
	}
	return exitUsage
}

func main() {
	app := newApp()
	if runsCommand(app, os.Args) {
		// Before anything else: a TERM sent the moment graceshim runs
		// (a container runtime, graceshim as PID 1) is a stop, not the
		// Go runtime's exit 2. Package early did it already, before the
		// other packages' initialisation, when the command line has "--".
		supervisor.CatchEarly()
	} else {
		// A subcommand: what early caught has its usual effect.
		early.Release()
	}
	err := app.Run(os.Args)
	code := exitCode(err)
	var st *supervisor.ExitStatus
	if err != nil && !errors.As(err, &st) {
		fmt.Fprintf(os.Stderr, "graceshim: %v\n", err)
	}
	os.Exit(code)
}

// runsCommand reports whether args ask graceshim to run a command (the
// app's default action) rather than a subcommand, help or the version.
func runsCommand(app *cli.App, args []string) bool {
	for _, a := range args[1:] {
		switch {
		case a == "--":
			return true
		case strings.HasPrefix(a, "-"):
			if a == "-h" || a == "--help" || a == "-v" || a == "--version" || a == "--generate-man" {
				return false
			}
			continue
		}
		// The first word that is not a flag: a subcommand's name, or a
		// flag's value, or the command.
		for _, c := range app.Commands {
			if c.HasName(a) {
				return false
			}
		}
	}
	return len(args) > 1
}

func appVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

func newApp() *cli.App {
	cli.VersionFlag = &cli.BoolFlag{Name: "version", Aliases: []string{"v"}, Usage: "print the version and exit"}
	app := &cli.App{
		Name:      "graceshim",
		Usage:     "stop servers without losing a request",
		UsageText: "graceshim [options] -- COMMAND [ARGS...]\ngraceshim COMMAND [options] [arguments...]",
		Description: "graceshim runs COMMAND as its child, turns the stop signal into the child's graceful\n" +
			"signal (QUIT for nginx), watches its live connections drain while telling systemd\n" +
			"how the stop goes, and escalates when draining stalls or a bound is reached.",
		Version: appVersion(),
		Flags: append(runFlags(), &cli.BoolFlag{
			Name: "generate-man", Hidden: true, Usage: "print the man page (roff) and exit; the same as 'graceshim man'",
		}),
		Action:                runAction,
		HideHelpCommand:       true,
		EnableBashCompletion:  true,
		CustomAppHelpTemplate: cli.AppHelpTemplate + "\n" + exitCodesHelp,
		ExitErrHandler:        func(*cli.Context, error) {},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return withCode(exitUsage, err)
		},
		Commands: []*cli.Command{
			presetsCommand(),
		},
	}
	app.Commands = append(app.Commands, extraCommands...)
	sort.Slice(app.Commands, func(i, j int) bool { return app.Commands[i].Name < app.Commands[j].Name })
	return app
}

// extraCommands are the subcommands defined in the cmd_*.go files.
var extraCommands []*cli.Command

// runFlags are the flags of the supervisor. The unit and initscript
// generators take the same flags and pass on the ones that were set, so a
// generated ExecStart= runs exactly what was asked for.
func runFlags() []cli.Flag {
	env := func(name string) []string {
		return []string{"GRACESHIM_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))}
	}
	return []cli.Flag{
		&cli.StringFlag{Name: "preset", Usage: "daemon preset (see 'graceshim presets'); default: picked from the command's name", EnvVars: env("preset")},
		&cli.StringFlag{Name: "map", Usage: "signal translations FROM:TO,... applied over the preset (e.g. TERM:QUIT,INT:QUIT); FROM must be a signal graceshim catches", EnvVars: env("map")},
		&cli.StringFlag{Name: "pidfile", Usage: "follow the master through this pid file (for daemonizing servers)", EnvVars: env("pidfile")},
		&cli.StringFlag{Name: "ready", Value: "listen", Usage: "when to tell systemd READY=1: listen (the process tree has a listening socket), exec (at once)", EnvVars: env("ready")},
		&cli.DurationFlag{Name: "ready-timeout", Value: supervisor.DefaultReadyTimeout, Usage: "with --ready=listen: send READY=1 anyway after this long; with --pidfile: how long the pid file may take to appear", EnvVars: env("ready-timeout")},
		&cli.DurationFlag{Name: "drain-timeout", Aliases: []string{"stop-timeout"}, Value: supervisor.DefaultDrainTimeout, Usage: "longest graceful stop before the fast signal (0: no bound); when the graceful and fast signals are the same (the generic preset), SIGKILL follows it directly", EnvVars: env("drain-timeout")},
		&cli.DurationFlag{Name: "stall-timeout", Usage: "escalate when no connection has closed for this long while some remain (0: off)", EnvVars: env("stall-timeout")},
		&cli.DurationFlag{Name: "kill-timeout", Value: supervisor.DefaultKillTimeout, Usage: "time between the fast signal and SIGKILL to every descendant; when the graceful and fast signals are the same and --drain-timeout is not given, the time between that signal and SIGKILL (as docker stop's)", EnvVars: env("kill-timeout")},
		&cli.DurationFlag{Name: "drain-delay", Usage: "keep serving this long after the stop signal before the graceful signal (for load balancers)", EnvVars: env("drain-delay")},
		&cli.StringFlag{Name: "count", Value: "listen", Usage: "which connections the drain waits for: listen (those the server's processes hold on its TCP and unix listening sockets when the drain starts), all (every TCP connection its processes hold then, outbound too)", EnvVars: env("count")},
		&cli.StringFlag{Name: "health-listen", Usage: "serve a health endpoint on ADDR: 200 while running, 503 once a stop begins", EnvVars: env("health-listen")},
		&cli.StringFlag{Name: "health-check", Usage: "probe the child (an http:// URL, tcp:HOST:PORT, or tcp for its first listening socket): READY=1 and the systemd watchdog wait for it to pass", EnvVars: env("health-check")},
		&cli.StringFlag{Name: "notify", Value: "auto", Usage: "give the command graceshim's own NOTIFY_SOCKET and relay its READY=1, STATUS=, RELOADING=1 and WATCHDOG=1: auto (presets of daemons that speak sd_notify), relay (always), off", EnvVars: env("notify")},
		&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error", EnvVars: env("log-level")},
	}
}

// setRunFlags returns the run flags that were set on c as --name=value
// arguments, in the order runFlags lists them.
func setRunFlags(c *cli.Context) []string {
	var out []string
	for _, f := range runFlags() {
		name := f.Names()[0]
		if !c.IsSet(name) {
			continue
		}
		switch f.(type) {
		case *cli.DurationFlag:
			out = append(out, "--"+name+"="+formatDuration(c.Duration(name)))
		default:
			out = append(out, "--"+name+"="+c.String(name))
		}
	}
	return out
}

// formatDuration prints d the way time.ParseDuration reads it, without
// the trailing zero units of Duration.String ("5m" rather than "5m0s").
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// runOptions builds the supervisor's options from the run flags.
func runOptions(c *cli.Context, argv []string) (supervisor.Options, error) {
	opts := supervisor.Options{
		Argv:         argv,
		PIDFile:      c.String("pidfile"),
		ReadyTimeout: c.Duration("ready-timeout"),
		DrainTimeout: c.Duration("drain-timeout"),
		StallTimeout: c.Duration("stall-timeout"),
		KillTimeout:  c.Duration("kill-timeout"),
		DrainDelay:   c.Duration("drain-delay"),
		HealthListen: c.String("health-listen"),
	}
	if len(argv) == 0 {
		return opts, usageErrorf("missing command: use graceshim [options] -- COMMAND [ARGS...]")
	}
	if opts.DrainTimeout < 0 {
		return opts, usageErrorf("--drain-timeout must not be negative")
	}
	if c.IsSet("drain-timeout") && opts.DrainTimeout == 0 {
		opts.DrainTimeout = -1 // 0 on the command line: no bound
	}
	if name := c.String("preset"); name != "" {
		p, err := signals.Lookup(name)
		if err != nil {
			return opts, withCode(exitUsage, err)
		}
		opts.Preset = p
	} else {
		opts.Preset, _ = signals.ForCommand(argv[0])
	}
	opts.Map = opts.Preset.Map()
	if s := c.String("map"); s != "" {
		m, err := signals.ParseMap(s)
		if err != nil {
			return opts, withCode(exitUsage, err)
		}
		if err := m.Check(supervisor.Catches); err != nil {
			return opts, withCode(exitUsage, err)
		}
		opts.Map = opts.Map.Merge(m)
	}
	if opts.Map.Translate(syscall.SIGTERM) == opts.Preset.Fast && c.IsSet("kill-timeout") && !c.IsSet("drain-timeout") {
		// One signal, then SIGKILL: --kill-timeout alone is the time
		// between them, as docker stop's timeout is.
		opts.DrainTimeout = opts.KillTimeout
	}
	var err error
	if opts.HealthCheck, err = supervisor.ParseProbe(c.String("health-check")); err != nil {
		return opts, withCode(exitUsage, err)
	}
	if opts.Ready, err = supervisor.ParseReadyMode(c.String("ready")); err != nil {
		return opts, withCode(exitUsage, err)
	}
	if opts.Count, err = conns.ParseMode(c.String("count")); err != nil {
		return opts, withCode(exitUsage, err)
	}
	if opts.Notify, err = supervisor.ParseNotifyMode(c.String("notify")); err != nil {
		return opts, withCode(exitUsage, err)
	}
	level, err := supervisor.ParseLevel(c.String("log-level"))
	if err != nil {
		return opts, withCode(exitUsage, err)
	}
	opts.Log = supervisor.NewLogger(os.Stderr, level)
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"ready-timeout", opts.ReadyTimeout}, {"drain-timeout", max(opts.DrainTimeout, 0)}, {"stall-timeout", opts.StallTimeout}, {"kill-timeout", opts.KillTimeout}, {"drain-delay", opts.DrainDelay}} {
		if d.v < 0 {
			return opts, usageErrorf("--%s must not be negative", d.name)
		}
	}
	return opts, nil
}

func runAction(c *cli.Context) error {
	if c.Bool("generate-man") {
		page, err := manPage(c.App)
		if err != nil {
			return err
		}
		_, err = fmt.Fprint(c.App.Writer, page)
		return err
	}
	if c.NArg() == 0 {
		_ = cli.ShowAppHelp(c)
		return usageErrorf("missing command: use graceshim [options] -- COMMAND [ARGS...]")
	}
	opts, err := runOptions(c, c.Args().Slice())
	if err != nil {
		return err
	}
	return supervisor.Run(c.Context, opts)
}

func presetsCommand() *cli.Command {
	return &cli.Command{
		Name:  "presets",
		Usage: "list the daemon presets and their signals",
		Action: func(c *cli.Context) error {
			return printPresets(c.App.Writer)
		},
	}
}

func printPresets(w io.Writer) error {
	name := func(s syscall.Signal) string {
		if s == 0 {
			return "-"
		}
		return signals.Name(s)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PRESET\tGRACEFUL\tFAST\tRELOAD\tUPGRADE\tCOMMANDS\tNOTES")
	for _, p := range signals.Presets() {
		graceful := name(p.Graceful)
		if p.PreStop != 0 {
			graceful = name(p.PreStop) + "+" + graceful
		}
		cmds := strings.Join(p.Commands, ",")
		if cmds == "" {
			cmds = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, graceful, name(p.Fast),
			name(p.Reload), name(p.Upgrade), cmds, p.Notes)
	}
	return tw.Flush()
}
