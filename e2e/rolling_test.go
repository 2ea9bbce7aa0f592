package e2e

// End-to-end proof that graceshim takes a server out of a load balancer
// before it stops: real HAProxy on loopback in front of two nginx backends,
// each a unit under the real systemd user manager, wrk sending requests
// through HAProxy all along and slow curl downloads in flight while each
// backend is restarted in turn. With graceshim (--health-listen, which
// answers 503 from the moment a stop begins, and --drain-delay, which keeps
// nginx serving meanwhile) not one request may fail; the same run with
// plain units must lose some, or the scenario proves nothing. The reload
// test sends systemctl reload during such a load run.

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The health check timing HAProxy uses, and the drain delay chosen above
// it: a check every 200 ms, one failure takes a server out, two successes
// put it back. A backend answering 503 is out within about one interval
// (plus the check's own round trip), well inside a 1 s drain delay.
const (
	checkInter     = "200ms"
	rollDrainDelay = "1s"
)

// Downloads in flight during each restart: slow enough to outlive the
// drain delay by seconds (6 s at 200 KiB/s).
const (
	rollRate      = "200k"
	rollFileSize  = 6 * 200 * 1024
	rollDownloads = 8
)

// --- HAProxy ----------------------------------------------------------------

// lbServer is one backend server of the test balancer.
type lbServer struct {
	Name      string
	Port      int // where requests go
	CheckPort int // where health checks go (the server's own port when 0)
}

// haproxyLB is a real haproxy process with a config in a temp dir, one
// frontend on a free loopback port and one backend, and an admin socket
// the test reads the servers' state from.
type haproxyLB struct {
	Port   int
	URL    string // http://127.0.0.1:Port
	conf   string
	sock   string
	cmd    *exec.Cmd
	out    *bytes.Buffer
	exited chan struct{}
}

// startHAProxy runs haproxy in the foreground in front of servers, health
// checking each with GET checkPath, and waits until its admin socket
// answers.
func startHAProxy(t *testing.T, servers []lbServer, checkPath, backendExtra string) *haproxyLB {
	t.Helper()
	bin := needCmd(t, "haproxy")
	dir := t.TempDir()
	lb := &haproxyLB{
		Port:   freePort(t),
		conf:   filepath.Join(dir, "haproxy.cfg"),
		sock:   filepath.Join(dir, "admin.sock"),
		out:    &bytes.Buffer{},
		exited: make(chan struct{}),
	}
	lb.URL = fmt.Sprintf("http://127.0.0.1:%d", lb.Port)
	var b strings.Builder
	fmt.Fprintf(&b, `global
    stats socket %s mode 600 level admin
    maxconn 4000

defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout check 1s

frontend fe
    bind 127.0.0.1:%d
    default_backend be

backend be
    # Least connections: the long downloads spread over both servers
    # whatever the short requests do.
    balance leastconn
    option httpchk GET %s
    default-server inter %s fall 1 rise 2
%s`, lb.sock, lb.Port, checkPath, checkInter, backendExtra)
	for _, s := range servers {
		fmt.Fprintf(&b, "    server %s 127.0.0.1:%d check", s.Name, s.Port)
		if s.CheckPort != 0 {
			fmt.Fprintf(&b, " port %d", s.CheckPort)
		}
		b.WriteString("\n")
	}
	if err := os.WriteFile(lb.conf, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-c", "-q", "-f", lb.conf).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c -f %s: %v\n%s\n%s", lb.conf, err, out, b.String())
	}
	// -db: stay in the foreground, no master-worker mode.
	lb.cmd = exec.Command(bin, "-db", "-f", lb.conf)
	lb.cmd.Stdout, lb.cmd.Stderr = lb.out, lb.out
	if err := lb.cmd.Start(); err != nil {
		t.Fatalf("cannot start haproxy: %v", err)
	}
	go func() { lb.cmd.Wait(); close(lb.exited) }()
	t.Cleanup(func() {
		select {
		case <-lb.exited:
		default:
			lb.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-lb.exited:
			case <-time.After(10 * time.Second):
				lb.cmd.Process.Kill()
				<-lb.exited
			}
		}
	})
	if !waitFor(30*time.Second, 20*time.Millisecond, func() bool {
		_, err := lb.stats()
		return err == nil
	}) {
		t.Fatalf("haproxy did not answer on %s within 30s:\n%s", lb.sock, lb.out)
	}
	return lb
}

