package e2e

// `graceshim status`, /metrics and the drain's log lines under a real
// systemd user manager with real nginx: a slow download from a known
// source port is in flight at systemctl stop, and each of them must name
// it.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// statusConn and statusReply are what the test reads of
// `graceshim status --format json` (supervisor.Status).
type statusConn struct {
	Peer     string  `json:"peer"`
	Local    string  `json:"local"`
	State    string  `json:"state"`
	Open     float64 `json:"open_seconds"`
	Sent     *uint64 `json:"sent_bytes"`
	Received *uint64 `json:"received_bytes"`
}

type statusReply struct {
	Command   string `json:"command"`
	PID       int    `json:"pid"`
	Shim      int    `json:"graceshim_pid"`
	State     string `json:"state"`
	Listeners []struct {
		Listener    string `json:"listener"`
		Connections int    `json:"connections"`
	} `json:"listeners"`
	Drain *struct {
		Left        int          `json:"left"`
		Connections []statusConn `json:"connections"`
		More        int          `json:"more"`
	} `json:"drain"`
}

// runStatus runs graceshim status with args and returns its output and
// exit code.
func runStatus(t *testing.T, u *userSystemd, args ...string) (string, string, int) {
	t.Helper()
	return graceshimCmdEnv(t, u.env, append([]string{"status"}, args...)...)
}

func statusJSON(t *testing.T, u *userSystemd, name string) statusReply {
	t.Helper()
	out, errs, code := runStatus(t, u, "--user", "--format", "json", name)
	if code != 0 {
		t.Fatalf("graceshim status --user --format json %s: exit %d: %s", name, code, errs)
	}
	var st statusReply
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status JSON: %v: %s", err, out)
	}
	return st
}

