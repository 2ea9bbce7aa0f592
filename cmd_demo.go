package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/graceshim/graceshim/supervisor/demo"
)

func init() {
	extraCommands = append(extraCommands, demoCommand(), demoServerCommand())
}

// exitInterrupted is the demo's exit code after a Ctrl-C (128+SIGINT).
const exitInterrupted = 130

func demoCommand() *cli.Command {
	return &cli.Command{
		Name:      "demo",
		Usage:     "stop a built-in slow server with SIGTERM while downloads are in flight, and watch graceshim drain it",
		UsageText: "graceshim demo [--compare] [--port N]",
		Description: "Starts a small slow HTTP server on 127.0.0.1 under graceshim (graceshim itself, re-executed),\n" +
			"starts 10 downloads, sends graceshim SIGTERM and shows the drain as systemd would see it.\n" +
			"The server stops like nginx: QUIT finishes what is in flight, TERM cuts it. Needs nothing installed.\n\n" +
			"exit status: 0 every download completed (with --compare: the demo ran), 1 a download was lost,\n" +
			"125 the demo could not run, 130 interrupted (Ctrl-C; the server is stopped, nothing is left running).",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "compare", Usage: "pass SIGTERM on as it is, as a unit without graceshim does, and show what is lost"},
			&cli.IntFlag{Name: "port", Value: demo.DefaultPort, Usage: "port on 127.0.0.1 tried first; the next free one is used when it is taken"},
		},
		Action: demoAction,
	}
}

func demoAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageErrorf("demo takes no arguments, got %q", c.Args().First())
	}
	port := c.Int("port")
	if port < 1 || port > 65535 {
		return usageErrorf("--port must be in 1..65535, got %d", port)
	}
	exe, err := os.Executable()
	if err != nil {
		return withCode(exitShim, fmt.Errorf("cannot find graceshim's own binary to run the demo server: %w", err))
	}
	res, err := demo.Run(c.Context, demo.Options{
		Server:   []string{exe, "demo-server"},
		Port:     port,
		Compare:  c.Bool("compare"),
		Out:      os.Stdout,
		Progress: demo.IsTerminal(os.Stdout),
	})
	switch {
	case errors.Is(err, demo.ErrInterrupted):
		return withCode(exitInterrupted, err)
	case err != nil:
		return withCode(exitShim, fmt.Errorf("demo: %w", err))
	case !c.Bool("compare") && res.Completed < res.Downloads:
		return withCode(exitFindings, fmt.Errorf("demo: %d of %d downloads lost", res.Downloads-res.Completed, res.Downloads))
	}
	return nil
}

// demoServerCommand is the demo's server, run by graceshim demo as its
// child; hidden from help and completion.
func demoServerCommand() *cli.Command {
	return &cli.Command{
		Name:   "demo-server",
		Usage:  "the slow HTTP server graceshim demo runs (internal)",
		Hidden: true,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:8080", Usage: "address to listen on"},
			&cli.IntFlag{Name: "parent", Usage: "exit when this pid is not the parent, and die with it"},
		},
		Action: func(c *cli.Context) error {
			return withCode(exitShim, demo.Serve(demo.ServerOptions{Listen: c.String("listen"), Parent: c.Int("parent")}))
		},
	}
}
