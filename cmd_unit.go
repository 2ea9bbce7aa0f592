package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/graceshim/graceshim/signals"
	"github.com/graceshim/graceshim/unitgen"
)

func init() {
	extraCommands = append(extraCommands, unitCommand(), lintCommand())
}

// assumedOldSystemd is the version a unit is generated for when the local
// one cannot be told: without EXTEND_TIMEOUT_USEC, so TimeoutStopSec=
// covers the whole drain and the unit works on any systemd.
const assumedOldSystemd = 219

func unitCommand() *cli.Command {
	flags := append(runFlags(),
		&cli.StringFlag{Name: "graceshim", Usage: "graceshim's absolute path in ExecStart= and ExecReload= (default: this graceshim's own path when installed, else " + unitgen.DefaultGraceshim + ")"},
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the unit to `FILE` (atomically) instead of standard output"},
		&cli.BoolFlag{Name: "force", Usage: "with --output: replace an existing file (the old one is kept as FILE.bak)"},
		&cli.IntFlag{Name: "systemd-version", Usage: "systemd version the unit is for (default: this host's systemctl --version)"},
		&cli.StringFlag{Name: "user", Usage: "User= to run as"},
		&cli.StringFlag{Name: "group", Usage: "Group= to run as"},
		&cli.StringFlag{Name: "description", Usage: "Description= of the unit"},
		&cli.StringSliceFlag{Name: "env", Usage: "Environment= assignment `NAME=VALUE` (repeatable)"},
		&cli.BoolFlag{Name: "hardening", Usage: "add sandboxing (NoNewPrivileges, ProtectSystem=full, PrivateTmp, ...) that leaves the daemon working"},
		&cli.StringFlag{Name: "from", Usage: "convert the existing unit `FILE` instead of taking a command"},
		&cli.BoolFlag{Name: "dropin", Usage: "with --from: write a drop-in for /etc/systemd/system/NAME.service.d/ instead of a whole unit"},
		&cli.BoolFlag{Name: "socket", Usage: "also write NAME.socket, whose listening sockets systemd holds across restarts (ListenStream= from the daemon's config or flags); --output NAME writes NAME.service and NAME.socket"},
		&cli.StringSliceFlag{Name: "listen", Usage: "with --socket: listen on `ADDR` (IP:PORT, [IPv6]:PORT or /path), once per socket in descriptor order; needed where the config cannot tell (HAProxy's bind fd@N), checked against it elsewhere"},
		&cli.StringFlag{Name: "root", Usage: "with --socket: read the daemon's configuration under `DIR`, for a unit of another system"},
	)
	return &cli.Command{
		Name:      "unit",
		Usage:     "print a systemd unit that runs a command under graceshim, or convert an existing one",
		UsageText: "graceshim unit [flags] [--socket] -- COMMAND [ARGS...]\ngraceshim unit [flags] --from FILE [--dropin] [--socket]",
		Description: "exit status: 2 bad flags or input, 3 an output file exists (without --force) or cannot be written,\n" +
			"or a drop-in beside it (NAME.service.d/*.conf) would undo it,\n" +
			"7 --socket refused: the daemon cannot take systemd's sockets as configured (the message says what to change).\n" +
			"Nothing is written on any error.",
		Flags:  flags,
		Action: unitAction,
	}
}

