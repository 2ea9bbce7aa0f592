package e2e

// End-to-end tests of the notify relay with a real daemon that speaks
// sd_notify itself: php-fpm from Debian's php8.2-fpm package, on a unix
// socket (Debian's default pool), under the real systemd user manager.
// Debian's own unit is Type=notify; under graceshim php-fpm's READY=1,
// STATUS= and WATCHDOG=1 reach systemd through graceshim's relay.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/graceshim/graceshim/signals"
)

// fpmSite is a php-fpm configuration in a temp dir: one pool on a unix
// socket, answering FastCGI pings (ping.path).
type fpmSite struct {
	Dir, Conf, Pool, Socket, PIDFile, ErrorLog string
}

func newFPMSite(t *testing.T) *fpmSite {
	t.Helper()
	dir := t.TempDir()
	s := &fpmSite{
		Dir:      dir,
		Conf:     filepath.Join(dir, "php-fpm.conf"),
		Pool:     filepath.Join(dir, "pool.conf"),
		Socket:   filepath.Join(dir, "fpm.sock"),
		PIDFile:  filepath.Join(dir, "fpm.pid"),
		ErrorLog: filepath.Join(dir, "fpm.log"),
	}
	// php-fpm.conf(5) as Debian ships it, cut to what a test needs: the
	// pool listens on a unix socket as Debian's www pool does.
	conf := fmt.Sprintf(`[global]
pid = %s
error_log = %s
daemonize = no
include = %s
`, s.PIDFile, s.ErrorLog, s.Pool)
	if err := os.WriteFile(s.Conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	s.writePool(t, "")
	return s
}

// writePool writes the pool, with extra lines at its end.
func (s *fpmSite) writePool(t *testing.T, extra string) {
	t.Helper()
	pool := fmt.Sprintf(`[www]
user = root
group = root
listen = %s
pm = static
pm.max_children = 2
ping.path = /ping
ping.response = pong
%s`, s.Socket, extra)
	tmp := s.Pool + ".tmp"
	if err := os.WriteFile(tmp, []byte(pool), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, s.Pool); err != nil {
		t.Fatal(err)
	}
}

// argv runs php-fpm in the foreground as Debian's unit does; -R because
// the tests run as root.
func (s *fpmSite) argv(fpm string) string {
	return fmt.Sprintf("%s -R --nodaemonize --fpm-config %s", fpm, s.Conf)
}

func (s *fpmSite) masterPID() (int, error) {
	b, err := os.ReadFile(s.PIDFile)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// ping asks the pool's ping page over FastCGI and returns the body.
func (s *fpmSite) ping() (string, error) {
	return fcgiGet(s.Socket, "/ping")
}

// fcgiGet sends one FastCGI request (the FastCGI 1.0 specification:
// BEGIN_REQUEST as a responder, PARAMS, an empty STDIN) to the unix
// socket and returns the body of the STDOUT it gets back.
func fcgiGet(socket, path string) (string, error) {
	c, err := net.DialTimeout("unix", socket, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	record := func(typ byte, body []byte) []byte {
		h := []byte{1, typ, 0, 1, byte(len(body) >> 8), byte(len(body)), 0, 0}
		return append(h, body...)
	}
	var params []byte
	for _, kv := range [][2]string{{"SCRIPT_NAME", path}, {"SCRIPT_FILENAME", path}, {"REQUEST_METHOD", "GET"}, {"REQUEST_URI", path}} {
		params = append(params, byte(len(kv[0])), byte(len(kv[1])))
		params = append(params, kv[0]+kv[1]...)
	}
	var req []byte
	req = append(req, record(1, []byte{0, 1, 0, 0, 0, 0, 0, 0})...) // BEGIN_REQUEST, role responder
	req = append(req, record(4, params)...)
	req = append(req, record(4, nil)...)
	req = append(req, record(5, nil)...)
	if _, err := c.Write(req); err != nil {
		return "", err
	}
	var stdout bytes.Buffer
	for {
		h := make([]byte, 8)
		if _, err := io.ReadFull(c, h); err != nil {
			return "", fmt.Errorf("fastcgi: %w", err)
		}
		n, pad := binary.BigEndian.Uint16(h[4:6]), h[6]
		body := make([]byte, int(n)+int(pad))
		if _, err := io.ReadFull(c, body); err != nil {
			return "", fmt.Errorf("fastcgi: %w", err)
		}
		switch h[1] {
		case 6: // STDOUT
			stdout.Write(body[:n])
		case 3: // END_REQUEST
			_, b, ok := strings.Cut(stdout.String(), "\r\n\r\n")
			if !ok {
				return "", fmt.Errorf("fastcgi: no headers in %q", stdout.String())
			}
			return b, nil
		}
	}
}

// fpmUnit runs php-fpm under graceshim in a unit like Debian's
// php8.2-fpm.service (Type=notify), with graceshim's reload as ExecReload.
func fpmUnit(bin, fpm string, s *fpmSite, extra string) string {
	return fmt.Sprintf(`[Unit]
Description=graceshim end-to-end test: php-fpm on a unix socket, its sd_notify relayed

[Service]
Type=notify
NotifyAccess=main
KillMode=mixed
TimeoutStartSec=90
TimeoutStopSec=30
ExecStart=%s -- %s
ExecReload=%s reload $MAINPID
%s`, bin, s.argv(fpm), bin, extra)
}

func requirePong(t *testing.T, s *fpmSite, when string) {
	t.Helper()
	if body, err := s.ping(); err != nil || body != "pong" {
		t.Fatalf("php-fpm does not answer its ping %s: %q, %v", when, body, err)
	}
}

// TestE2ENotifyPHPFPM: php-fpm on a unix socket under graceshim is ready
// on its own READY=1 (no listening TCP socket to guess from: without the
// relay graceshim waited for its 30 s ready timeout), with php-fpm's own
// STATUS shown; a reload (USR2: php-fpm re-executes itself) ends on its
// READY=1; a reload with a broken pool is refused by php-fpm -t, and
// php-fpm serves on.
func TestE2ENotifyPHPFPM(t *testing.T) {
	t.Parallel()
	needPresetData(t, "php-fpm", func(p signals.Preset) bool { return p.NativeNotify }, "NativeNotify")
	needPresetData(t, "php-fpm", func(p signals.Preset) bool { return p.ConfigTest != nil }, "config test")
	fpm := needCmd(t, "php-fpm8.2")
	u := userManager(t)
	bin := needGraceshim(t)
	site := newFPMSite(t)
	name := unitName("notify-fpm")
	u.InstallUnit(t, name, fpmUnit(bin, fpm, site, ""))
	began := time.Now()
	u.Start(t, name)
	took := time.Since(began)
	t.Logf("figures: systemctl start of php-fpm under graceshim took %s", took.Round(time.Millisecond))
	requirePong(t, site, "right after start")
	log := u.UnitLog(t, name)
	if strings.Contains(log, "did not send READY=1") || strings.Contains(log, "no listening socket seen") {
		t.Fatalf("READY=1 came from graceshim's timeout, not php-fpm:\n%s", log)
	}
	if st := u.Show(t, name, "StatusText"); !strings.Contains(st, "running: php-fpm8.2 (pid ") || !strings.Contains(st, "Ready to handle connections") {
		t.Errorf("StatusText %q, want graceshim's words and php-fpm's own status", st)
	}
	mainPID := u.MainPID(t, name)
	master, err := site.masterPID()
	if err != nil {
		t.Fatal(err)
	}

	began = time.Now()
	if _, err := u.systemctl("reload", name); err != nil {
		t.Fatalf("reload: %v\nlog:\n%s", err, u.UnitLog(t, name))
	}
	t.Logf("figures: systemctl reload (php-fpm re-executes itself) took %s", time.Since(began).Round(time.Millisecond))
	requirePong(t, site, "right after the reload")
	if st := u.Show(t, name, "StatusText"); !strings.Contains(st, "reloaded: php-fpm8.2 said READY=1") {
		t.Errorf("StatusText %q after the reload, want php-fpm's READY=1 to have ended it", st)
	}

	// A broken pool: php-fpm -t fails, nothing is sent (a USR2 would make
	// php-fpm re-execute into the broken config and die).
	site.writePool(t, "pm.max_children = lots\n")
	out, err := u.systemctl("reload", name)
	if err == nil {
		t.Fatalf("systemctl reload with a broken pool succeeded: %s\nlog:\n%s", out, u.UnitLog(t, name))
	}
	log = u.UnitLog(t, name)
	if !strings.Contains(log, "reload refused") || !strings.Contains(log, "pm.max_children") {
		t.Errorf("the unit log does not carry php-fpm -t's message:\n%s", log)
	}
	requirePong(t, site, "after the refused reload")
	if got := u.MainPID(t, name); got != mainPID {
		t.Errorf("MainPID went from %d to %d", mainPID, got)
	}
	if got, err := site.masterPID(); err != nil || got != master {
		t.Errorf("php-fpm master went from %d to %d (%v)", master, got, err)
	}
	if st := u.Show(t, name, "ActiveState"); st != "active" {
		t.Errorf("ActiveState=%s after the refused reload, want active", st)
	}
	site.writePool(t, "")
	u.Stop(t, name)
	requireResult(t, u, name, "success")
}

// TestE2ENotifyWatchdogHungPHPFPM: with WatchdogSec=, php-fpm feeds the
// watchdog itself through graceshim (its status carries its figures); a
// hung php-fpm (SIGSTOP) starves it and systemd acts, though graceshim
// itself runs on: graceshim does not feed the watchdog on its behalf.
func TestE2ENotifyWatchdogHungPHPFPM(t *testing.T) {
	t.Parallel()
	needPresetData(t, "php-fpm", func(p signals.Preset) bool { return p.NativeNotify }, "NativeNotify")
	fpm := needCmd(t, "php-fpm8.2")
	u := userManager(t)
	bin := needGraceshim(t)
	site := newFPMSite(t)
	name := unitName("notify-fpm-watchdog")
	// php-fpm pings at half of WATCHDOG_USEC, and only when that is above
	// a second (sapi/fpm/fpm/fpm_systemd.c): 4 s gives pings every 2 s.
	u.InstallUnit(t, name, fpmUnit(bin, fpm, site, "WatchdogSec=4\n"))
	u.Start(t, name)
	requirePong(t, site, "right after start")
	// php-fpm's heartbeat STATUS comes with each of its pings.
	if !waitFor(30*time.Second, 100*time.Millisecond, func() bool {
		return strings.Contains(u.Show(t, name, "StatusText"), "Processes active:")
	}) {
		t.Fatalf("php-fpm's heartbeat status never showed (StatusText %q)\nlog:\n%s", u.Show(t, name, "StatusText"), u.UnitLog(t, name))
	}
	if log := u.UnitLog(t, name); !strings.Contains(log, "feeds the systemd watchdog itself") {
		t.Fatalf("graceshim did not hand the watchdog to php-fpm:\n%s", log)
	}
	master, err := site.masterPID()
	if err != nil {
		t.Fatal(err)
	}
	hung := time.Now()
	if err := syscall.Kill(master, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(master, syscall.SIGCONT)
	if !waitFor(60*time.Second, 100*time.Millisecond, func() bool {
		return u.Show(t, name, "Result") == "watchdog"
	}) {
		t.Fatalf("systemd did not act on the starved watchdog; Result=%s\n%s", u.Show(t, name, "Result"), u.UnitLog(t, name))
	}
	t.Logf("figures: the watchdog fired %s after php-fpm hung (WatchdogSec=4)", time.Since(hung).Round(100*time.Millisecond))
}

// TestE2ENotifyHAProxy: HAProxy in master-worker mode with -Ws speaks
// sd_notify itself. Under graceshim its READY=1 makes the unit active, a
// reload (USR2: the master re-executes itself and starts new workers)
// ends on its READY=1 and applies the new config, and a broken config is
// refused by haproxy -c with its message while HAProxy serves on.
func TestE2ENotifyHAProxy(t *testing.T) {
	t.Parallel()
	needPresetData(t, "haproxy", func(p signals.Preset) bool { return p.NativeNotify && p.ConfigTest != nil }, "NativeNotify and config test")
	haproxy := needCmd(t, "haproxy")
	u := userManager(t)
	bin := needGraceshim(t)
	port := freePort(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "haproxy.cfg")
	write := func(body string) {
		t.Helper()
		content := fmt.Sprintf(`defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s

frontend fe
    bind 127.0.0.1:%d
%s`, port, body)
		if err := os.WriteFile(conf+".tmp", []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(conf+".tmp", conf); err != nil {
			t.Fatal(err)
		}
	}
	serve := func(v string) string {
		return fmt.Sprintf("    http-request return status 200 content-type text/plain string %s\n", v)
	}
	version := func() string {
		t.Helper()
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
		resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err != nil {
			t.Fatalf("haproxy does not serve: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.TrimSpace(string(b))
	}
	write(serve("v1"))
	name := unitName("notify-haproxy")
	u.InstallUnit(t, name, fmt.Sprintf(`[Unit]
Description=graceshim end-to-end test: haproxy -Ws, its sd_notify relayed

[Service]
Type=notify
NotifyAccess=main
KillMode=mixed
TimeoutStopSec=30
ExecStart=%s -- %s -Ws -f %s
ExecReload=%s reload $MAINPID
`, bin, haproxy, conf, bin))
	u.Start(t, name)
	if got := version(); got != "v1" {
		t.Fatalf("version %q right after start, want v1", got)
	}
	// READY=1 is haproxy's own: never the listener's guess after the
	// grace, never graceshim's timeout.
	if log := u.UnitLog(t, name); strings.Contains(log, "said nothing on its notify socket") || strings.Contains(log, "did not send READY=1") {
		t.Errorf("READY=1 did not come from haproxy:\n%s", log)
	}
	mainPID := u.MainPID(t, name)

	write(serve("v2"))
	if _, err := u.systemctl("reload", name); err != nil {
		t.Fatalf("reload: %v\nlog:\n%s", err, u.UnitLog(t, name))
	}
	if got := version(); got != "v2" {
		t.Errorf("version %q right after systemctl reload returned, want v2", got)
	}
	// haproxy's READY=1 or its new worker with the old one no longer
	// accepting, whichever graceshim saw first, ended the reload.
	if st := u.Show(t, name, "StatusText"); !strings.Contains(st, "reloaded: haproxy said READY=1") && !strings.Contains(st, "reloaded: new worker pid") {
		t.Errorf("StatusText %q, want the reload ended by haproxy's READY=1 or its new worker", st)
	}

	write("    bogus_keyword here\n")
	if out, err := u.systemctl("reload", name); err == nil {
		t.Fatalf("systemctl reload with a broken config succeeded: %s\nlog:\n%s", out, u.UnitLog(t, name))
	}
	if log := u.UnitLog(t, name); !strings.Contains(log, "reload refused") || !strings.Contains(log, "bogus_keyword") {
		t.Errorf("the unit log does not carry haproxy -c's message:\n%s", log)
	}
	if got := version(); got != "v2" {
		t.Errorf("version %q after the refused reload, want v2", got)
	}
	if got := u.MainPID(t, name); got != mainPID {
		t.Errorf("MainPID went from %d to %d", mainPID, got)
	}
	write(serve("v2"))
	u.Stop(t, name)
	requireResult(t, u, name, "success")
}

// fpmChildren lists the pids of the processes whose parent is master.
func fpmChildren(t *testing.T, master int) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var kids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// "pid (comm) state ppid ...": comm may hold spaces, not ')'.
		rest := string(b[bytes.LastIndexByte(b, ')')+1:])
		f := strings.Fields(rest)
		if len(f) > 1 {
			if ppid, _ := strconv.Atoi(f[1]); ppid == master {
				kids = append(kids, pid)
			}
		}
	}
	return kids
}

// TestE2EReloadPHPFPMHeartbeat: php-fpm repeats READY=1 in a heartbeat
// (systemd_interval, here 1 s) and its USR2 reload first waits for busy
// workers up to process_control_timeout (here 3 s, with one worker in a
// slow request), then re-executes the master (sapi/fpm/fpm/fpm_process_ctl.c).
// The heartbeats during that wait are not the reload's end: `graceshim
// reload` answers only once the new generation runs, when no worker of
// the old one is left.
func TestE2EReloadPHPFPMHeartbeat(t *testing.T) {
	t.Parallel()
	needPresetData(t, "php-fpm", func(p signals.Preset) bool { return p.NativeNotify }, "NativeNotify")
	fpm := needCmd(t, "php-fpm8.2")
	bin := needGraceshim(t)
	site := newFPMSite(t)
	// php-fpm.conf(5): systemd_interval is the heartbeat's period,
	// process_control_timeout how long a reload waits for workers.
	conf, err := os.ReadFile(site.Conf)
	if err != nil {
		t.Fatal(err)
	}
	conf = bytes.Replace(conf, []byte("daemonize = no\n"), []byte("daemonize = no\nsystemd_interval = 1\nprocess_control_timeout = 3\n"), 1)
	if err := os.WriteFile(site.Conf, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	started := filepath.Join(site.Dir, "slow.started")
	slow := filepath.Join(site.Dir, "slow.php")
	// usleep in a loop: php-fpm's QUIT to its workers cuts one usleep
	// short, not the request.
	script := fmt.Sprintf(`<?php
file_put_contents(%q, "1");
$end = microtime(true) + 20;
while (microtime(true) < $end) { usleep(100000); }
echo "slow done";
`, started)
	if err := os.WriteFile(slow, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}

	// graceshim's own NOTIFY_SOCKET, as systemd would give it: its
	// READY=1 says php-fpm's start-up is over.
	nsPath := filepath.Join(site.Dir, "notify")
	ns, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: nsPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	readyc := make(chan struct{})
	go func() {
		buf := make([]byte, 4096)
		once := false
		for {
			n, err := ns.Read(buf)
			if err != nil {
				return
			}
			if !once && strings.HasPrefix(string(buf[:n]), "READY=1") {
				once = true
				close(readyc)
			}
		}
	}()
	var out syncBuffer
	cmd := exec.Command(bin, "--log-level=debug", "--", fpm, "-R", "--nodaemonize", "--fpm-config", site.Conf)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+nsPath)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("graceshim's log:\n%s", out.String())
		}
	}()
	select {
	case <-readyc:
	case <-time.After(60 * time.Second):
		t.Fatalf("graceshim never said READY=1:\n%s", out.String())
	}
	master, err := site.masterPID()
	if err != nil {
		t.Fatal(err)
	}
	go fcgiGet(site.Socket, slow)
	if !waitFor(30*time.Second, 20*time.Millisecond, func() bool { _, err := os.Stat(started); return err == nil }) {
		t.Fatal("the slow request never started")
	}
	old := fpmChildren(t, master)
	if len(old) == 0 {
		t.Fatal("php-fpm has no workers")
	}

	began := time.Now()
	rel := exec.Command(bin, "reload", strconv.Itoa(cmd.Process.Pid))
	reply, err := rel.CombinedOutput()
	took := time.Since(began)
	if err != nil {
		t.Fatalf("graceshim reload: %v: %s", err, reply)
	}
	var left []int
	for _, pid := range old {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			left = append(left, pid)
		}
	}
	if len(left) > 0 {
		t.Errorf("graceshim reload answered %q while old workers %v of %v still ran: a heartbeat ended the reload", strings.TrimSpace(string(reply)), left, old)
	}
	// php-fpm's heartbeats while the reload waited for the busy worker
	// (graceshim's debug log has every datagram): without one, this test
	// proves nothing.
	log := out.String()
	during := log[strings.Index(log, "reloading php-fpm8.2"):]
	if i := strings.Index(during, "reloaded:"); i >= 0 {
		during = during[:i]
	}
	beats := strings.Count(during, "Processes active")
	if beats == 0 {
		t.Errorf("no heartbeat of php-fpm's came during the reload (systemd_interval = 1):\n%s", log)
	}
	t.Logf("figures: graceshim reload of php-fpm with a busy worker took %s, %d heartbeat(s) with READY=1 during it; answer %q", took.Round(time.Millisecond), beats, strings.TrimSpace(string(reply)))
	requirePong(t, site, "after the reload")
}
