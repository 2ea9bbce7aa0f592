package e2e

// End-to-end tests of the binary upgrade: graceshim runs a copy of real
// nginx ('daemon on', as an upgrade needs) as a unit's main process under
// the real systemd user manager; the binary is swapped on disk and
// 'graceshim upgrade' drives the USR2/WINCH/QUIT dance while downloads and
// requests run.

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// load keeps requesting /small on fresh connections until stopped and
// counts what did not come back 200.
type load struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	firstErr   string
	stop       chan struct{}
	done       sync.WaitGroup
}

func startLoad(site *nginxSite, workers int) *load {
	l := &load{stop: make(chan struct{})}
	for i := 0; i < workers; i++ {
		l.done.Add(1)
		go func() {
			defer l.done.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				code, err := site.Get("/small")
				if err == nil && code == 200 {
					l.ok.Add(1)
					continue
				}
				l.failed.Add(1)
				l.mu.Lock()
				if l.firstErr == "" {
					l.firstErr = fmt.Sprintf("code %d, %v", code, err)
				}
				l.mu.Unlock()
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	return l
}

func (l *load) finish() (ok, failed int64, first string) {
	close(l.stop)
	l.done.Wait()
	return l.ok.Load(), l.failed.Load(), l.firstErr
}

// copyExecutable puts a copy of src at dst the way a package upgrade
// does: a new file renamed over the old one, so a running binary is
// replaced, not overwritten.
func copyExecutable(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	tmp := dst + ".new"
	if err := os.WriteFile(tmp, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}

func upgradeCmd(u *userSystemd, bin string, args ...string) (string, int) {
	cmd := exec.Command(bin, append([]string{"upgrade"}, args...)...)
	cmd.Env = u.env
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		return err.Error(), -1
	}
	return string(out), 0
}

func TestE2EUpgrade(t *testing.T) {
	needRoot(t)
	bin := needGraceshim(t)
	nginx := needCmd(t, "nginx")
	u := userManager(t)
	site := newNginxSite(t, nginxOpts{Daemon: true, Rate: "200k", FileSize: 6 * 200 * 1024})
	ngx := filepath.Join(site.Dir, "sbin", "nginx")
	if err := os.MkdirAll(filepath.Dir(ngx), 0o755); err != nil {
		t.Fatal(err)
	}
	copyExecutable(t, nginx, ngx)

	name := unitName("upgrade")
	u.InstallUnit(t, name, fmt.Sprintf(`[Unit]
Description=graceshim end-to-end test: binary upgrade of nginx on port %d

[Service]
Type=notify
NotifyAccess=main
KillMode=mixed
TimeoutStopSec=60
ExecStart=%s --ready-timeout=3s -- %s -c %s
`, site.Port, bin, ngx, site.Conf))
	u.Start(t, name)
	shim := u.MainPID(t, name)
	before, err := site.MasterPID()
	if err != nil {
		t.Fatal(err)
	}
	testCmd := []string{"--", ngx, "-t", "-q", "-c", site.Conf}

	t.Run("swap", func(t *testing.T) {
		downloads := startDownloads(t, site.URL, 8)
		l := startLoad(site, 4)
		copyExecutable(t, nginx, ngx)
		out, code := upgradeCmd(u, bin, append([]string{"--unit", name, "--user", "--timeout", "60s"}, testCmd...)...)
		if code != 0 {
			t.Fatalf("graceshim upgrade exited %d:\n%s\nunit log:\n%s", code, out, u.UnitLog(t, name))
		}
		downloads.RequireComplete(t, site.FileSize, site.SHA256)
		ok, failed, first := l.finish()
		t.Logf("figures: %d/8 downloads intact; %d requests during the upgrade, %d failed", downloads.Completed(site.FileSize, site.SHA256), ok+failed, failed)
		if failed != 0 {
			t.Errorf("%d of %d requests failed during the upgrade (first: %s)", failed, ok+failed, first)
		}
		if got := u.MainPID(t, name); got != shim {
			t.Errorf("MainPID %d after the upgrade, want graceshim's %d throughout", got, shim)
		}
		after, err := site.MasterPID()
		if err != nil || after == before {
			t.Fatalf("nginx master pid %d after the upgrade (%v), want a new one (old %d)", after, err, before)
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", before)); err == nil {
			t.Errorf("old master %d still there after the upgrade", before)
		}
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", after))
		if exe != ngx {
			t.Errorf("new master runs %q, want the new %s", exe, ngx)
		}
		// graceshim logs the upgrade once its loop has followed the new
		// master, which may come a moment after the upgrade command saw
		// the old one reaped and returned.
		if !waitFor(30*time.Second, 20*time.Millisecond, func() bool { return strings.Contains(u.UnitLog(t, name), "upgrade of nginx done") }) {
			t.Errorf("unit log does not report the upgrade:\n%s", u.UnitLog(t, name))
		}
		before = after
	})

	// Each failure leaves the running service as it was.
	untouched := func(t *testing.T) {
		t.Helper()
		if got, _ := site.MasterPID(); got != before {
			t.Errorf("master pid %d, want the untouched %d", got, before)
		}
		if code, err := site.Get("/small"); code != 200 {
			t.Errorf("GET /small after a failed upgrade: %d, %v", code, err)
		}
		if got := u.MainPID(t, name); got != shim {
			t.Errorf("MainPID %d, want %d", got, shim)
		}
	}
	t.Run("missing-binary", func(t *testing.T) {
		if err := os.Rename(ngx, ngx+".away"); err != nil {
			t.Fatal(err)
		}
		defer os.Rename(ngx+".away", ngx)
		out, code := upgradeCmd(u, bin, "--pid", fmt.Sprint(shim), "--timeout", "8s")
		if code != 5 || !strings.Contains(out, "missing") {
			t.Errorf("exit %d, %q; want 5 and a message about the missing binary", code, out)
		}
		untouched(t)
	})
	t.Run("config-test-fails", func(t *testing.T) {
		out, code := upgradeCmd(u, bin, "--pid", fmt.Sprint(shim), "--timeout", "8s", "--", ngx, "-t", "-c", filepath.Join(site.Dir, "no-such.conf"))
		if code != 5 || !strings.Contains(out, "config test") {
			t.Errorf("exit %d, %q; want 5 and a message about the config test", code, out)
		}
		untouched(t)
	})
	t.Run("broken-binary", func(t *testing.T) {
		// A new binary that cannot run: nginx's exec of it fails, no new
		// master comes, graceshim gives up after its ready timeout.
		broken := filepath.Join(site.Dir, "broken")
		os.WriteFile(broken, []byte("#!/bin/sh\nexit 1\n"), 0o755)
		copyExecutable(t, broken, ngx)
		defer copyExecutable(t, nginx, ngx)
		began := time.Now()
		out, code := upgradeCmd(u, bin, "--unit", name, "--user", "--timeout", "60s")
		if code != 5 || !strings.Contains(out, "upgrade failed") {
			t.Errorf("exit %d, %q; want 5 and graceshim's word that the upgrade failed", code, out)
		}
		t.Logf("figures: the failed upgrade was reported %s after it was asked for (graceshim's ready timeout: 3s)", time.Since(began).Round(100*time.Millisecond))
		untouched(t)
		if log := u.UnitLog(t, name); !strings.Contains(log, "upgrade of nginx failed") {
			t.Errorf("unit log does not say the upgrade failed:\n%s", log)
		}
	})

	u.Stop(t, name)
	if r := u.Show(t, name, "Result"); r != "success" {
		t.Errorf("Result=%s after the stop, want success\n%s", r, u.UnitLog(t, name))
	}
}
