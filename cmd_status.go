package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/graceshim/graceshim/supervisor"
)

func init() { extraCommands = append(extraCommands, statusCommand()) }

// Exit codes of `graceshim status` (beside 0 and exitUsage), one for each
// reason it cannot answer, so that a script can tell them apart.
const (
	exitStatusNoProcess  = 10 // no process has that pid
	exitStatusNotShim    = 11 // the process is not a graceshim (no control socket)
	exitStatusDenied     = 12 // not root nor graceshim's user
	exitStatusNotRunning = 13 // the unit has no main process, or systemd cannot be asked
	exitStatusNoAnswer   = 14 // graceshim did not answer (ending, or hung)
)

// defaultStatusTimeout bounds the wait for graceshim's answer: counting
// the connections per listener takes 60 ms at 50,000 connections.
const defaultStatusTimeout = 10 * time.Second

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "show what a running graceshim is doing: its state, connections per listener, and during a stop the connections it waits for",
		UsageText: "graceshim status [--user] [--format text|json] UNIT|PID",
		Description: "Asks the graceshim running as PID, or as UNIT's main process (systemctl show -p MainPID;\n" +
			"--user asks the user manager, as systemctl --user does), over its control socket. It\n" +
			"prints the state (starting, serving, reloading, stopping, draining, ...) and since when,\n" +
			"the server's master pid, the connections per listener while it serves, and during a\n" +
			"drain the connections still open, oldest first: peer, state, how long open (at least:\n" +
			"graceshim first sees them when the drain begins), bytes sent and received and the\n" +
			"time since the last data (the kernel's tcp_info). Root or graceshim's own user only.\n" +
			"Exit status: 0 answered; 2 bad arguments; 10 no such process; 11 the process is not\n" +
			"a graceshim; 12 permission denied; 13 the unit is not running (or systemd cannot be\n" +
			"asked); 14 no answer.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "user", Usage: "UNIT is the user manager's (systemctl --user)"},
			&cli.StringFlag{Name: "format", Value: "text", Usage: "text, or json for scripts"},
			&cli.DurationFlag{Name: "timeout", Value: defaultStatusTimeout, Usage: "how long to wait for graceshim's answer"},
		},
		Action: statusAction,
	}
}

