package e2e

// End-to-end test of a second daemon: real HAProxy, whose graceful stop
// is USR1 (soft stop) and whose TERM is a hard stop, run as a unit's main
// process under graceshim with the preset picked from its name, in front
// of real nginx serving slow downloads.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestE2EHAProxyUnderGraceshim(t *testing.T) {
	t.Run("graceshim", func(t *testing.T) { haproxyStop(t, true) })
	// The control: systemd's TERM straight to HAProxy is its hard stop.
	t.Run("plain-unit", func(t *testing.T) { haproxyStop(t, false) })
}

func haproxyStop(t *testing.T, shim bool) {
	needRoot(t)
	bin := needGraceshim(t)
	haproxy := needCmd(t, "haproxy")
	u := userManager(t)

	site := newNginxSite(t, nginxOpts{Rate: "200k", FileSize: 6 * 200 * 1024})
	nginx := exec.Command("/usr/sbin/nginx", "-c", site.Conf)
	if err := nginx.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		nginx.Process.Signal(syscall.SIGTERM)
		nginx.Wait()
	})

	port := freePort(t)
	conf := filepath.Join(t.TempDir(), "haproxy.cfg")
	os.WriteFile(conf, []byte(fmt.Sprintf(`defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s

frontend fe
    bind 127.0.0.1:%d
    default_backend be

backend be
    server nginx 127.0.0.1:%d
`, port, site.Port)), 0o644)
	if out, err := exec.Command(haproxy, "-c", "-q", "-f", conf).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c: %v\n%s", err, out)
	}

	name := unitName(fmt.Sprintf("haproxy-%v", shim))
	unit := fmt.Sprintf(`[Unit]
Description=graceshim end-to-end test: haproxy on port %d

[Service]
Type=notify
NotifyAccess=main
KillMode=mixed
TimeoutStopSec=30
ExecStart=%s -- %s -db -f %s
`, port, bin, haproxy, conf)
	if !shim {
		unit = fmt.Sprintf(`[Unit]
Description=graceshim end-to-end test: plain haproxy on port %d

[Service]
TimeoutStopSec=30
ExecStart=%s -db -f %s
`, port, haproxy, conf)
	}
	u.InstallUnit(t, name, unit)
	u.Start(t, name)
	client := &httpClient{timeout: 2 * time.Second}
	if !waitFor(20*time.Second, 20*time.Millisecond, func() bool {
		code, _ := client.status(fmt.Sprintf("127.0.0.1:%d", port), "/small")
		return code == 200
	}) {
		t.Fatalf("haproxy did not pass requests on:\n%s", u.UnitLog(t, name))
	}

	const n = 10
	d := startDownloads(t, fmt.Sprintf("http://127.0.0.1:%d/big", port), n)
	time.Sleep(time.Second)
	took := u.Stop(t, name)
	d.Wait(t)
	done := d.Completed(site.FileSize, site.SHA256)
	t.Logf("figures: %d/%d downloads through haproxy complete; systemctl stop took %s", done, n, took.Round(time.Millisecond))
	if !shim {
		if done > n/4 {
			t.Errorf("%d/%d downloads survived haproxy's hard stop; the scenario no longer tells a soft stop from a hard one", done, n)
		}
		return
	}
	d.RequireComplete(t, site.FileSize, site.SHA256)
	if r := u.Show(t, name, "Result"); r != "success" {
		t.Errorf("Result=%s, want success\n%s", r, u.UnitLog(t, name))
	}
	if log := u.UnitLog(t, name); !strings.Contains(log, "preset haproxy, TERM becomes USR1") {
		t.Errorf("graceshim did not pick the haproxy preset:\n%s", log)
	}
}
