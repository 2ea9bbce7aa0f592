package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/graceshim/graceshim/unitgen"
	"github.com/graceshim/graceshim/unitgen/sysv"
)

func init() {
	extraCommands = append(extraCommands, initscriptCommand())
}

func initscriptCommand() *cli.Command {
	flags := append(runFlags(),
		&cli.StringFlag{Name: "style", Value: "redhat", Usage: "redhat (/etc/rc.d/init.d/functions, chkconfig) or lsb (/lib/lsb/init-functions, start-stop-daemon)"},
		&cli.StringFlag{Name: "name", Usage: "service name (script, lock file, /etc/sysconfig/NAME); default: the command's base name"},
		&cli.BoolFlag{Name: "no-shim", Usage: "signal the daemon directly (it must daemonize and write --pidfile) instead of running it under graceshim"},
		&cli.StringFlag{Name: "graceshim", Value: sysv.DefaultGraceshimPath, Usage: "graceshim's absolute path on the target host"},
		&cli.StringFlag{Name: "script-pidfile", Usage: "shim mode: graceshim's own pid file (default /var/run/NAME-graceshim.pid)"},
		&cli.StringFlag{Name: "logfile", Usage: "shim mode: graceshim's log (default /var/log/NAME-graceshim.log)"},
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the script to `FILE` (atomically, mode 0755) instead of standard output"},
		&cli.BoolFlag{Name: "force", Usage: "with --output: replace an existing file"},
	)
	return &cli.Command{
		Name:  "initscript",
		Usage: "write a SysV init script whose stop is graceful, or fix an existing one",
		UsageText: "graceshim initscript [--style redhat|lsb] [--no-shim] [flags] -- COMMAND [ARGS...]\n" +
			"graceshim initscript fix [--check | --in-place] [--preset P] FILE",
		Description: "Without --no-shim the script runs COMMAND under graceshim in the background and\n" +
			"stops it with TERM, which graceshim turns into the graceful signal while it watches\n" +
			"the drain. With --no-shim the script sends the graceful signal itself to the master in\n" +
			"--pidfile, waits up to STOP_TIMEOUT (default: --drain-timeout if given, else 60 s), then\n" +
			"TERM, then KILL.\n" +
			"STOP_TIMEOUT can be overridden in /etc/sysconfig/NAME or /etc/default/NAME.",
		Flags:       flags,
		Action:      initscriptAction,
		Subcommands: []*cli.Command{initscriptFixCommand()},
	}
}

func initscriptAction(c *cli.Context) error {
	argv := c.Args().Slice()
	if len(argv) == 0 {
		return usageErrorf("missing command: use graceshim initscript [flags] -- COMMAND [ARGS...] or graceshim initscript fix FILE")
	}
	style, err := sysv.ParseStyle(c.String("style"))
	if err != nil {
		return withCode(exitUsage, err)
	}
	ro, err := runOptions(c, argv)
	if err != nil {
		return err
	}
	if ro.DrainTimeout < time.Second {
		return usageErrorf("--drain-timeout %s: an init script needs a bound of at least 1s", ro.DrainTimeout)
	}
	o := sysv.GenOptions{
		Style:       style,
		Name:        c.String("name"),
		Argv:        argv,
		Preset:      ro.Preset,
		Shim:        !c.Bool("no-shim"),
		Graceshim:   c.String("graceshim"),
		LogFile:     c.String("logfile"),
		StopTimeout: int((ro.DrainTimeout + time.Second - 1) / time.Second),
		KillTimeout: int((ro.KillTimeout + time.Second - 1) / time.Second),
		Command:     "graceshim " + strings.Join(os.Args[1:], " "),
	}
	if !c.IsSet("drain-timeout") {
		// CentOS 6 runs stop scripts one after another at shutdown: the
		// same 60 s a fix writes, not the supervisor's 5 minutes.
		o.StopTimeout = sysv.DefaultStopTimeout
	}
	if o.Shim {
		if !filepath.IsAbs(o.Graceshim) {
			return usageErrorf("--graceshim %q: the path must be absolute", o.Graceshim)
		}
		o.PIDFile = c.String("script-pidfile")
		// The drain and kill bounds are written from STOP_TIMEOUT, so an
		// admin's override reaches graceshim; the other flags pass as set.
		for _, f := range setRunFlags(c) {
			if strings.HasPrefix(f, "--drain-timeout=") || strings.HasPrefix(f, "--kill-timeout=") {
				continue
			}
			o.ShimFlags = append(o.ShimFlags, f)
		}
	} else {
		if c.IsSet("script-pidfile") || c.IsSet("logfile") {
			return usageErrorf("--script-pidfile and --logfile are for shim mode; with --no-shim give the daemon's --pidfile")
		}
		o.PIDFile = c.String("pidfile")
	}
	script, err := sysv.Generate(o)
	if err != nil {
		return withCode(exitUsage, err)
	}
	out := c.String("output")
	if out == "" {
		_, err := c.App.Writer.Write(script)
		return err
	}
	if _, err := os.Lstat(out); err == nil && !c.Bool("force") {
		return withCode(exitWrite, fmt.Errorf("%s exists: use --force to replace it", out))
	}
	if err := unitgen.WriteFile(out, script, 0o755, nil); err != nil {
		return withCode(exitWrite, err)
	}
	fmt.Fprintf(c.App.ErrWriter, "wrote %s\n", out)
	return nil
}

