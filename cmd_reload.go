package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/graceshim/graceshim/supervisor"
)

func init() { extraCommands = append(extraCommands, reloadCommand()) }

// defaultReloadTimeout bounds `graceshim reload`: graceshim's own bounds
// (a minute for the config test, then the reload's) fit well inside it,
// and it stays under systemd's default TimeoutStartSec= of 90 s, which
// bounds ExecReload= too.
const defaultReloadTimeout = 85 * time.Second

func reloadCommand() *cli.Command {
	return &cli.Command{
		Name:      "reload",
		Usage:     "reload a running server's configuration, refused when its config test fails (for ExecReload=)",
		UsageText: "graceshim reload [--timeout DUR] PID\n\nIn a unit: ExecReload=/usr/bin/graceshim reload $MAINPID",
		Description: "Asks the graceshim running as PID (the unit's main process) to reload its server:\n" +
			"graceshim runs the preset's config test first (nginx -t, ...) and refuses the reload\n" +
			"when it fails, sending nothing; otherwise it sends the reload and waits for its outcome\n" +
			"(the server's own READY=1, new workers, or a bound). Exit 0 when the reload was done and\n" +
			"the server serves; exit 6 with the reason (the config test's message) otherwise; exit 2\n" +
			"when no graceshim runs as PID.",
		Flags: []cli.Flag{
			&cli.DurationFlag{Name: "timeout", Value: defaultReloadTimeout, Usage: "how long to wait for the outcome"},
		},
		Action: reloadAction,
	}
}

func reloadAction(c *cli.Context) error {
	if c.NArg() != 1 {
		return usageErrorf("want one PID: graceshim reload PID (in a unit: graceshim reload $MAINPID)")
	}
	pid, err := strconv.Atoi(c.Args().First())
	if err != nil || pid <= 0 {
		return usageErrorf("bad PID %q: want graceshim's pid (the unit's $MAINPID)", c.Args().First())
	}
	if c.Duration("timeout") <= 0 {
		return usageErrorf("--timeout must be positive")
	}
	ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
	defer cancel()
	r, err := supervisor.Control(ctx, pid, "reload")
	switch {
	case errors.Is(err, supervisor.ErrNoControl):
		return withCode(exitUsage, err)
	case err != nil:
		if r.Output != "" {
			fmt.Fprintln(c.App.ErrWriter, r.Output)
		}
		return withCode(exitReload, fmt.Errorf("reload: %w", err))
	}
	fmt.Fprintln(c.App.Writer, r.Message)
	return nil
}
