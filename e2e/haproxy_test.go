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

// TestE2EHAProxyStopRightAfterStartOrReload: HAProxy in master-worker
// mode with sd_notify (-Ws, as Debian's haproxy.service runs it) starts
// and reloads by executing its master again, and discards a USR1 (its
// soft stop) sent before the new image has installed its handlers
// (supervisor/reexec.go). A TERM to graceshim as soon as the first
// request was served (the worker serves before the master has executed
// itself into wait mode and said READY=1), and one as soon as graceshim
// has sent the reload's USR2, must each reach HAProxy's soft stop: the
// stop ends without escalation. Before graceshim held its signals for
// that window, such a stop hung until the drain timeout (measured
// outside systemd: 18 of 20 stops right after start, 13 of 30 during a
// reload). systemctl stop itself comes later than that: systemctl start
// waits for READY=1, and graceshim answers the reload once it is
// confirmed; so the TERM is sent as kill does, to the main pid.
func TestE2EHAProxyStopRightAfterStartOrReload(t *testing.T) {
	needRoot(t)
	bin := needGraceshim(t)
	haproxy := needCmd(t, "haproxy")
	u := userManager(t)

	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	conf := writeHAProxyOKConf(t, addr)
	if out, err := exec.Command(haproxy, "-c", "-q", "-f", conf).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c: %v\n%s", err, out)
	}
	name := unitName("haproxy-reexec")
	// --drain-timeout bounds a lost soft stop: the stop then escalates
	// to TERM and says so, rather than waiting for TimeoutStopSec.
	u.InstallUnit(t, name, fmt.Sprintf(`[Unit]
Description=graceshim end-to-end test: haproxy -Ws stopped right after its start or during its reload

[Service]
Type=notify
NotifyAccess=main
KillMode=mixed
TimeoutStopSec=30
ExecStart=%s --drain-timeout=5s -- %s -Ws -f %s
ExecReload=%s reload $MAINPID
`, bin, haproxy, conf, bin))
	client := &httpClient{timeout: 2 * time.Second}
	serves := func() bool {
		code, _ := client.status(addr, "/")
		return code == 200
	}
	stops := 0
	// termAndWait sends TERM to graceshim, waits for the unit to go down
	// and checks the stop's summary.
	termAndWait := func(pid int, when string, ready bool) {
		t.Helper()
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
			t.Fatalf("kill -TERM %d: %v", pid, err)
		}
		if !waitFor(30*time.Second, 10*time.Millisecond, func() bool {
			s := u.Show(t, name, "ActiveState")
			return s == "inactive" || s == "failed"
		}) {
			t.Fatalf("%s is still %s 30s after TERM:\n%s", name, u.Show(t, name, "ActiveState"), u.UnitLog(t, name))
		}
		stops++
		log := u.UnitLog(t, name)
		summaries := strings.Split(log, "stop took ")
		if len(summaries) != stops+1 {
			t.Fatalf("stop %d (%s): %d stop summaries in the log, want %d:\n%s", stops, when, len(summaries)-1, stops, log)
		}
		last, _, _ := strings.Cut(summaries[len(summaries)-1], "\n")
		if !strings.Contains(last, "(no escalation)") {
			t.Errorf("stop %d, TERM %s: %q, want a soft stop without escalation (USR1 lost while the master executed itself again?)\n%s", stops, when, last, log)
		}
		// A Type=notify service whose main process exits before READY=1
		// ends with Result=protocol (systemd.service(5)): only a stop of
		// a ready service is judged by its Result.
		if r := u.Show(t, name, "Result"); ready && r != "success" {
			t.Errorf("stop %d, TERM %s: Result=%s, want success", stops, when, r)
		}
	}
	const rounds = 4
	for i := 0; i < rounds; i++ {
		if out, err := u.systemctl("start", "--no-block", name); err != nil {
			t.Fatalf("systemctl start --no-block: %v\n%s", err, out)
		}
		if !waitFor(20*time.Second, time.Millisecond, serves) {
			t.Fatalf("haproxy does not serve on %s:\n%s", addr, u.UnitLog(t, name))
		}
		termAndWait(u.MainPID(t, name), "once the first request was served", false)

		u.Start(t, name)
		pid := u.MainPID(t, name)
		logged := len(u.UnitLog(t, name))
		reloaded := make(chan error, 1)
		go func() {
			_, err := u.systemctl("reload", name)
			reloaded <- err // it may fail: the stop may end the reload
		}()
		if !waitFor(20*time.Second, time.Millisecond, func() bool {
			return strings.Contains(u.UnitLog(t, name)[logged:], "with USR2\n")
		}) {
			t.Fatalf("graceshim did not send the reload's USR2:\n%s", u.UnitLog(t, name))
		}
		termAndWait(pid, "once the reload's USR2 was sent", true)
		select {
		case <-reloaded:
		case <-time.After(30 * time.Second):
			t.Fatal("systemctl reload did not return")
		}
	}
}