func TestStatusE2E(t *testing.T) {
	u := userManager(t)
	bin := needGraceshim(t)
	curl := needCmd(t, "curl")
	site := newNginxSite(t, nginxOpts{})
	name := unitName("status")
	health := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	u.InstallUnit(t, name, shimUnit(bin, []string{"--health-listen", health}, site, "5"))
	u.Start(t, name)
	requireServing(t, u, name, site)
	listener := fmt.Sprintf("tcp4 127.0.0.1:%d", site.Port)

	// Serving: the listener, no connections.
	st := statusJSON(t, u, name)
	if st.State != "serving" || st.Command != "nginx" || st.Shim != u.MainPID(t, name) || len(st.Listeners) != 1 || st.Listeners[0].Listener != listener {
		t.Errorf("status while serving: %+v, want serving on %s, graceshim pid %d", st, listener, u.MainPID(t, name))
	}

	// Another user may not ask: the kernel says so before graceshim is
	// reached (another user's process cannot be signalled or looked at),
	// and graceshim would refuse too (SO_PEERCRED).
	setpriv := needCmd(t, "setpriv")
	asNobody := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", bin, "status", strconv.Itoa(u.MainPID(t, name)))
	var nobodyErr bytes.Buffer
	asNobody.Stderr = &nobodyErr
	err := asNobody.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 12 || !strings.Contains(nobodyErr.String(), "permission denied") {
		t.Errorf("status as nobody: %v %q, want exit 12, permission denied", err, nobodyErr.String())
	}

	// A slow download from a known source port (12 s at nginx's
	// limit_rate), in flight once its first bytes arrived.
	src := freeSourcePort(t)
	peer := fmt.Sprintf("127.0.0.1:%d", src)
	out := filepath.Join(t.TempDir(), "big")
	dl := exec.Command(curl, "-sS", "--no-keepalive", "--noproxy", "*", "--max-time", "90",
		"--local-port", strconv.Itoa(src), "-o", out, site.URL)
	var dlErr bytes.Buffer
	dl.Stderr = &dlErr
	if err := dl.Start(); err != nil {
		t.Fatal(err)
	}
	dlDone := make(chan struct{})
	var dlWait error
	go func() { dlWait = dl.Wait(); close(dlDone) }()
	t.Cleanup(func() { dl.Process.Kill(); <-dlDone })
	if !waitFor(30*time.Second, 20*time.Millisecond, func() bool {
		fi, err := os.Stat(out)
		return err == nil && fi.Size() > 0
	}) {
		t.Fatalf("the download did not start: %s", dlErr.String())
	}
	st = statusJSON(t, u, name)
	if len(st.Listeners) != 1 || st.Listeners[0].Connections != 1 {
		t.Errorf("status with the download in flight: %+v, want 1 connection on %s", st.Listeners, listener)
	}
	if text, errs, code := runStatus(t, u, "--user", name); code != 0 || !strings.Contains(text, ": serving since") ||
		!regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(listener)+` +1$`).MatchString(text) {
		t.Errorf("status as text while serving: exit %d %s\n%s", code, errs, text)
	}

	watch := u.WatchStatus(t, name)
	stopped := make(chan error, 1)
	go func() { _, err := u.stop(name); stopped <- err }()

	// During the drain: status names the download, in JSON and as text,
	// for two clients at once.
	var named statusReply
	if !waitFor(30*time.Second, 100*time.Millisecond, func() bool {
		named = statusJSON(t, u, name)
		return named.State == "draining" && named.Drain != nil && len(named.Drain.Connections) > 0
	}) {
		t.Fatalf("status never showed the drain's connections: %+v\nlog:\n%s", named, u.UnitLog(t, name))
	}
	c := named.Drain.Connections[0]
	if len(named.Drain.Connections) != 1 || named.Drain.More != 0 || c.Peer != peer || c.Local != fmt.Sprintf("127.0.0.1:%d", site.Port) || c.State != "ESTAB" {
		t.Errorf("drain connections: %+v, want the one download from %s", named.Drain, peer)
	}
	if c.Sent == nil || *c.Sent == 0 || *c.Sent > uint64(site.FileSize)+1024 || c.Received == nil || *c.Received == 0 {
		t.Errorf("download's bytes: sent %v received %v, want some of the %d bytes sent and its request received", c.Sent, c.Received, site.FileSize)
	}
	var wg sync.WaitGroup
	texts := make([]string, 2)
	codes := make([]int, 2)
	for i := range texts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			texts[i], _, codes[i] = runStatus(t, u, "--user", name)
		}()
	}
	wg.Wait()
	for i, text := range texts {
		if codes[i] != 0 || !strings.Contains(text, ": draining since") || !strings.Contains(text, "PEER") || !strings.Contains(text, peer+" ") {
			t.Errorf("status client %d of 2: exit %d:\n%s", i+1, codes[i], text)
		}
	}
	t.Logf("graceshim status during the drain:\n%s", texts[0])

	metrics := getMetrics(t, health)
	for _, want := range []string{
		`graceshim_state{state="draining"} 1`,
		`graceshim_drain_connections{state="established"} 1`,
		`graceshim_stop_outcome{outcome="graceful"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics during the drain has no %q:\n%s", want, metrics)
		}
	}
	// Valid text exposition format, as Prometheus's promtool reads it,
	// with a real drain's labels (peers, local addresses).
	if promtool, err := exec.LookPath("promtool"); err == nil {
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = strings.NewReader(metrics)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics of /metrics during the drain: %v\n%s\n%s", err, out, metrics)
		}
	}
	// The download by its peer, with the bytes sent so far.
	sent := regexp.MustCompile(`(?m)^graceshim_drain_oldest_connection_sent_bytes\{peer="` + regexp.QuoteMeta(peer) + `",local="127\.0\.0\.1:` + strconv.Itoa(site.Port) + `"\} (\d+)$`).FindStringSubmatch(metrics)
	if sent == nil {
		t.Errorf("/metrics names no %s:\n%s", peer, metrics)
	} else if n, _ := strconv.Atoi(sent[1]); n == 0 || n > site.FileSize+1024 {
		t.Errorf("/metrics: %s sent %d bytes, want some of %d", peer, n, site.FileSize)
	}

	// Bad input while the service drains: nothing there is a graceshim.
	if _, errs, code := runStatus(t, u, strconv.Itoa(dl.Process.Pid)); code != 11 || !strings.Contains(errs, "no graceshim control socket") {
		t.Errorf("status of curl's pid: exit %d %q, want 11 (not a graceshim)", code, errs)
	}

	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("systemctl stop did not return within 60s")
	}
	statuses := watch()
	<-dlDone
	if dlWait != nil {
		t.Errorf("the download failed: %v: %s", dlWait, dlErr.String())
	}
	if fi, err := os.Stat(out); err != nil || fi.Size() != int64(site.FileSize) {
		t.Errorf("download: %v, want %d bytes", fi, site.FileSize)
	}
	requireResult(t, u, name, "success")
	requireStatusSeen(t, statuses, "waiting for "+peer+" (")
	log := u.UnitLog(t, name)
	if !strings.Contains(log, "waiting for "+peer+" (ESTAB, open >=") {
		t.Errorf("the log names no %s:\n%s", peer, log)
	}

	// After the stop: the unit is not running.
	if _, errs, code := runStatus(t, u, "--user", name); code != 13 || !strings.Contains(errs, "is not running") {
		t.Errorf("status of the stopped unit: exit %d %q, want 13", code, errs)
	}
}

// TestStatusE2EBadInput: clear errors and distinct exit codes.
func TestStatusE2EBadInput(t *testing.T) {
	u := userManager(t)
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"no such pid", []string{strconv.Itoa(gone.Process.Pid)}, 10, "no process"},
		{"not a graceshim", []string{strconv.Itoa(os.Getpid())}, 11, "no graceshim control socket"},
		{"unknown unit", []string{"--user", unitName("status-none")}, 13, "no unit"},
		// The system manager: not running here (systemd is not PID 1),
		// where it is the unit is unknown; 13 either way.
		{"unknown system unit", []string{unitName("status-none")}, 13, unitName("status-none")},
		{"no argument", nil, 2, "want one UNIT or PID"},
		{"bad format", []string{"--format", "xml", "1"}, 2, "bad --format"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, errs, code := runStatus(t, u, tt.args...)
			if code != tt.code || !strings.Contains(errs, tt.msg) || out != "" || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
				t.Errorf("status %v: exit %d, stdout %q, stderr %q; want exit %d and one line with %q", tt.args, code, out, errs, tt.code, tt.msg)
			}
		})
	}
	// A manager that never answers (hung, its bus stuck): a systemctl
	// that sleeps stands for it, since a real one cannot be hung here.
	t.Run("manager does not answer", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "systemctl"), "#!/bin/sh\nexec sleep 60\n")
		if err := os.Chmod(filepath.Join(dir, "systemctl"), 0o755); err != nil {
			t.Fatal(err)
		}
		env := append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"))
		out, errs, code := graceshimCmdEnv(t, env, "status", "--timeout=300ms", unitName("status-hung"))
		if code != 13 || !strings.Contains(errs, "no answer within 300ms") || out != "" {
			t.Errorf("exit %d, stdout %q, stderr %q; want exit 13 and \"no answer within 300ms\"", code, out, errs)
		}
	})
}

func getMetrics(t *testing.T, addr string) string {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d\n%s", resp.StatusCode, b)
	}
	return string(b)
}

// freeSourcePort is a port for a client to bind as its source port: below
// the kernel's ephemeral range, so that no other connection takes it
// between this check and the client's bind, reserved (reservePort) so
// that no other test takes it either, and free for a bind without
// SO_REUSEADDR (as curl's --local-port binds), which a socket in
// TIME_WAIT on it would fail. freePort's check uses net.Listen, which
// sets SO_REUSEADDR.
func freeSourcePort(t *testing.T) int {
	t.Helper()
	return reservePort(t, sourcePorts, func(p int) bool {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		err = unix.Bind(fd, &unix.SockaddrInet4{Port: p})
		unix.Close(fd)
		return err == nil
	})
}
