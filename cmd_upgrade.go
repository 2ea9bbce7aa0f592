package main

import (
	"errors"
	"os"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/graceshim/graceshim/signals"
	"github.com/graceshim/graceshim/supervisor"
)

func init() { extraCommands = append(extraCommands, upgradeCommand()) }

func upgradeCommand() *cli.Command {
	return &cli.Command{
		Name:      "upgrade",
		Usage:     "replace a running server's binary without a stop (nginx, unicorn: needs 'daemon on' for nginx)",
		UsageText: "graceshim upgrade (--pid PID | --unit NAME [--user]) [--timeout DUR] [-- CONFIG-TEST-COMMAND...]",
		Description: "Checks that the new binary is in place and, when given, that the config test passes;\n" +
			"then asks graceshim for the upgrade dance (USR2, WINCH, QUIT) and waits until the new\n" +
			"master has replaced the old one. graceshim stays the unit's main process throughout.\n" +
			"Exit status 5: the upgrade did not happen; the running service is untouched or rolled back.",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "pid", Usage: "graceshim's pid (the unit's MainPID)"},
			&cli.StringFlag{Name: "unit", Usage: "find graceshim's pid from this systemd unit's MainPID"},
			&cli.BoolFlag{Name: "user", Usage: "with --unit: the unit is the user manager's"},
			&cli.StringFlag{Name: "signal", Value: "USR2", Usage: "the signal graceshim takes as an upgrade request (the preset's upgrade signal)"},
			&cli.DurationFlag{Name: "timeout", Value: supervisor.DefaultDrainTimeout, Usage: "how long the old master may take to drain and go"},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"},
		},
		Action: upgradeAction,
	}
}

func upgradeAction(c *cli.Context) error {
	sig, err := signals.Parse(c.String("signal"))
	if err != nil {
		return withCode(exitUsage, err)
	}
	level, err := supervisor.ParseLevel(c.String("log-level"))
	if err != nil {
		return withCode(exitUsage, err)
	}
	pid := c.Int("pid")
	var status func() string
	switch {
	case pid != 0 && c.String("unit") != "":
		return usageErrorf("give --pid or --unit, not both")
	case c.String("unit") != "":
		unit, user := c.String("unit"), c.Bool("user")
		if pid, err = unitMainPID(c.Context, unit, user, systemctlTimeout); err != nil {
			return withCode(exitUsage, err)
		}
		status = func() string {
			props, _ := unitShow(c.Context, unit, user, systemctlTimeout, "StatusText")
			return props["StatusText"]
		}
	case pid <= 0:
		return usageErrorf("missing --pid or --unit: which graceshim to upgrade")
	}
	if err := syscall.Kill(pid, 0); err != nil {
		return usageErrorf("no process %d: %v", pid, err)
	}
	err = supervisor.RequestUpgrade(c.Context, supervisor.UpgradeRequest{
		PID:     pid,
		Signal:  sig,
		Test:    c.Args().Slice(),
		Timeout: c.Duration("timeout"),
		Status:  status,
		Log:     supervisor.NewLogger(os.Stderr, level),
	})
	if errors.Is(err, supervisor.ErrUpgrade) {
		return withCode(exitUpgrade, err)
	}
	return err
}