func statusAction(c *cli.Context) error {
	if c.NArg() != 1 {
		return usageErrorf("want one UNIT or PID: graceshim status nginx.service, or graceshim status 1234")
	}
	format := c.String("format")
	if format != "text" && format != "json" {
		return usageErrorf("bad --format %q: want text or json", format)
	}
	if c.Duration("timeout") <= 0 {
		return usageErrorf("--timeout must be positive")
	}
	arg := c.Args().First()
	pid, err := strconv.Atoi(arg)
	switch {
	case err == nil && pid <= 0:
		return usageErrorf("bad PID %d", pid)
	case err == nil && c.Bool("user"):
		return usageErrorf("--user goes with a UNIT, not a PID")
	case err != nil:
		if pid, err = unitMainPID(c.Context, arg, c.Bool("user"), c.Duration("timeout")); err != nil {
			return withCode(exitStatusNotRunning, err)
		}
	}
	st, err := askStatus(c.Context, pid, c.Duration("timeout"))
	if err != nil {
		return err
	}
	if format == "json" {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	printStatus(c.App.Writer, st, time.Now())
	return nil
}

// askStatus asks the graceshim running as pid for its status, telling
// apart why it cannot be asked.
func askStatus(ctx context.Context, pid int, timeout time.Duration) (*supervisor.Status, error) {
	switch err := syscall.Kill(pid, 0); {
	case errors.Is(err, syscall.ESRCH):
		return nil, withCode(exitStatusNoProcess, fmt.Errorf("no process %d", pid))
	case errors.Is(err, syscall.EPERM):
		return nil, withCode(exitStatusDenied, fmt.Errorf("permission denied: process %d is another user's; run as root or as its user", pid))
	}
	if _, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); errors.Is(err, os.ErrPermission) {
		return nil, withCode(exitStatusDenied, fmt.Errorf("permission denied: cannot look at process %d; run as root or as its user", pid))
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	r, err := supervisor.Control(ctx, pid, "status")
	switch {
	case errors.Is(err, supervisor.ErrNoControl):
		if errors.Is(err, syscall.ESRCH) || !processExists(pid) {
			return nil, withCode(exitStatusNoProcess, fmt.Errorf("no process %d", pid))
		}
		return nil, withCode(exitStatusNotShim, err)
	case errors.Is(err, supervisor.ErrRefused) && strings.HasPrefix(r.Message, "permission denied"):
		return nil, withCode(exitStatusDenied, fmt.Errorf("graceshim pid %d: %s", pid, r.Message))
	case errors.Is(err, supervisor.ErrRefused) && strings.HasPrefix(r.Message, "unknown request"):
		return nil, withCode(exitStatusNoAnswer, fmt.Errorf("graceshim pid %d is older and has no status: %s", pid, r.Message))
	case err != nil:
		return nil, withCode(exitStatusNoAnswer, err)
	case r.Status == nil:
		return nil, withCode(exitStatusNoAnswer, fmt.Errorf("graceshim pid %d answered without a status: %s", pid, r.Message))
	}
	return r.Status, nil
}

func processExists(pid int) bool {
	return !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// printStatus writes st for people.
func printStatus(w io.Writer, st *supervisor.Status, now time.Time) {
	since := ""
	if !st.Since.IsZero() {
		since = fmt.Sprintf(" since %s (%s ago)", st.Since.Local().Format("2006-01-02 15:04:05"), supervisor.ShortDuration(now.Sub(st.Since)))
	}
	fmt.Fprintf(w, "%s (pid %d) under graceshim (pid %d): %s%s\n", st.Command, st.PID, st.Shim, st.State, since)
	if st.ListenersError != "" {
		fmt.Fprintf(w, "connections per listener: not counted: %s\n", st.ListenersError)
	}
	if len(st.Listeners) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "LISTENER\tCONNECTIONS")
		for _, l := range st.Listeners {
			fmt.Fprintf(tw, "%s\t%d\n", l.Listener, l.Connections)
		}
		tw.Flush()
	}
	d := st.Drain
	if d == nil {
		return
	}
	switch {
	case !d.Counts:
		fmt.Fprintf(w, "drain: connections not counted (yet)\n")
	default:
		fmt.Fprintf(w, "drain: %d %s left, %d closed since the graceful signal\n", d.Left, plural(d.Left, "connection", "connections"), d.Closed)
	}
	if d.Escalated != "" {
		fmt.Fprintf(w, "escalated: %s\n", d.Escalated)
	}
	if len(d.Connections) > 0 {
		fmt.Fprintf(w, "oldest first, as of %s ago:\n", supervisor.ShortDuration(now.Sub(d.DetailsAt)))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "PEER\tLOCAL\tSTATE\tOPEN\tSENT\tRECEIVED\tLAST SENT\tLAST RECEIVED")
		for _, c := range d.Connections {
			fmt.Fprintf(tw, "%s\t%s\t%s\t>=%s\t%s\t%s\t%s\t%s\n", c.Peer, c.Local, c.State,
				supervisor.ShortDuration(time.Duration(c.OpenSeconds*float64(time.Second))),
				bytesOrDash(c.Sent), bytesOrDash(c.Received), agoOrDash(c.LastSentSeconds), agoOrDash(c.LastRecvSeconds))
		}
		tw.Flush()
	}
	if d.More > 0 {
		fmt.Fprintf(w, "and %d more\n", d.More)
	}
	if d.Unix > 0 {
		fmt.Fprintf(w, "%d unix %s", d.Unix, plural(d.Unix, "connection", "connections"))
		if len(d.UnixPaths) > 0 {
			fmt.Fprintf(w, " on %s", strings.Join(d.UnixPaths, ", "))
		}
		fmt.Fprintln(w)
	}
}

func agoOrDash(s *float64) string {
	if s == nil {
		return "-"
	}
	return supervisor.ShortDuration(time.Duration(*s*float64(time.Second))) + " ago"
}

func bytesOrDash(n *uint64) string {
	if n == nil {
		return "-"
	}
	return supervisor.SizeText(*n)
}
