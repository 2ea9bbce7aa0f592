package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/graceshim/graceshim/supervisor/proctab"
)

// ErrUpgrade marks an upgrade that did not happen; the running service was
// left as it was, or rolled back to it.
var ErrUpgrade = errors.New("upgrade failed")

// UpgradeRequest asks a running graceshim for a binary upgrade of its
// master.
type UpgradeRequest struct {
	// PID is graceshim's pid (the unit's MainPID).
	PID int
	// Signal is what graceshim takes as the upgrade request: the preset's
	// upgrade signal (USR2 for nginx and unicorn).
	Signal syscall.Signal
	// Test, when set, is run first (e.g. nginx -t -c FILE, with the new
	// binary); the upgrade is not asked for when it fails.
	Test []string
	// Timeout bounds the whole upgrade.
	Timeout time.Duration
	// Status, when set, returns graceshim's current STATUS= text (from
	// systemd), so that an upgrade graceshim gave up on is reported at
	// once rather than at the timeout.
	Status func() string
	Log    *Logger
}

// RequestUpgrade checks that the new binary is there and passes its
// config test, asks graceshim for the upgrade, and waits until graceshim's
// child is a new master (the old one gone), or reports why not.
func RequestUpgrade(ctx context.Context, r UpgradeRequest) error {
	table, err := proctab.Read()
	if err != nil {
		return err
	}
	kids := proctab.Children(table, r.PID)
	if len(kids) != 1 {
		return fmt.Errorf("%w: pid %d has %d children, want one master (is it graceshim?)", ErrUpgrade, r.PID, len(kids))
	}
	old := kids[0]
	bin, err := upgradeBinary(r.PID, old)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUpgrade, err)
	}
	if st, err := os.Stat(bin); err != nil || !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%w: new binary %s is missing or not executable; the running service is untouched", ErrUpgrade, bin)
	}
	if len(r.Test) > 0 {
		out, err := exec.CommandContext(ctx, r.Test[0], r.Test[1:]...).CombinedOutput()
		if err != nil {
			last := strings.TrimSpace(string(out))
			if i := strings.LastIndexByte(last, '\n'); i >= 0 {
				last = last[i+1:]
			}
			return fmt.Errorf("%w: config test %q failed (%v): %s; the running service is untouched", ErrUpgrade, strings.Join(r.Test, " "), err, last)
		}
	}
	r.Log.Infof("asking graceshim pid %d to upgrade master pid %d (%s)", r.PID, old, bin)
	if err := syscall.Kill(r.PID, r.Signal); err != nil {
		return fmt.Errorf("%w: cannot signal graceshim pid %d: %v", ErrUpgrade, r.PID, err)
	}
	deadline := time.Now().Add(r.Timeout)
	var seen int      // a new master seen under the old one
	underWay := false // graceshim's status said it was upgrading
	for {
		if err := syscall.Kill(r.PID, 0); err != nil {
			return fmt.Errorf("%w: graceshim pid %d is gone: %v", ErrUpgrade, r.PID, err)
		}
		table, err := proctab.Read()
		if err == nil {
			kids := proctab.Children(table, r.PID)
			oldAlive := false
			for _, k := range kids {
				if k == old {
					oldAlive = true
				} else if len(kids) == 1 {
					r.Log.Infof("upgraded: master pid %d replaced %d", k, old)
					return nil
				}
			}
			if oldAlive {
				next := 0
				for _, k := range proctab.Children(table, old) {
					if len(proctab.Children(table, k)) > 0 {
						next = k
					}
				}
				switch {
				case next != 0 && seen == 0:
					seen = next
					r.Log.Infof("new master pid %d is up; the old master drains", next)
				case seen != 0 && next == 0 && !slices.Contains(kids, seen):
					return fmt.Errorf("%w: the new master pid %d went away; graceshim rolled back to master pid %d (see its log)", ErrUpgrade, seen, old)
				}
			}
		}
		if r.Status != nil {
			// A failure counts only after this upgrade was seen under way:
			// the status may still tell of an earlier one.
			switch st := r.Status(); {
			case strings.HasPrefix(st, "upgrading"):
				underWay = true
			case underWay && strings.Contains(st, "upgrade failed"):
				return fmt.Errorf("%w: graceshim says: %s", ErrUpgrade, st)
			}
		}
		if time.Now().After(deadline) {
			if seen != 0 {
				return fmt.Errorf("%w: the old master pid %d still drains after %s; the new master pid %d serves", ErrUpgrade, old, r.Timeout, seen)
			}
			return fmt.Errorf("%w: no new master within %s (nginx needs 'daemon on' for a binary upgrade, and ignores it on inherited sockets); see graceshim's log", ErrUpgrade, r.Timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// upgradeBinary finds the file the master re-executes on an upgrade: the
// command graceshim runs (after "--" in its command line), which is where
// a package upgrade puts the new binary. Without "--", the master's own
// executable, whose link reads "PATH (deleted)" once a new file replaced it.
func upgradeBinary(shim, master int) (string, error) {
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", shim)); err == nil {
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		for i, a := range args {
			if a == "--" && i+1 < len(args) {
				if !strings.Contains(args[i+1], "/") {
					return exec.LookPath(args[i+1])
				}
				return args[i+1], nil
			}
		}
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", master))
	if err != nil {
		return "", fmt.Errorf("cannot find the binary of master pid %d: %v", master, err)
	}
	return strings.TrimSuffix(exe, " (deleted)"), nil
}