func unitAction(c *cli.Context) error {
	fromPath := c.String("from")
	argv := c.Args().Slice()
	switch {
	case fromPath == "" && len(argv) == 0:
		return usageErrorf("missing command: use graceshim unit [flags] -- COMMAND [ARGS...] or --from FILE")
	case fromPath != "" && len(argv) > 0:
		return usageErrorf("--from takes the command from %s: give no command after it", fromPath)
	case c.Bool("dropin") && fromPath == "":
		return usageErrorf("--dropin needs --from FILE (the unit the drop-in changes)")
	case !c.Bool("socket") && (c.IsSet("listen") || c.IsSet("root")):
		return usageErrorf("--listen and --root go with --socket")
	}
	probe := argv
	if fromPath != "" {
		probe = []string{"unit"}
	}
	// The same checks as a run, so that a unit never runs flags that fail.
	ro, err := runOptions(c, probe)
	if err != nil {
		return err
	}
	var from *parsedUnit
	if fromPath != "" {
		// Read first: a socket unit or a per-connection service is
		// refused for what it is before --socket looks at its name.
		if from, err = readUnit(fromPath); err != nil {
			return err
		}
		if err := unitgen.CheckServer(from.unit); err != nil {
			return withCode(exitUsage, err)
		}
		if c.Bool("socket") {
			if err := unitgen.CheckNoSocketYet(from.unit); err != nil {
				return withCode(exitUsage, err)
			}
		}
	}
	self, why := graceshimPath(c)
	o := unitgen.Options{
		Graceshim:    self,
		RunFlags:     setRunFlags(c),
		Argv:         argv,
		DrainTimeout: ro.DrainTimeout,
		KillTimeout:  ro.KillTimeout,
		ReadyTimeout: ro.ReadyTimeout,
		DrainDelay:   ro.DrainDelay,
		User:         c.String("user"),
		Group:        c.String("group"),
		Description:  c.String("description"),
		Env:          c.StringSlice("env"),
		Hardening:    c.Bool("hardening"),
	}
	if o.DrainTimeout == 0 {
		o.DrainTimeout = -1 // --drain-timeout=0: no bound
	}
	switch {
	case fromPath == "":
		o.Preset, o.Map = ro.Preset, ro.Map
	default:
		// The preset comes from the unit's command unless --preset says.
		if c.IsSet("preset") {
			o.Preset = ro.Preset
		}
		if m := c.String("map"); m != "" {
			o.MapOver, _ = signals.ParseMap(m) // checked by runOptions
		}
	}
	o.SystemdVersion = systemdVersion(c)
	if !filepath.IsAbs(o.Graceshim) {
		return usageErrorf("--graceshim %q: the path must be absolute", o.Graceshim)
	}
	if why != "" {
		fmt.Fprintf(c.App.ErrWriter, "graceshim: the unit runs %s (%s)\n", o.Graceshim, why)
	}

	var pair *socketPair
	if c.Bool("socket") {
		fromName := fromPath
		if from != nil && from.unit.Path != "" {
			fromName = from.unit.Path // systemctl cat's output through a pipe
		}
		if pair, err = newSocketPair(c, fromName, argv); err != nil {
			return err
		}
		o.Socket = pair.name + ".socket"
	}

	var out []byte
	var warns []unitgen.Warning
	name := "command line"
	if fromPath != "" {
		name = fromPath
		warns = append(warns, parseWarnings(from)...)
		res, err := unitgen.Convert(from.unit, o, c.Bool("dropin"))
		if err != nil {
			return withCode(exitUsage, err)
		}
		out = res.Unit
		warns = append(warns, res.Warnings...)
		o = res.Options
		if pair != nil {
			daemon := unitgen.ExpandUnitEnv(from.unit, unitgen.DaemonArgv(o.Argv))
			if err := pair.socket(c, daemon, o, from.unit); err != nil {
				return err
			}
		}
	} else {
		if pair != nil {
			if err := pair.socket(c, unitgen.DaemonArgv(o.Argv), o, nil); err != nil {
				return err
			}
		}
		out, err = unitgen.Generate(o)
		if err != nil {
			return withCode(exitUsage, err)
		}
	}
	warns = append(warns, unitgen.CommandWarnings(name, o.Argv[0], o.Graceshim)...)
	for _, w := range warns {
		fmt.Fprintf(c.App.ErrWriter, "graceshim: warning: %s\n", w)
	}
	svcPath := c.String("output")
	if pair != nil {
		svcPath = pair.svcPath
	}
	if svcPath != "" {
		var fromUnit *unitgen.Unit
		if from != nil {
			fromUnit = from.unit
		}
		if err := unitgen.CheckDropins(svcPath, out, fromUnit); err != nil {
			return withCode(exitWrite, err)
		}
	}
	if pair != nil {
		return pair.write(c, out)
	}
	if path := c.String("output"); path != "" {
		return writeOutput(c.App.ErrWriter, path, out, c.Bool("force"))
	}
	if _, err := c.App.Writer.Write(out); err != nil {
		return withCode(exitWrite, fmt.Errorf("cannot write the unit to standard output: %w", err))
	}
	return nil
}