// TestE2EHAProxyRawReloadRightAfterStart: with Debian's own
// ExecReload=/bin/kill -USR2 $MAINPID, a reload asked for as soon as
// systemctl start returns (HAProxy's READY=1, said before its master
// takes USR1 again: see supervisor/reexec.go) reaches HAProxy and is
// followed to its end. graceshim once held that USR2 while it waited for
// the starting master to take its soft stop, then dropped it: HAProxy
// never reloaded and graceshim reported the reload failed 10 s later
// (measured with haproxy 2.6.12: 3 of 3).
func TestE2EHAProxyRawReloadRightAfterStart(t *testing.T) {
	needRoot(t)
	bin := needGraceshim(t)
	haproxy := needCmd(t, "haproxy")
	kill := needCmd(t, "kill")
	u := userManager(t)

	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	conf := writeHAProxyOKConf(t, addr)
	name := unitName("haproxy-rawreload")
	u.InstallUnit(t, name, fmt.Sprintf(`[Unit]
Description=graceshim end-to-end test: haproxy -Ws reloaded by a bare USR2 right after its start

[Service]
Type=notify
NotifyAccess=main
KillMode=mixed
TimeoutStopSec=30
ExecStart=%s -- %s -Ws -f %s
ExecReload=%s -USR2 $MAINPID
`, bin, haproxy, conf, kill))
	const rounds = 3
	for i := 0; i < rounds; i++ {
		u.Start(t, name)
		logged := len(u.UnitLog(t, name))
		if out, err := u.systemctl("reload", name); err != nil {
			t.Fatalf("systemctl reload: %v\n%s", err, out)
		}
		var rest string
		if !waitFor(20*time.Second, 10*time.Millisecond, func() bool {
			rest = u.UnitLog(t, name)[logged:]
			return strings.Contains(rest, "haproxy reloaded") || strings.Contains(rest, "reload of haproxy failed")
		}) {
			t.Fatalf("round %d: the reload neither ended nor failed within 20s:\n%s", i, rest)
		}
		if !strings.Contains(rest, "haproxy reloaded") {
			t.Errorf("round %d: the bare USR2 sent right after the start did not reload HAProxy:\n%s", i, rest)
		}
		if !strings.Contains(rest, "Reloading HAProxy") {
			t.Errorf("round %d: HAProxy did not log its reload:\n%s", i, rest)
		}
		u.Stop(t, name)
	}
}

// writeHAProxyOKConf writes a HAProxy configuration whose one frontend
// listens on addr and answers every request itself (http-request return,
// HAProxy 2.2+), and returns its path.
func writeHAProxyOKConf(t *testing.T, addr string) string {
	t.Helper()
	conf := filepath.Join(t.TempDir(), "haproxy.cfg")
	writeFile(t, conf, fmt.Sprintf(`defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s

frontend fe
    bind %s
    http-request return status 200 content-type text/plain string ok
`, addr))
	return conf
}