// stats returns HAProxy's "show stat" rows of the backend's servers and
// the frontend, keyed by svname ("a", "b", "FRONTEND", "BACKEND"), each a
// map from column name to value.
func (lb *haproxyLB) stats() (map[string]map[string]string, error) {
	c, err := net.DialTimeout("unix", lb.sock, time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "show stat\n"); err != nil {
		return nil, err
	}
	raw, err := io.ReadAll(c)
	if err != nil {
		return nil, err
	}
	return parseHAProxyStat(string(raw))
}

// parseHAProxyStat reads "show stat" CSV: a header line starting "# ",
// then one row per proxy and server.
func parseHAProxyStat(raw string) (map[string]map[string]string, error) {
	raw = strings.TrimPrefix(raw, "# ")
	r := csv.NewReader(strings.NewReader(raw))
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("cannot parse haproxy stats: %w", err)
	}
	if len(rows) < 2 {
		return nil, fmt.Errorf("haproxy stats have no rows: %q", raw)
	}
	head := rows[0]
	out := map[string]map[string]string{}
	for _, row := range rows[1:] {
		m := map[string]string{}
		for i, v := range row {
			if i < len(head) {
				m[head[i]] = v
			}
		}
		out[m["svname"]] = m
	}
	return out, nil
}

// status returns the health state of server name ("UP", "DOWN",
// "DOWN 1/2" while rising...), "" when the stats cannot be read.
func (lb *haproxyLB) status(name string) string {
	st, err := lb.stats()
	if err != nil {
		return ""
	}
	return st[name]["status"]
}

// waitUp waits until every named server is UP.
func (lb *haproxyLB) waitUp(t *testing.T, names ...string) {
	t.Helper()
	if !waitFor(30*time.Second, 20*time.Millisecond, func() bool {
		for _, n := range names {
			if lb.status(n) != "UP" {
				return false
			}
		}
		return true
	}) {
		st, _ := lb.stats()
		t.Fatalf("haproxy did not see servers %v UP within 30s: %v", names, st)
	}
}

// statInt reads a numeric column of a stats row (empty means 0).
func statInt(row map[string]string, col string) int {
	n, _ := strconv.Atoi(row[col])
	return n
}

// --- wrk --------------------------------------------------------------------

// wrkResult is what wrk reported.
type wrkResult struct {
	Requests int
	Non2xx   int // "Non-2xx or 3xx responses"
	Connect  int // socket errors, by kind
	Read     int
	Write    int
	Timeout  int
	Output   string
}

func (r wrkResult) errors() int { return r.Non2xx + r.Connect + r.Read + r.Write + r.Timeout }

func (r wrkResult) String() string {
	return fmt.Sprintf("%d requests, %d non-2xx/3xx, socket errors: connect %d, read %d, write %d, timeout %d",
		r.Requests, r.Non2xx, r.Connect, r.Read, r.Write, r.Timeout)
}

var (
	wrkRequestsRE = regexp.MustCompile(`(?m)^\s*(\d+) requests in `)
	wrkSocketRE   = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkNon2xxRE   = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
)

// parseWrk reads wrk's summary. The error lines are printed only when
// there were errors.
func parseWrk(out string) (wrkResult, error) {
	r := wrkResult{Output: out}
	m := wrkRequestsRE.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("no request count in wrk's output:\n%s", out)
	}
	r.Requests, _ = strconv.Atoi(m[1])
	if m := wrkSocketRE.FindStringSubmatch(out); m != nil {
		r.Connect, _ = strconv.Atoi(m[1])
		r.Read, _ = strconv.Atoi(m[2])
		r.Write, _ = strconv.Atoi(m[3])
		r.Timeout, _ = strconv.Atoi(m[4])
	} else if strings.Contains(out, "Socket errors") {
		return r, fmt.Errorf("cannot read wrk's socket errors:\n%s", out)
	}
	if m := wrkNon2xxRE.FindStringSubmatch(out); m != nil {
		r.Non2xx, _ = strconv.Atoi(m[1])
	} else if strings.Contains(out, "Non-2xx") {
		return r, fmt.Errorf("cannot read wrk's non-2xx count:\n%s", out)
	}
	return r, nil
}

// wrkLoad is a wrk process sending requests until Stop.
type wrkLoad struct {
	cmd    *exec.Cmd
	out    *bytes.Buffer
	exited chan struct{}
}

// wrkMaxDuration bounds a wrk run should Stop never come (a hang guard).
const wrkMaxDuration = 120 * time.Second

// wrkTimeout is how long wrk waits for an answer before it counts a
// timeout (see startWrk).
const wrkTimeout = "30s"