func initscriptFixCommand() *cli.Command {
	return &cli.Command{
		Name:      "fix",
		Usage:     "rewrite an init script's stop, restart and reload to stop the daemon gracefully",
		UsageText: "graceshim initscript fix [--check | --in-place] [--preset P] [--stop-timeout SECONDS] FILE",
		Description: "Prints a unified diff on standard output and one line per change on standard\n" +
			"error. A script that is already right is left alone (exit 0). A stop the analysis\n" +
			"cannot understand is reported with the lines it looked at and never rewritten (exit 4);\n" +
			"so is a stop of a daemon no preset names, a template's included (%PROVIDES%,\n" +
			"@sbindir@): name it with --preset. The stop waits up to STOP_TIMEOUT (default 60 s,\n" +
			"--stop-timeout), which an admin sets in /etc/sysconfig/NAME or /etc/default/NAME.\n" +
			"--check exits 1 when a fix is needed. --in-place keeps the original as FILE.orig\n" +
			"and refuses (exit 3) when FILE.orig already exists.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "check", Usage: "write nothing; exit 1 when a fix is needed"},
			&cli.BoolFlag{Name: "in-place", Aliases: []string{"i"}, Usage: "rewrite FILE atomically, keeping the original as FILE.orig"},
			&cli.StringFlag{Name: "preset", Usage: "the daemon's preset (default: from prog=, exec=, the binary); needed for templates and unknown daemons"},
			&cli.IntFlag{Name: "stop-timeout", Value: sysv.DefaultStopTimeout, Usage: "default STOP_TIMEOUT in `SECONDS` written into the script"},
		},
		Action: initscriptFixAction,
	}
}

func initscriptFixAction(c *cli.Context) error {
	if c.NArg() != 1 {
		return usageErrorf("initscript fix takes one FILE (got %d arguments)", c.NArg())
	}
	if c.Bool("check") && c.Bool("in-place") {
		return usageErrorf("--check and --in-place cannot be used together")
	}
	if c.Int("stop-timeout") < 1 {
		return usageErrorf("--stop-timeout must be at least 1 second")
	}
	file := c.Args().First()
	st, err := os.Stat(file)
	if err != nil {
		return withCode(exitUsage, fmt.Errorf("cannot read %s: %w", file, unitgen.UnwrapPath(err)))
	}
	if !st.Mode().IsRegular() {
		return usageErrorf("%s is not a regular file", file)
	}
	src, err := os.ReadFile(file)
	if err != nil {
		return withCode(exitUsage, fmt.Errorf("cannot read %s: %w", file, unitgen.UnwrapPath(err)))
	}
	r, err := sysv.Fix(file, src, sysv.FixOptions{Preset: c.String("preset"), StopTimeout: c.Int("stop-timeout")})
	var unsure *sysv.UnsureError
	switch {
	case errors.As(err, &unsure):
		return withCode(exitUnsure, fmt.Errorf("%s: %w", file, err))
	case err != nil:
		return withCode(exitUsage, err)
	}
	if err := sysv.Summary(c.App.ErrWriter, file, r); err != nil {
		return err
	}
	if !r.Changed() {
		return nil
	}
	switch {
	case c.Bool("check"):
		return withCode(exitFindings, fmt.Errorf("%s needs a fix (%d changes)", file, len(r.Changes)))
	case c.Bool("in-place"):
		if err := initscriptFixInPlace(file, st, src, r.Output); err != nil {
			return withCode(exitWrite, err)
		}
		fmt.Fprintf(c.App.ErrWriter, "%s: fixed in place; the original is %s.orig\n", file, file)
		return nil
	}
	_, err = io.WriteString(c.App.Writer, sysv.Diff("a/"+filepath.Base(file), "b/"+filepath.Base(file), src, r.Output))
	return err
}

// initscriptFixInPlace keeps the original as FILE.orig (never replacing an
// existing backup) and replaces FILE atomically with the fixed script,
// with the original's mode and owner. On any failure nothing is left
// behind.
func initscriptFixInPlace(file string, st fs.FileInfo, orig, fixed []byte) error {
	backup := file + ".orig"
	bf, err := os.OpenFile(backup, os.O_WRONLY|os.O_CREATE|os.O_EXCL, st.Mode().Perm())
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("backup %s already exists: not overwriting it; move it away first", backup)
	}
	if err != nil {
		return fmt.Errorf("cannot write backup %s: %w", backup, unitgen.UnwrapPath(err))
	}
	_, werr := bf.Write(orig)
	if err := bf.Close(); werr == nil {
		werr = err
	}
	if werr != nil {
		os.Remove(backup)
		return fmt.Errorf("cannot write backup %s: %w", backup, werr)
	}
	if err := unitgen.WriteFile(file, fixed, st.Mode().Perm(), st); err != nil {
		os.Remove(backup)
		return err
	}
	return nil
}