// graceshimPath is the graceshim a generated unit runs: --graceshim, or
// this very executable when it is installed, or the .deb's path when this
// one is a temporary build (go run, go test) that will be gone. why says
// which, for stderr ("" when --graceshim chose).
func graceshimPath(c *cli.Context) (path, why string) {
	if c.IsSet("graceshim") {
		return c.String("graceshim"), ""
	}
	exe, err := os.Executable()
	if err == nil {
		exe, err = filepath.EvalSymlinks(exe)
	}
	switch {
	case err != nil:
		return unitgen.DefaultGraceshim, fmt.Sprintf("where the package installs graceshim; cannot tell this executable's path: %v; pass --graceshim to choose", err)
	case temporaryBuild(exe):
		return unitgen.DefaultGraceshim, fmt.Sprintf("where the package installs graceshim: this graceshim, %s, is a temporary build; pass --graceshim to choose", exe)
	}
	return exe, "this graceshim's own path; pass --graceshim to choose another"
}

// temporaryBuild says whether exe is a build that go run or go test
// leaves in a go-build directory under the temp dir and removes after.
func temporaryBuild(exe string) bool {
	if strings.HasSuffix(exe, ".test") {
		return true
	}
	for _, dir := range strings.Split(filepath.Dir(exe), string(filepath.Separator)) {
		if strings.HasPrefix(dir, "go-build") {
			return true
		}
	}
	return false
}

// systemdVersion is --systemd-version, or this host's, or an old one that
// works everywhere (with a warning).
func systemdVersion(c *cli.Context) int {
	if c.IsSet("systemd-version") {
		return c.Int("systemd-version")
	}
	v, err := unitgen.LocalVersion(c.Context)
	if err != nil {
		fmt.Fprintf(c.App.ErrWriter, "graceshim: warning: %v; writing for systemd %d (no EXTEND_TIMEOUT_USEC: a TimeoutStopSec= that covers the whole drain works on any version); pass --systemd-version to choose\n", err, assumedOldSystemd)
		return assumedOldSystemd
	}
	return v
}

type parsedUnit struct {
	unit  *unitgen.Unit
	warns []unitgen.Warning
}

func parseWarnings(p *parsedUnit) []unitgen.Warning { return p.warns }

// readUnit reads and parses a unit file; both failures are usage errors
// (exit 2).
func readUnit(path string) (*parsedUnit, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, withCode(exitUsage, fmt.Errorf("cannot read unit %s: %w", path, unitgen.UnwrapPath(err)))
	}
	u, warns, err := unitgen.Parse(path, data)
	if err != nil {
		return nil, withCode(exitUsage, err)
	}
	// systemctl cat's output through a pipe (--from <(systemctl cat
	// nginx)): its first line names the unit file ("#
	// /lib/systemd/system/nginx.service"), whose name and neighbours
	// (its socket unit) are the unit's. A regular file keeps its own.
	if first, _, _ := strings.Cut(string(data), "\n"); strings.HasPrefix(first, "# /") && !strings.ContainsAny(first[2:], " \t") {
		if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
			u.Path = first[2:]
		}
	}
	return &parsedUnit{unit: u, warns: warns}, nil
}

// writeOutput writes data to path atomically: a temp file in the same
// directory, renamed over path. An existing path is refused without force
// and kept as path.bak (or .bak.N) with it.
func writeOutput(log io.Writer, path string, data []byte, force bool) error {
	fi, err := os.Lstat(path)
	exists := err == nil
	switch {
	case exists && !fi.Mode().IsRegular():
		return withCode(exitWrite, fmt.Errorf("cannot write %s: it exists and is not a regular file", path))
	case exists && !force:
		return withCode(exitWrite, fmt.Errorf("%s exists: use --force to replace it", path))
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return withCode(exitWrite, fmt.Errorf("cannot write %s: %w", path, unitgen.UnwrapPath(err)))
	}
	if exists {
		bak := path + ".bak"
		for i := 1; ; i++ {
			if _, err := os.Lstat(bak); errors.Is(err, fs.ErrNotExist) {
				break
			}
			bak = path + ".bak." + strconv.Itoa(i)
		}
		if err := os.Link(path, bak); err != nil {
			return withCode(exitWrite, fmt.Errorf("cannot keep the old %s as %s: %w", path, bak, unitgen.UnwrapPath(err)))
		}
		fmt.Fprintf(log, "graceshim: kept the old %s as %s\n", path, bak)
	}
	return withCode(exitWrite, unitgen.WriteFile(path, data, 0o644, nil))
}