// startWrk runs wrk against url with a few keep-alive connections (extra
// goes to wrk before the url). A
// 1 ms delay between a connection's requests keeps the load steady (some
// thousands a second) without taking every core from the servers.
//
// A request is counted as a timeout only after wrkTimeout: wrk's default
// of 2 s is an answer a loaded two-core machine may well take (or a
// client queued through a restart), and a late answer is not a lost one.
// A refused, reset or unanswered connection is an error all the same.
func startWrk(t *testing.T, url string, extra ...string) *wrkLoad {
	t.Helper()
	bin := needCmd(t, "wrk")
	script := filepath.Join(t.TempDir(), "delay.lua")
	if err := os.WriteFile(script, []byte("function delay() return 1 end\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	w := &wrkLoad{out: &bytes.Buffer{}, exited: make(chan struct{})}
	args := []string{"-t", "2", "-c", "8", "-d", fmt.Sprintf("%ds", int(wrkMaxDuration/time.Second)), "--timeout", wrkTimeout, "-s", script}
	args = append(append(args, extra...), url)
	w.cmd = exec.Command(bin, args...)
	w.cmd.Stdout, w.cmd.Stderr = w.out, w.out
	if err := w.cmd.Start(); err != nil {
		t.Fatalf("cannot start wrk: %v", err)
	}
	go func() { w.cmd.Wait(); close(w.exited) }()
	t.Cleanup(func() {
		select {
		case <-w.exited:
		default:
			w.cmd.Process.Kill()
			<-w.exited
		}
	})
	return w
}

// Stop ends the run (wrk prints its summary on SIGINT) and parses it.
func (w *wrkLoad) Stop(t *testing.T) wrkResult {
	t.Helper()
	select {
	case <-w.exited:
		t.Fatalf("wrk ended before the scenario did:\n%s", w.out)
	default:
	}
	w.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-w.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("wrk did not end on SIGINT:\n%s", w.out)
	}
	r, err := parseWrk(w.out.String())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// --- backends ---------------------------------------------------------------

// backend is one nginx under a unit, as HAProxy sees it.
type backend struct {
	lbServer
	unit string
	site *nginxSite
}

// rollSite is an nginx site for the rolling tests. Unlike the harness's
// sites it keeps connections alive (nginx's default is 75 s), so HAProxy
// reuses idle connections to it, as it does in production: nginx closes
// those at its graceful stop and reload, the harder case for a balancer.
func rollSite(t *testing.T) *nginxSite {
	t.Helper()
	site := newNginxSite(t, nginxOpts{Rate: rollRate, FileSize: rollFileSize})
	conf, err := os.ReadFile(site.Conf)
	if err != nil {
		t.Fatal(err)
	}
	const off = "keepalive_timeout 0;"
	if !bytes.Contains(conf, []byte(off)) {
		t.Fatalf("%s has no %q to turn keep-alive on:\n%s", site.Conf, off, conf)
	}
	conf = bytes.Replace(conf, []byte(off), []byte("keepalive_timeout 65s;"), 1)
	if err := os.WriteFile(site.Conf, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	return site
}

// graceshimBackend installs and starts nginx under graceshim with a health
// endpoint and a drain delay, and ExecReload as the README gives it.
func graceshimBackend(t *testing.T, u *userSystemd, name, drainDelay string) backend {
	t.Helper()
	bin := needGraceshim(t)
	site := rollSite(t)
	health := freePort(t)
	unit := unitName(testUnitBase(t) + "-" + name)
	u.InstallUnit(t, unit, fmt.Sprintf(`[Unit]
Description=graceshim rolling restart backend %s (nginx on %d, health on %d)

[Service]
Type=notify
NotifyAccess=main
KillMode=mixed
TimeoutStartSec=60
TimeoutStopSec=5
ExecStart=%s --drain-delay %s --health-listen 127.0.0.1:%d -- /usr/sbin/nginx -c %s
ExecReload=/bin/kill -HUP $MAINPID
`, name, site.Port, health, bin, drainDelay, health, site.Conf))
	u.Start(t, unit)
	requireServing(t, u, unit, site)
	return backend{lbServer: lbServer{Name: name, Port: site.Port, CheckPort: health}, unit: unit, site: site}
}

// plainBackend installs and starts nginx under a plain unit, as the
// nginx.org package ships it in spirit: nginx in the foreground, systemd's
// default SIGTERM to the whole group, no health endpoint (HAProxy checks
// nginx itself).
func plainBackend(t *testing.T, u *userSystemd, name string) backend {
	t.Helper()
	site := rollSite(t)
	unit := unitName(testUnitBase(t) + "-" + name)
	u.InstallUnit(t, unit, fmt.Sprintf(`[Unit]
Description=plain nginx rolling restart backend %s (control)

[Service]
TimeoutStopSec=5
ExecStart=/usr/sbin/nginx -c %s
`, name, site.Conf))
	u.Start(t, unit)
	waitServing(t, u, unit, site)
	return backend{lbServer: lbServer{Name: name, Port: site.Port}, unit: unit, site: site}
}

// testUnitBase makes a unit name part from the test's name: tests running
// in parallel in one process must not share a unit.
func testUnitBase(t *testing.T) string {
	var b strings.Builder
	for _, r := range strings.TrimPrefix(t.Name(), "TestE2E") {
		switch {
		case r >= 'A' && r <= 'Z':
			b.WriteRune(r - 'A' + 'a')
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteRune('-')
		}
	}
	return b.String()
}

// waitServing waits until nginx answers (Type=simple units are started
// before nginx listens).
func waitServing(t *testing.T, u *userSystemd, unit string, site *nginxSite) {
	t.Helper()
	if !waitFor(30*time.Second, 20*time.Millisecond, func() bool {
		code, err := site.Get("/small")
		return err == nil && code == 200
	}) {
		t.Fatalf("nginx of %s did not answer\nlog:\n%s", unit, u.UnitLog(t, unit))
	}
}

// restart runs systemctl --user restart, holding the reload lock shared as
// a stop does (harness_test.go: no daemon-reload during a stop).
func (u *userSystemd) restart(t *testing.T, unit string) {
	t.Helper()
	unlock, err := lockReload(syscall.LOCK_SH)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	if _, err := u.systemctl("restart", unit); err != nil {
		t.Fatalf("%v\n%s\nlog:\n%s", err, u.Status(t, unit), u.UnitLog(t, unit))
	}
}

// --- the rolling restart ----------------------------------------------------

// restartSeen is what was watched during one backend's restart, each time
// since systemctl restart was issued (zero: not seen).
type restartSeen struct {
	down    time.Duration // HAProxy first showed the server DOWN
	refused time.Duration // nginx first refused a connection (its listeners closed)
	took    time.Duration // systemctl restart returned
	onIt    int           // downloads HAProxy had on the server when the restart began
}

// watchRestart polls HAProxy's view of server and nginx's port every 10 ms
// until stop is called.
func watchRestart(lb *haproxyLB, b backend, began time.Time) (stop func() restartSeen) {
	return pollUntilStopped(10*time.Millisecond, func(s *restartSeen) {
		if s.down == 0 && strings.HasPrefix(lb.status(b.Name), "DOWN") {
			s.down = time.Since(began)
		}
		if s.refused == 0 {
			// Only a refusal counts: a dial that times out says more
			// about this process's share of a loaded machine than
			// about nginx, and counted as a refusal it would come
			// before HAProxy's DOWN by chance.
			c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", b.Port), time.Second)
			if errors.Is(err, syscall.ECONNREFUSED) {
				s.refused = time.Since(began)
			} else if err == nil {
				c.Close()
			}
		}
	})
}

// rollResult is what a whole rolling restart measured.
type rollResult struct {
	wrk       wrkResult
	downloads int // started
	completed int // complete and intact
	cut       []string
	seen      []restartSeen
	stats     map[string]map[string]string // HAProxy's, at the end
}

// rollingRestart runs wrk through lb all along and restarts each backend
// in turn with slow downloads in flight through lb.
func rollingRestart(t *testing.T, u *userSystemd, lb *haproxyLB, backends []backend) rollResult {
	t.Helper()
	var names []string
	for _, b := range backends {
		names = append(names, b.Name)
	}
	lb.waitUp(t, names...)
	// A download through HAProxy may come from either backend; each
	// serves its own random /big of the same size.
	intact := func(res dlResult) bool {
		for _, b := range backends {
			if res.ok(b.site.FileSize, b.site.SHA256) {
				return true
			}
		}
		return false
	}
	var r rollResult
	w := startWrk(t, lb.URL+"/small")
	// Load flows before the first restart.
	if !waitFor(30*time.Second, 20*time.Millisecond, func() bool {
		st, err := lb.stats()
		return err == nil && statInt(st["FRONTEND"], "req_tot") > 100
	}) {
		t.Fatalf("no load through haproxy:\n%s", w.out)
	}
	for _, b := range backends {
		d := startDownloads(t, lb.URL+"/big", rollDownloads)
		st, err := lb.stats()
		if err != nil {
			t.Fatal(err)
		}
		onIt := statInt(st[b.Name], "scur")
		if onIt == 0 {
			t.Fatalf("no download went to server %s before its restart; stats: %v", b.Name, st[b.Name])
		}
		began := time.Now()
		stop := watchRestart(lb, b, began)
		u.restart(t, b.unit)
		took := time.Since(began)
		lb.waitUp(t, b.Name)
		s := stop()
		s.took, s.onIt = took, onIt
		r.seen = append(r.seen, s)
		t.Logf("restart of %s: %d downloads on it; HAProxy saw it DOWN %s in, nginx refused connections %s in, systemctl restart took %s",
			b.Name, onIt, fmtSeen(s.down), fmtSeen(s.refused), took.Round(time.Millisecond))
		for i, res := range d.Wait(t) {
			r.downloads++
			if intact(res) {
				r.completed++
			} else {
				r.cut = append(r.cut, fmt.Sprintf("restart of %s, download %d: %s", b.Name, i, res))
			}
		}
	}
	r.wrk = w.Stop(t)
	var err error
	if r.stats, err = lb.stats(); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrk through haproxy: %s", r.wrk)
	t.Logf("downloads through haproxy: %d/%d complete", r.completed, r.downloads)
	fe := r.stats["FRONTEND"]
	t.Logf("haproxy frontend: %s requests, %s answered 5xx", fe["req_tot"], fe["hrsp_5xx"])
	for _, n := range names {
		row := r.stats[n]
		t.Logf("haproxy server %s: %s requests, 5xx %s, connection errors %s, response errors %s, retries %s, redispatches %s, aborted by server %s, went down %s times",
			n, row["stot"], row["hrsp_5xx"], row["econ"], row["eresp"], row["wretr"], row["wredis"], row["srv_abrt"], row["chkdown"])
	}
	return r
}

func fmtSeen(d time.Duration) string {
	if d == 0 {
		return "never"
	}
	return d.Round(time.Millisecond).String()
}

// TestE2ERollingRestart: both backends restarted in turn under load, zero
// failed requests and every download complete, because HAProxy takes each
// backend out (health 503) before nginx stops accepting (drain delay).
func TestE2ERollingRestart(t *testing.T) {
	t.Parallel()
	u := userManager(t)
	backends := []backend{graceshimBackend(t, u, "a", rollDrainDelay), graceshimBackend(t, u, "b", rollDrainDelay)}
	lb := startHAProxy(t, []lbServer{backends[0].lbServer, backends[1].lbServer}, "/", "")
	r := rollingRestart(t, u, lb, backends)

	if r.wrk.errors() != 0 {
		t.Errorf("wrk saw errors during the rolling restart: %s\n%s", r.wrk, r.wrk.Output)
	}
	if r.wrk.Requests == 0 {
		t.Errorf("wrk sent no request: %s", r.wrk.Output)
	}
	if len(r.cut) > 0 {
		t.Errorf("%d of %d downloads were cut:\n  %s", len(r.cut), r.downloads, strings.Join(r.cut, "\n  "))
	}
	for i, s := range r.seen {
		b := backends[i]
		switch {
		case s.down == 0:
			t.Errorf("HAProxy never saw %s DOWN during its restart", b.Name)
		case s.refused == 0:
			t.Errorf("nginx of %s never refused a connection during its restart: was it restarted at all?", b.Name)
		case s.down >= s.refused:
			t.Errorf("HAProxy saw %s DOWN (%s in) only after nginx stopped accepting (%s in): the drain delay did not cover the detection",
				b.Name, s.down, s.refused)
		}
	}
	// Nothing was hidden by HAProxy either: no retry, no failed connection
	// or response on any server.
	for _, b := range backends {
		row := r.stats[b.Name]
		for _, col := range []string{"econ", "eresp", "wretr", "wredis", "hrsp_5xx", "srv_abrt"} {
			if n := statInt(row, col); n != 0 {
				t.Errorf("haproxy server %s: %s = %d, want 0", b.Name, col, n)
			}
		}
	}
	if t.Failed() {
		for _, b := range backends {
			t.Logf("unit %s log:\n%s", b.unit, u.UnitLog(t, b.unit))
		}
	}
}

// TestE2ERollingRestartPlainUnitsFail is the control: the same rolling
// restart with nginx under plain units (TERM, nginx's fast stop, no health
// endpoint: HAProxy checks nginx itself) loses requests or downloads, so
// TestE2ERollingRestart can fail.
func TestE2ERollingRestartPlainUnitsFail(t *testing.T) {
	t.Parallel()
	u := userManager(t)
	backends := []backend{plainBackend(t, u, "a"), plainBackend(t, u, "b")}
	lb := startHAProxy(t, []lbServer{backends[0].lbServer, backends[1].lbServer}, "/small", "")
	r := rollingRestart(t, u, lb, backends)
	if r.wrk.errors() == 0 && len(r.cut) == 0 {
		t.Errorf("the rolling restart of plain units lost nothing (%s; %d/%d downloads): the scenario no longer tells graceshim from a plain unit",
			r.wrk, r.completed, r.downloads)
	}
}

// readLines returns the lines of s containing any of subs.
func readLines(s string, subs ...string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		for _, sub := range subs {
			if strings.Contains(sc.Text(), sub) {
				out = append(out, sc.Text())
				break
			}
		}
	}
	return out
}

// TestE2ERollingRestartNoDrainDelayFails: the health endpoint alone is not
// enough. Without a drain delay nginx closes its listeners the moment its
// health turns 503, before HAProxy's next check, and requests sent to it
// meanwhile fail; this is why the examples set --drain-delay above the
// balancer's detection time.
func TestE2ERollingRestartNoDrainDelayFails(t *testing.T) {
	t.Parallel()
	u := userManager(t)
	backends := []backend{graceshimBackend(t, u, "a", "0s"), graceshimBackend(t, u, "b", "0s")}
	lb := startHAProxy(t, []lbServer{backends[0].lbServer, backends[1].lbServer}, "/", "")
	r := rollingRestart(t, u, lb, backends)
	failed := 0
	for _, b := range backends {
		failed += statInt(r.stats[b.Name], "econ") + statInt(r.stats[b.Name], "wretr")
	}
	if r.wrk.errors() == 0 && failed == 0 {
		t.Errorf("no request failed or was retried without a drain delay (%s): the scenario no longer shows what the drain delay is for", r.wrk)
	}
}

// --- reload -----------------------------------------------------------------

// stateAt is a unit's ActiveState and when it was first seen, since the
// watch began.
type stateAt struct {
	State string
	At    time.Duration
}

// watchActiveState polls the unit's ActiveState as fast as systemctl
// answers until stop is called; stop returns each change in order.
func (u *userSystemd) watchActiveState(unit string, began time.Time) (stop func() []stateAt) {
	return pollUntilStopped(0, func(seen *[]stateAt) {
		out, err := u.systemctl("show", "-p", "ActiveState", "--value", unit)
		if s := strings.TrimSpace(out); err == nil && (len(*seen) == 0 || (*seen)[len(*seen)-1].State != s) {
			*seen = append(*seen, stateAt{s, time.Since(began)})
		}
	})
}

// reloadSeen is what one reload showed.
type reloadSeen struct {
	took     time.Duration // the command that asked for it
	after    string        // ActiveState when it returned
	states   []stateAt     // ActiveState changes from just before it
	changed  bool          // StateChangeTimestamp moved: the unit left active and came back
	status   string        // StatusText at the end (sent with READY=1)
	newPID   int           // the new worker graceshim logged
	endState string
}

// reload runs ask (a systemctl command that makes graceshim get HUP) and
// waits until graceshim logs the n-th "reloaded" line and the unit is
// active again.
func reloadAndWait(t *testing.T, u *userSystemd, b backend, n int, ask ...string) reloadSeen {
	t.Helper()
	var r reloadSeen
	before := u.Show(t, b.unit, "StateChangeTimestampMonotonic")
	began := time.Now()
	watch := u.watchActiveState(b.unit, began)
	if _, err := u.systemctl(ask...); err != nil {
		watch()
		t.Fatalf("%v\nlog:\n%s", err, u.UnitLog(t, b.unit))
	}
	r.took = time.Since(began)
	r.after = u.Show(t, b.unit, "ActiveState")
	reloaded := regexp.MustCompile(`reloaded: new worker pid (\d+)`)
	var lines [][]string
	if !waitFor(30*time.Second, 10*time.Millisecond, func() bool {
		lines = reloaded.FindAllStringSubmatch(u.UnitLog(t, b.unit), -1)
		return len(lines) >= n && u.Show(t, b.unit, "ActiveState") == "active"
	}) {
		watch()
		t.Fatalf("no %d-th reload confirmed within 30s (%s)\nlog:\n%s", n, strings.Join(ask, " "), u.UnitLog(t, b.unit))
	}
	r.newPID, _ = strconv.Atoi(lines[n-1][1])
	r.states = watch()
	r.changed = u.Show(t, b.unit, "StateChangeTimestampMonotonic") != before
	r.status = u.Show(t, b.unit, "StatusText")
	r.endState = u.Show(t, b.unit, "ActiveState")
	t.Logf("%s: returned after %s with ActiveState %s; ActiveState seen %v; state changed: %v; StatusText %q",
		strings.Join(ask, " "), r.took.Round(time.Millisecond), r.after, r.states, r.changed, r.status)
	return r
}

// TestE2EReloadUnderLoad: HUP under load, first sent by systemd to the
// main pid alone (so that only graceshim's RELOADING=1 can put the unit in
// the reloading state), then through systemctl reload
// (ExecReload=/bin/kill -HUP $MAINPID): graceshim turns HUP into nginx's
// reload, tells systemd RELOADING=1 and READY=1 once nginx has a new
// worker, and not one request or download is lost.
//
// nginx closes idle keep-alive connections when it reloads, and a client
// that sends its next request at that moment sees the connection close
// unanswered (measured here with plain nginx -s reload, no graceshim: one
// wrk read error per keep-alive connection). That race is nginx's and
// HTTP's, not graceshim's, so the clients here avoid it: wrk keeps its
// connections alive to HAProxy, HAProxy closes each connection to nginx
// after the response (option http-server-close, no retries), and the wrk
// that talks to nginx directly sends Connection: close.
func TestE2EReloadUnderLoad(t *testing.T) {
	t.Parallel()
	u := userManager(t)
	b := graceshimBackend(t, u, "reload", rollDrainDelay)
	lb := startHAProxy(t, []lbServer{b.lbServer}, "/", "    option http-server-close\n")
	lb.waitUp(t, b.Name)
	mainBefore := u.MainPID(t, b.unit)
	master, err := b.site.MasterPID()
	if err != nil {
		t.Fatal(err)
	}
	workers0 := childPIDs(master)

	viaLB := startWrk(t, lb.URL+"/small")
	direct := startWrk(t, fmt.Sprintf("http://127.0.0.1:%d/small", b.Port), "-H", "Connection: close")
	d := startDownloads(t, lb.URL+"/big", rollDownloads)

	byKill := reloadAndWait(t, u, b, 1, "kill", "--kill-whom=main", "-s", "HUP", b.unit)
	workers1 := childPIDs(master)
	byReload := reloadAndWait(t, u, b, 2, "reload", b.unit)
	workers2 := childPIDs(master)
	time.Sleep(500 * time.Millisecond) // some load on the newest workers
	d.RequireComplete(t, b.site.FileSize, b.site.SHA256)
	rLB, rDirect := viaLB.Stop(t), direct.Stop(t)
	st, err := lb.stats()
	if err != nil {
		t.Fatal(err)
	}
	log := u.UnitLog(t, b.unit)
	t.Logf("wrk through haproxy: %s", rLB)
	t.Logf("wrk to nginx directly (Connection: close): %s", rDirect)
	t.Logf("downloads through haproxy: %d/%d complete", d.Completed(b.site.FileSize, b.site.SHA256), rollDownloads)
	t.Logf("nginx workers: %v, after HUP %v, after reload %v", workers0, workers1, workers2)
	for _, line := range readLines(log, "reload") {
		t.Logf("log: %s", line)
	}

	for what, r := range map[string]wrkResult{"through haproxy": rLB, "to nginx directly": rDirect} {
		if r.errors() != 0 || r.Requests == 0 {
			t.Errorf("wrk %s during the reloads: %s\n%s", what, r, r.Output)
		}
	}
	for _, col := range []string{"econ", "eresp", "wretr", "wredis", "hrsp_5xx", "srv_abrt"} {
		if n := statInt(st[b.Name], col); n != 0 {
			t.Errorf("haproxy server %s: %s = %d, want 0", b.Name, col, n)
		}
	}
	// The HUP sent by systemd to graceshim alone: no ExecReload ran, so
	// only RELOADING=1 can have moved the unit out of active, and only
	// READY=1 back into it.
	if !byKill.changed {
		t.Errorf("the unit's state did not change on HUP (StateChangeTimestamp unchanged; seen %v): systemd got no RELOADING=1", byKill.states)
	}
	for _, r := range []reloadSeen{byKill, byReload} {
		if r.endState != "active" {
			t.Errorf("ActiveState=%s after the reload, want active (READY=1)", r.endState)
		}
		if want := fmt.Sprintf("reloaded: new worker pid %d", r.newPID); !strings.Contains(r.status, want) {
			t.Errorf("StatusText %q does not say %q: the STATUS sent with READY=1 did not reach systemd", r.status, want)
		}
	}
	// Each confirmation names a worker that came with that reload.
	for _, c := range []struct {
		r             reloadSeen
		before, after []int
	}{{byKill, workers0, workers1}, {byReload, workers1, workers2}} {
		if slices.Contains(c.before, c.r.newPID) || !slices.Contains(c.after, c.r.newPID) {
			t.Errorf("graceshim confirmed the reload with worker %d; nginx's workers were %v before it and %v after", c.r.newPID, c.before, c.after)
		}
	}
	if got := u.MainPID(t, b.unit); got != mainBefore {
		t.Errorf("MainPID went from %d to %d: the reload restarted graceshim", mainBefore, got)
	}
	if got, err := b.site.MasterPID(); err != nil || got != master {
		t.Errorf("nginx master went from %d to %d (%v): the reload restarted nginx", master, got, err)
	}
	if t.Failed() {
		t.Logf("unit log:\n%s", log)
	}
}

// TestE2ERollingParseWrk: the figures the rolling tests judge by are read
// from wrk's output as wrk 4.1 (Debian 12) prints it; an error count the
// parser missed would pass any run.
func TestE2ERollingParseWrk(t *testing.T) {
	tests := []struct {
		name    string
		out     string
		want    wrkResult
		wantErr bool
	}{
		{
			name: "clean",
			out: `Running 2m test @ http://127.0.0.1:42079/small
  2 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   385.75us  392.22us  13.36ms   94.88%
    Req/Sec     2.65k   243.94     2.98k    71.19%
  31119 requests in 5.91s, 6.77MB read
Requests/sec:   5268.11
Transfer/sec:      1.15MB
`,
			want: wrkResult{Requests: 31119},
		},
		{
			name: "errors",
			out: `Running 2m test @ http://127.0.0.1:40151/small
  2 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   410.02us    1.02ms  39.13ms   99.32%
    Req/Sec     2.47k   298.70     2.93k    72.41%
  57882 requests in 11.72s, 12.64MB read
  Socket errors: connect 0, read 2, write 0, timeout 8
  Non-2xx or 3xx responses: 8
Requests/sec:   4938.57
Transfer/sec:      1.08MB
`,
			want: wrkResult{Requests: 57882, Non2xx: 8, Read: 2, Timeout: 8},
		},
		{name: "no summary", out: "unable to connect to 127.0.0.1:1 Connection refused\n", wantErr: true},
		{name: "unreadable errors", out: "  5 requests in 1.00s, 1KB read\n  Socket errors: many\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseWrk(tt.out)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseWrk: error %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			got.Output = ""
			if got != tt.want {
				t.Errorf("parseWrk = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestE2ERollingParseHAProxyStat: HAProxy 2.6's "show stat" CSV.
func TestE2ERollingParseHAProxyStat(t *testing.T) {
	raw := "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,\n" +
		"fe,FRONTEND,,,1,2,4000,3,100,200,0,0,0,,,,,OPEN,\n" +
		"be,a,0,0,5,6,,27870,1,2,,0,,0,0,0,0,UP,\n" +
		"be,b,0,0,0,6,,28374,1,2,,0,,3,1,2,0,DOWN 1/2,\n\n"
	st, err := parseHAProxyStat(raw)
	if err != nil {
		t.Fatal(err)
	}
	if got := st["a"]["status"]; got != "UP" {
		t.Errorf("a status = %q, want UP", got)
	}
	if got := st["b"]["status"]; got != "DOWN 1/2" {
		t.Errorf("b status = %q, want DOWN 1/2", got)
	}
	if got := statInt(st["a"], "scur"); got != 5 {
		t.Errorf("a scur = %d, want 5", got)
	}
	if got := statInt(st["b"], "wretr") + statInt(st["b"], "econ"); got != 5 {
		t.Errorf("b retries + connection errors = %d, want 5", got)
	}
	if _, err := parseHAProxyStat("Unknown command\n"); err == nil {
		t.Errorf("parseHAProxyStat accepted an answer without stats")
	}
}
