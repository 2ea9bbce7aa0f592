package e2e

// End-to-end test of the health check and the systemd watchdog: a hung
// nginx (every process stopped with SIGSTOP) fails graceshim's health
// check, graceshim stops feeding the watchdog, and systemd restarts the
// unit on its own.

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestE2EWatchdogHungServer(t *testing.T) {
	t.Run("health-check", func(t *testing.T) { watchdogHung(t, true) })
	// The control: without a health check graceshim itself is alive and
	// feeds the watchdog, so a hung nginx goes unnoticed.
	t.Run("no-health-check", func(t *testing.T) { watchdogHung(t, false) })
}

func watchdogHung(t *testing.T, check bool) {
	needRoot(t)
	bin := needGraceshim(t)
	u := userManager(t)
	site := newNginxSite(t, nginxOpts{})
	name := unitName(fmt.Sprintf("watchdog-%v", check))
	flag := fmt.Sprintf("--health-check=http://127.0.0.1:%d/small ", site.Port)
	if !check {
		flag = ""
	}
	u.InstallUnit(t, name, fmt.Sprintf(`[Unit]
Description=graceshim end-to-end test: watchdog fed by the health check (nginx on port %d)

[Service]
Type=notify
NotifyAccess=main
KillMode=mixed
WatchdogSec=2
TimeoutStopSec=10
ExecStart=%s %s--kill-timeout=1s -- /usr/sbin/nginx -c %s
`, site.Port, bin, flag, site.Conf))
	u.Start(t, name)
	if check && !strings.Contains(u.UnitLog(t, name), "health check http://") {
		t.Fatalf("unit active before the health check passed:\n%s", u.UnitLog(t, name))
	}
	// Healthy for a while: the watchdog is fed and nothing happens.
	time.Sleep(3 * time.Second)
	if st := u.Show(t, name, "ActiveState"); st != "active" {
		t.Fatalf("ActiveState %s while healthy, want active\n%s", st, u.UnitLog(t, name))
	}
	// Hang nginx: graceshim itself still runs, but the probe times out.
	master, err := site.MasterPID()
	if err != nil {
		t.Fatal(err)
	}
	for _, pid := range append([]int{master}, childPIDs(master)...) {
		syscall.Kill(pid, syscall.SIGSTOP)
	}
	hung := time.Now()
	if !check {
		time.Sleep(6 * time.Second)
		if r, st := u.Show(t, name, "Result"), u.Show(t, name, "ActiveState"); r != "success" || st != "active" {
			t.Errorf("without a health check: Result=%s ActiveState=%s, want the hang unnoticed (success, active)", r, st)
		}
		for _, pid := range append([]int{master}, childPIDs(master)...) {
			syscall.Kill(pid, syscall.SIGCONT)
		}
		return
	}
	if !waitFor(20*time.Second, 100*time.Millisecond, func() bool {
		return u.Show(t, name, "Result") == "watchdog"
	}) {
		t.Fatalf("systemd did not act on the starved watchdog; Result=%s\n%s", u.Show(t, name, "Result"), u.UnitLog(t, name))
	}
	t.Logf("figures: the watchdog fired %s after nginx hung (WatchdogSec=2, probe timeout 2s)", time.Since(hung).Round(100*time.Millisecond))
	if !strings.Contains(u.UnitLog(t, name), "fails") {
		t.Errorf("graceshim did not log the failing health check:\n%s", u.UnitLog(t, name))
	}
}