func lintCommand() *cli.Command {
	return &cli.Command{
		Name:      "lint",
		Usage:     "explain what goes wrong when these units stop, and the fix",
		UsageText: "graceshim lint [--format text|json] UNIT...",
		Description: "exit status: 0 no findings (notes only), 1 errors or warnings, 2 a unit could not be read or parsed,\n" +
			"3 the findings could not be written.\n" +
			"Findings say what goes wrong on stop and how to fix it; they read the daemon's own\n" +
			"grace setting (nginx worker_shutdown_timeout, gunicorn graceful_timeout) when they can tell.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "format", Value: "text", Usage: "text or json (a stable array of {file, line, directive, severity, problem, fix})"},
			&cli.IntFlag{Name: "systemd-version", Usage: "systemd version the units run under (default: this host's)"},
			&cli.StringFlag{Name: "root", Usage: "read the daemons' own configuration (/etc/nginx/nginx.conf) under `DIR`, for units of another system"},
		},
		Action: lintAction,
	}
}

func lintAction(c *cli.Context) error {
	format := c.String("format")
	if format != "text" && format != "json" {
		return usageErrorf("unknown --format %q (want text or json)", format)
	}
	if c.NArg() == 0 {
		return usageErrorf("missing unit: use graceshim lint UNIT...")
	}
	o := unitgen.LintOptions{SystemdVersion: c.Int("systemd-version"), Root: c.String("root")}
	if !c.IsSet("systemd-version") {
		if v, err := unitgen.LocalVersion(c.Context); err == nil {
			o.SystemdVersion = v
		}
	}
	out := &errWriter{w: c.App.Writer}
	findings := []unitgen.Finding{}
	var unreadable error
	unreadableN := 0
	for _, path := range c.Args().Slice() {
		p, err := readUnit(path)
		if err != nil {
			fmt.Fprintf(c.App.ErrWriter, "graceshim: %v\n", err)
			unreadable = err
			unreadableN++
			continue
		}
		for _, w := range p.warns {
			fmt.Fprintf(c.App.ErrWriter, "graceshim: warning: %s\n", w)
		}
		fs := unitgen.Lint(p.unit, o)
		findings = append(findings, fs...)
		if format == "text" {
			for _, f := range fs {
				fmt.Fprintln(out, f)
			}
			switch {
			case problems(fs) > 0:
			case unitgen.CheckServer(p.unit) != nil:
				// A socket unit, a drop-in, a job, a per-connection service:
				// the note says what it is; "no problems" would claim
				// a verdict lint did not reach.
				fmt.Fprintf(out, "%s: nothing for lint to judge (see the note)\n", path)
			default:
				fmt.Fprintf(out, "%s: no stop problems found\n", path)
			}
		}
	}
	if format == "json" {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		_ = enc.Encode(findings) // a write error is in out.err
	}
	n := problems(findings)
	switch {
	case out.err != nil:
		return withCode(exitWrite, fmt.Errorf("cannot write the findings: %w", out.err))
	case unreadable != nil:
		return withCode(exitUsage, fmt.Errorf("%d of %d units could not be read", unreadableN, c.NArg()))
	case n > 0:
		return withCode(exitFindings, fmt.Errorf("%d %s", n, plural(n, "finding", "findings")))
	}
	return nil
}

// problems counts the findings that make lint exit 1: errors and
// warnings, not notes.
func problems(fs []unitgen.Finding) int {
	n := 0
	for _, f := range fs {
		if f.Severity != unitgen.SeverityNote {
			n++
		}
	}
	return n
}

// errWriter keeps the first write error, so that output to a full disk
// or a closed pipe ends in exit 3 rather than a lint verdict.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	if err != nil {
		e.err = err
	}
	return n, err
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
