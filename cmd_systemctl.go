package main

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// systemctlTimeout bounds a question to the service manager where the
// command has no --timeout of its own: a manager whose bus is stuck must
// not hang graceshim's commands.
const systemctlTimeout = 10 * time.Second

// unitShow asks the service manager (the user manager when user is set)
// for properties of unit, as `systemctl show -p` does. A manager that does
// not answer within timeout is one that cannot be asked.
func unitShow(ctx context.Context, unit string, user bool, timeout time.Duration, props ...string) (map[string]string, error) {
	args := []string{"show"}
	for _, p := range props {
		args = append(args, "-p", p)
	}
	args = append(args, unit)
	manager := "systemctl"
	if user {
		args = append([]string{"--user"}, args...)
		manager = "systemctl --user"
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "systemctl", args...).CombinedOutput()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("cannot ask %s about %s: no answer within %s", manager, unit, timeout)
	}
	if err != nil {
		// No manager to ask (no systemd, no user manager for --user).
		// systemctl's message may take two lines ("System has not been
		// booted with systemd ...", "Failed to connect to bus ..."): one.
		msg := strings.Join(strings.Fields(strings.ReplaceAll(strings.TrimSpace(string(out)), "\n", "; ")), " ")
		return nil, fmt.Errorf("cannot ask %s about %s: %w: %s", manager, unit, err, msg)
	}
	values := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			values[k] = v
		}
	}
	return values, nil
}

// unitMainPID finds the main pid of unit, or says why there is none.
func unitMainPID(ctx context.Context, unit string, user bool, timeout time.Duration) (int, error) {
	props, err := unitShow(ctx, unit, user, timeout, "MainPID", "ActiveState", "LoadState")
	if err != nil {
		return 0, err
	}
	if props["LoadState"] == "not-found" {
		manager := "systemctl"
		if user {
			manager = "systemctl --user"
		}
		return 0, fmt.Errorf("no unit %s known to %s", unit, manager)
	}
	pid, _ := strconv.Atoi(props["MainPID"])
	if pid <= 0 {
		return 0, fmt.Errorf("unit %s is not running (%s, no main process)", unit, props["ActiveState"])
	}
	return pid, nil
}
