package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestE2EDaemonStarterStopWhileStarting: a unit whose command starts a
// daemonizing nginx and then runs on until the daemon is up, as
// pg_ctlcluster does for postgres or an init-script-like wrapper does, is
// stopped while that starter still runs. The stop's graceful signal must
// reach nginx's master, named by the pid file, and never the starter (a
// shell dies of QUIT): the downloads in flight complete, nginx exits
// while the starter still runs, the starter ends on its own, and the
// unit's Result is success.
func TestE2EDaemonStarterStopWhileStarting(t *testing.T) {
	bin := needGraceshim(t)
	nginx := needCmd(t, "nginx")
	u := userManager(t)
	site := newNginxSite(t, nginxOpts{Daemon: true, Rate: "200k", FileSize: 2 * 200 * 1024})
	fifo := filepath.Join(site.Dir, "starter.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := filepath.Join(site.Dir, "starter.done")
	script := filepath.Join(site.Dir, "start.sh")
	// The starter waits on a FIFO the test controls, so that the stop
	// surely comes while it runs.
	body := fmt.Sprintf(`#!/bin/sh
# Start nginx (it daemonizes: nginx -c exits once its master runs), then
# stay until told, as pg_ctlcluster stays until postgres takes connections.
%s -c %s || exit 1
read x < %s
echo done > %s
exit 0
`, nginx, site.Conf, fifo, done)
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	unit := mustUnit(t, "--graceshim", bin, "--systemd-version=252", "--preset=nginx", "--pidfile="+site.PIDFile, "--", "/bin/sh", script)
	// A failed stop must show as Result, not as a restart.
	unit = strings.Replace(unit, "Restart=on-failure", "Restart=no", 1)
	name := unitName("daemon-starter")
	u.InstallUnit(t, name, unit)
	u.Start(t, name)
	// Freed however the test ends: a starter still reading gets its
	// end of file, and a writer below still blocked in its open (the
	// starter died) gets a reader (fifo(7)).
	t.Cleanup(func() {
		if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
		if f, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})
	master := 0
	if !waitFor(30*time.Second, 20*time.Millisecond, func() bool {
		pid, err := site.MasterPID()
		if err != nil {
			return false
		}
		master = pid
		_, err = os.Stat(fmt.Sprintf("/proc/%d", pid))
		return err == nil
	}) {
		t.Fatalf("the pid file %s names no live nginx master\n%s", site.PIDFile, u.UnitLog(t, name))
	}
	dl := startDownloads(t, site.URL, 4)
	stopped := make(chan error, 1)
	go func() {
		_, err := u.stop(name)
		stopped <- err
	}()
	// nginx drains and exits while the starter still waits.
	dl.RequireComplete(t, site.FileSize, site.SHA256)
	if !waitFor(30*time.Second, 20*time.Millisecond, func() bool {
		_, err := os.Stat(fmt.Sprintf("/proc/%d", master))
		return err != nil
	}) {
		t.Fatalf("nginx master %d still runs 30s after the stop\n%s", master, u.UnitLog(t, name))
	}
	// Let the starter exit. Opening the FIFO blocks until the starter
	// reads it, which it never does when the stop's QUIT killed it.
	released := make(chan error, 1)
	go func() {
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err == nil {
			_, err = f.Write([]byte("x\n"))
			f.Close()
		}
		released <- err
	}()
	select {
	case err := <-released:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the starter does not read its FIFO: it did not survive the stop\n%s", u.UnitLog(t, name))
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("systemctl stop: %v\n%s", err, u.UnitLog(t, name))
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("systemctl stop did not return\n%s", u.UnitLog(t, name))
	}
	if _, err := os.Stat(done); err != nil {
		t.Errorf("the starter did not end on its own: %v\n%s", err, u.UnitLog(t, name))
	}
	if r := u.Show(t, name, "Result"); r != "success" {
		t.Errorf("Result=%s, want success\n%s", r, u.UnitLog(t, name))
	}
	if log := u.UnitLog(t, name); !strings.Contains(log, fmt.Sprintf("sending QUIT to pid %d", master)) {
		t.Errorf("the log does not say QUIT went to nginx's master %d:\n%s", master, log)
	}
}
