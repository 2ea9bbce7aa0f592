package e2e

// End-to-end proof of examples/ansible: the real rolling-deploy.yml, run by
// ansible-playbook from Debian's ansible-core, rolls a release out to a
// fleet of nginx "hosts" behind real HAProxy while wrk and slow downloads
// go through HAProxy all along.
//
// A "host" here is one systemd unit and one port pair (nginx, graceshim's
// health endpoint) under the shared systemd user manager, reached with
// Ansible's local connection and told apart by per-host inventory
// variables. Network namespaces (ip netns + veth, one address each) were
// the other way; they would add nothing the rollout depends on: Ansible
// orders the batches, systemd stops and starts each unit, HAProxy judges
// each server by its own health port, none of which looks at addresses.
// They would add root-only setup, the units would have to join the
// namespaces (NetworkNamespacePath=) and a machine-wide piece of state
// that a crashed test leaves behind; units and ports are what the harness
// already cleans up. The load stays on loopback.
//
// The hosts start with a unit in the style of Debian's nginx.service
// (/lib/systemd/system/nginx.service in Debian 12: Type=forking, PIDFile=,
// ExecStop=start-stop-daemon --retry QUIT/5, TimeoutStopSec=5), which the
// role converts with `graceshim unit --from ... --dropin` after installing
// the .deb that .ci/package-deb builds.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The hosts keep the role's default drain delay (3 s): above the test
// HAProxy's detection time (checks every 200 ms, one failure takes a
// server out; see rolling_test.go), and what examples/nginx's
// fail_timeout is chosen against.
const (
	fleetHosts      = 4
	fleetDownloads  = 8 // slow downloads kept in flight through HAProxy
	fleetDebVersion = "0.0.0~fleet"
	playbookTimeout = 5 * time.Minute
)

// fleetHost is one host of the fleet: a unit, its nginx and its health
// endpoint.
type fleetHost struct {
	Name       string
	Unit       string
	Dir        string // its own files: config, pid file, logs, releases
	Conf       string
	PIDFile    string
	Port       int // nginx
	HealthPort int // graceshim's health endpoint
}

func (h fleetHost) url(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", h.Port, path)
}

// newFleet installs n hosts' units (not started: the first rollout starts
// them) in the style of Debian's nginx.service.
func newFleet(t *testing.T, u *userSystemd, n int) []fleetHost {
	t.Helper()
	nginx := needCmd(t, "nginx")
	ssd := needCmd(t, "start-stop-daemon")
	var hosts []fleetHost
	for i := 1; i <= n; i++ {
		dir := t.TempDir()
		h := fleetHost{
			Name:       fmt.Sprintf("web%d", i),
			Dir:        dir,
			Conf:       filepath.Join(dir, "nginx.conf"),
			PIDFile:    filepath.Join(dir, "nginx.pid"),
			Port:       freePort(t),
			HealthPort: freePort(t),
		}
		h.Unit = unitName(testUnitBase(t) + "-" + h.Name)
		// Debian 12's nginx.service, with this host's config and pid
		// file: nginx daemonizes, systemd follows it through PIDFile=.
		g := `-g 'daemon on; master_process on;'`
		u.InstallUnit(t, h.Unit, fmt.Sprintf(`[Unit]
Description=fleet host %[1]s: nginx on %[2]d, unit in the style of Debian's nginx.service

[Service]
Type=forking
PIDFile=%[3]s
ExecStartPre=%[4]s -t -q -c %[5]s %[6]s
ExecStart=%[4]s -c %[5]s %[6]s
ExecReload=%[4]s -c %[5]s %[6]s -s reload
ExecStop=-%[7]s --quiet --stop --retry QUIT/5 --pidfile %[3]s
TimeoutStopSec=5
KillMode=mixed
`, h.Name, h.Port, h.PIDFile, nginx, h.Conf, g, ssd))
		dropin := filepath.Join(u.unitDir, h.Unit+".d")
		t.Cleanup(func() { os.RemoveAll(dropin) })
		hosts = append(hosts, h)
	}
	return hosts
}

// releaseSrc makes the release's files on the "controller": /small for
// wrk, /big for the slow downloads (one random file for every host and
// release, so every download must hash to the same sum).
func releaseSrc(t *testing.T) (dir string, size int, sum string) {
	t.Helper()
	dir = t.TempDir()
	data := make([]byte, rollFileSize)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(data)
	for name, content := range map[string][]byte{"big": data, "small": []byte("ok\n")} {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir, len(data), hex.EncodeToString(h[:])
}

// fleetVars are one host's inventory variables for rolling-deploy.yml.
func fleetVars(u *userSystemd, h fleetHost, src, deb string, graceshim bool) map[string]any {
	v := map[string]any{
		"ansible_connection":         "local",
		"ansible_python_interpreter": "/usr/bin/python3",
		"graceshim_enabled":          graceshim,
		"graceshim_unit":             h.Unit,
		"graceshim_unit_from":        filepath.Join(u.unitDir, h.Unit),
		"graceshim_dropin":           filepath.Join(u.unitDir, h.Unit+".d", "graceshim.conf"),
		"graceshim_systemd_scope":    "user",
		"graceshim_health_listen":    fmt.Sprintf("127.0.0.1:%d", h.HealthPort),
		"graceshim_drain_timeout":    "30s",
		"graceshim_kill_timeout":     "5s",
		"graceshim_deb":              deb,
		"app_release_src":            src,
		"app_root":                   filepath.Join(h.Dir, "www"),
		"app_conf":                   h.Conf,
		// The test's dirs are root's own (0700): workers must be root.
		"app_user":         "root",
		"app_pid":          h.PIDFile,
		"app_log_dir":      h.Dir,
		"app_access_log":   "off",
		"app_listen":       fmt.Sprintf("127.0.0.1:%d", h.Port),
		"app_url":          h.url(""),
		"app_extra_server": "location = /big { limit_rate " + rollRate + "; }",
		// HAProxy's backend in startHAProxy is "be"; its servers are
		// named after the hosts.
		"rolling_lb_backend": "be",
	}
	if !graceshim {
		// No health endpoint: the rollout and HAProxy ask nginx itself.
		v["app_health_url"] = h.url("/small")
	}
	return v
}

// hostDeb is the package the role installs on h: the hosts share this
// machine's dpkg, so only the first installs it (two dpkg -i at once fail
// on dpkg's lock, which on real hosts are two).
func hostDeb(h fleetHost, deb string) string {
	if h.Name != "web1" {
		return ""
	}
	return deb
}

// writeInventory writes a YAML inventory (JSON is YAML) with the hosts in
// group web, in order, and returns its path.
func writeInventory(t *testing.T, hosts []fleetHost, vars func(fleetHost) map[string]any) string {
	t.Helper()
	hv := map[string]any{}
	for _, h := range hosts {
		hv[h.Name] = vars(h)
	}
	inv := map[string]any{"all": map[string]any{"children": map[string]any{"web": map[string]any{"hosts": hv}}}}
	b, err := json.MarshalIndent(inv, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "inventory.yml")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// ansibleEnv is the environment of every ansible command: temp dirs of
// the test's own, no colours, and the user manager's runtime dir for
// the systemd module's scope: user.
func ansibleEnv(t *testing.T) []string {
	tmp := t.TempDir()
	return append(os.Environ(),
		"XDG_RUNTIME_DIR="+userRuntimeDir,
		"ANSIBLE_LOCAL_TEMP="+filepath.Join(tmp, "local"),
		"ANSIBLE_REMOTE_TEMP="+filepath.Join(tmp, "remote"),
		"ANSIBLE_NOCOLOR=1",
		"ANSIBLE_FORCE_COLOR=0",
		"ANSIBLE_RETRY_FILES_ENABLED=0",
		"ANSIBLE_HOST_KEY_CHECKING=0",
	)
}

// ansibleDir is where the example lives; the commands run there, as its
// README says.
var ansibleDir = repoPath("examples", "ansible")

// runPlaybook runs rolling-deploy.yml against inv and returns its output
// and exit code (a hang guard ends it after playbookTimeout).
func runPlaybook(t *testing.T, inv string, extra ...string) (string, int) {
	t.Helper()
	bin := needCmd(t, "ansible-playbook")
	ctx, cancel := context.WithTimeout(context.Background(), playbookTimeout)
	defer cancel()
	args := append([]string{"-i", inv, "rolling-deploy.yml"}, extra...)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = ansibleDir
	cmd.Env = ansibleEnv(t)
	began := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("ansible-playbook %s took %s", strings.Join(extra, " "), time.Since(began).Round(time.Millisecond))
	if ctx.Err() != nil {
		t.Fatalf("ansible-playbook %s: no end within %s:\n%s", strings.Join(args, " "), playbookTimeout, out)
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("ansible-playbook: %v", err)
	}
	return string(out), code
}

// recapRE is one line of PLAY RECAP: host and its counts.
var recapRE = regexp.MustCompile(`(?m)^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)`)

// recap returns PLAY RECAP's failed count per host that ran at all.
func recap(out string) map[string]int {
	m := map[string]int{}
	for _, r := range recapRE.FindAllStringSubmatch(out, -1) {
		n, _ := strconv.Atoi(r[5])
		m[r[1]] = n
	}
	return m
}

// served returns what the host answers on /RELEASE ("" when it does not).
func served(h fleetHost) string {
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", h.Port), 5*time.Second)
	if err != nil {
		return ""
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET /RELEASE HTTP/1.0\r\nHost: x\r\n\r\n")
	var b bytes.Buffer
	b.ReadFrom(conn)
	head, body, ok := strings.Cut(b.String(), "\r\n\r\n")
	if !ok || !strings.HasPrefix(head, "HTTP/1.1 200") {
		return ""
	}
	return strings.TrimSpace(body)
}

// --- slow downloads all along -----------------------------------------------

// dlStream keeps n curl downloads of one URL in flight until Stop: each
// worker starts the next download as soon as its last one ends, so
// whenever a host stops some downloads are on it.
type dlStream struct {
	stop    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
	mu      sync.Mutex // guards results
	results []dlResult
}

// dlStreamMax bounds the downloads of one worker (a guard: a rollout
// lasts a few downloads' time).
const dlStreamMax = 40

func streamDownloads(t *testing.T, url string, n int) *dlStream {
	t.Helper()
	curl := needCmd(t, "curl")
	dir := t.TempDir()
	s := &dlStream{stop: make(chan struct{})}
	for i := 0; i < n; i++ {
		s.wg.Add(1)
		go func(i int) {
			defer s.wg.Done()
			for k := 0; k < dlStreamMax; k++ {
				select {
				case <-s.stop:
					return
				default:
				}
				r := fetchOnce(curl, url, filepath.Join(dir, fmt.Sprintf("dl-%d-%d", i, k)))
				s.mu.Lock()
				s.results = append(s.results, r)
				s.mu.Unlock()
			}
		}(i)
	}
	t.Cleanup(func() { s.Stop() })
	return s
}

// fetchOnce downloads url to file with curl and returns how it went; the
// file is removed once hashed.
func fetchOnce(curl, url, file string) dlResult {
	var out, errb bytes.Buffer
	cmd := exec.Command(curl, "-sS", "--no-keepalive", "--noproxy", "*",
		"--max-time", strconv.Itoa(int(downloadMaxTime/time.Second)),
		"-o", file, "-w", "%{http_code} %{size_download}", url)
	cmd.Stdout, cmd.Stderr = &out, &errb
	var r dlResult
	if err := cmd.Run(); err != nil {
		r.Err = fmt.Errorf("%v: %s", err, strings.TrimSpace(errb.String()))
	}
	r.End = time.Now()
	if f := strings.Fields(out.String()); len(f) > 0 {
		r.Code, _ = strconv.Atoi(f[0])
	}
	if b, err := os.ReadFile(file); err == nil {
		r.Size = len(b)
		sum := sha256.Sum256(b)
		r.SHA256 = hex.EncodeToString(sum[:])
	}
	os.Remove(file)
	return r
}

// Stop starts no more downloads, waits for those in flight (bounded by
// curl's --max-time) and returns every result.
func (s *dlStream) Stop() []dlResult {
	s.once.Do(func() { close(s.stop) })
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]dlResult(nil), s.results...)
}

// --- HAProxy's view of the servers ------------------------------------------

// lbChange is a server's status as HAProxy showed it, from a time on.
type lbChange struct {
	Status string
	At     time.Time
	Scur   int // the server's current sessions at that moment
}

// watchLB polls HAProxy's stats every 20 ms until stop; stop returns each
// server's status changes in order.
func watchLB(lb *haproxyLB, names []string) (stop func() map[string][]lbChange) {
	return pollUntilStopped(20*time.Millisecond, func(seen *map[string][]lbChange) {
		if *seen == nil {
			*seen = map[string][]lbChange{}
		}
		st, err := lb.stats()
		if err != nil {
			return
		}
		now := time.Now()
		for _, n := range names {
			s := st[n]["status"]
			ch := (*seen)[n]
			if len(ch) == 0 || ch[len(ch)-1].Status != s {
				(*seen)[n] = append(ch, lbChange{Status: s, At: now, Scur: statInt(st[n], "scur")})
			}
		}
	})
}

// downSpans returns when the server left UP and when it was UP again,
// for each time it left.
func downSpans(ch []lbChange) [][2]time.Time {
	var spans [][2]time.Time
	out := false
	for _, c := range ch {
		switch {
		case c.Status == "UP" && out:
			spans[len(spans)-1][1] = c.At
			out = false
		case c.Status != "UP" && !out:
			spans = append(spans, [2]time.Time{c.At, {}})
			out = true
		}
	}
	return spans
}

// --- the scenarios -----------------------------------------------------------

// rolloutSeen is what one rollout under load showed.
type rolloutSeen struct {
	out       string
	code      int
	wrk       wrkResult
	downloads []dlResult
	lb        map[string][]lbChange
	stats     map[string]map[string]string
}

// rolloutUnderLoad runs the playbook with wrk and slow downloads through
// lb from before it starts until it ends (and the downloads in flight
// then have ended). The reload lock is held shared, as a stop holds it:
// no other test's daemon-reload during the rollout's stops.
func rolloutUnderLoad(t *testing.T, lb *haproxyLB, hosts []fleetHost, inv string, extra ...string) rolloutSeen {
	t.Helper()
	var names []string
	for _, h := range hosts {
		names = append(names, h.Name)
	}
	lb.waitUp(t, names...)
	w := startWrk(t, lb.URL+"/small")
	if !waitFor(30*time.Second, 20*time.Millisecond, func() bool {
		st, err := lb.stats()
		return err == nil && statInt(st["FRONTEND"], "req_tot") > 100
	}) {
		t.Fatalf("no load through haproxy:\n%s", w.out)
	}
	d := streamDownloads(t, lb.URL+"/big", fleetDownloads)
	// Every worker has a download going before the rollout starts.
	if !waitFor(30*time.Second, 20*time.Millisecond, func() bool {
		st, err := lb.stats()
		return err == nil && statInt(st["FRONTEND"], "scur") >= fleetDownloads
	}) {
		t.Fatalf("the downloads did not start")
	}
	stopWatch := watchLB(lb, names)
	unlock, err := lockReload(syscall.LOCK_SH)
	if err != nil {
		t.Fatal(err)
	}
	var r rolloutSeen
	r.out, r.code = runPlaybook(t, inv, extra...)
	unlock()
	r.downloads = d.Stop()
	r.wrk = w.Stop(t)
	r.lb = stopWatch()
	if r.stats, err = lb.stats(); err != nil {
		t.Fatal(err)
	}
	t.Logf("ansible-playbook %s: exit %d", strings.Join(extra, " "), r.code)
	t.Logf("wrk through haproxy: %s", r.wrk)
	fe := r.stats["FRONTEND"]
	t.Logf("haproxy frontend: %s requests, %s answered 5xx", fe["req_tot"], fe["hrsp_5xx"])
	for _, n := range names {
		row := r.stats[n]
		t.Logf("haproxy server %s: %s requests, 5xx %s, connection errors %s, response errors %s, retries %s, aborted by server %s; statuses %v",
			n, row["stot"], row["hrsp_5xx"], row["econ"], row["eresp"], row["wretr"], row["srv_abrt"], lbStatuses(r.lb[n]))
	}
	return r
}

func lbStatuses(ch []lbChange) []string {
	var s []string
	for _, c := range ch {
		s = append(s, fmt.Sprintf("%s(scur %d)", c.Status, c.Scur))
	}
	return s
}

// cutDownloads lists the downloads that were not complete and intact.
func cutDownloads(res []dlResult, size int, sum string) []string {
	var bad []string
	for i, r := range res {
		if !r.ok(size, sum) {
			bad = append(bad, fmt.Sprintf("download %d: %s", i, r))
		}
	}
	return bad
}

// losses lists every failed or non-2xx request, every cut download, and
// every error HAProxy hid by retrying, and any server not UP at the end.
func losses(r rolloutSeen, hosts []fleetHost, size int, sum string) []string {
	var bad []string
	if r.wrk.errors() != 0 || r.wrk.Requests == 0 {
		bad = append(bad, fmt.Sprintf("wrk through haproxy: %s", r.wrk))
	}
	if cut := cutDownloads(r.downloads, size, sum); len(cut) > 0 || len(r.downloads) == 0 {
		bad = append(bad, fmt.Sprintf("%d of %d downloads were cut:\n  %s", len(cut), len(r.downloads), strings.Join(cut, "\n  ")))
	}
	for _, h := range hosts {
		row := r.stats[h.Name]
		for _, col := range []string{"econ", "eresp", "wretr", "wredis", "hrsp_5xx", "srv_abrt"} {
			if n := statInt(row, col); n != 0 {
				bad = append(bad, fmt.Sprintf("haproxy server %s: %s = %d, want 0", h.Name, col, n))
			}
		}
		if s := row["status"]; s != "UP" {
			bad = append(bad, fmt.Sprintf("haproxy server %s is %q at the end, want UP", h.Name, s))
		}
	}
	return bad
}

// requireNoLoss fails t for anything losses lists.
func requireNoLoss(t *testing.T, r rolloutSeen, hosts []fleetHost, size int, sum string) {
	t.Helper()
	t.Logf("downloads through haproxy: %d, %d cut", len(r.downloads), len(cutDownloads(r.downloads, size, sum)))
	for _, l := range losses(r, hosts, size, sum) {
		t.Error(l)
	}
	if t.Failed() {
		t.Logf("wrk output:\n%s", r.wrk.Output)
	}
}

// stopSummaryRE is graceshim's last line of a stop (supervisor/stop.go,
// summary).
// A server that exits before the first count says "connections not
// counted": nothing was left to drain.
var stopSummaryRE = regexp.MustCompile(`stop took \S+ \(([^)]*)\); (?:(\d+) connections? closed while draining|connections not counted)`)

// TestE2EFleetRollout runs examples/ansible's rolling-deploy.yml for real:
// the role installs the .deb and converts each host's unit, then a release
// is rolled out 2 hosts at a time under load through HAProxy (nothing
// lost, every host on the new release), then a release that is broken on
// one host (the rollout stops there, no host down, nothing lost), then a
// release behind nginx with examples/nginx's settings (nothing lost), and
// the same rollout over plain units as the control (it loses requests).
func TestE2EFleetRollout(t *testing.T) {
	t.Parallel()
	u := userManager(t)
	needCmd(t, "ansible-playbook")
	needCmd(t, "dpkg")
	if out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", "graceshim").Output(); err == nil && strings.Contains(string(out), "installed") {
		t.Skip("a graceshim package is installed on this machine already; not replacing it")
	}
	src, size, sum := releaseSrc(t)

	t.Run("graceshim", func(t *testing.T) {
		// The role installs this package; it is removed at the end.
		outdir := t.TempDir()
		build := exec.Command("bash", repoPath(".ci/package-deb"), fleetDebVersion, outdir)
		began := time.Now()
		out, err := build.Output()
		t.Logf(".ci/package-deb took %s", time.Since(began).Round(time.Millisecond))
		if err != nil {
			t.Fatalf(".ci/package-deb: %v\n%s", err, out)
		}
		deb := strings.TrimSpace(string(out))
		t.Cleanup(func() {
			if out, err := exec.Command("dpkg", "--purge", "graceshim").CombinedOutput(); err != nil {
				t.Errorf("dpkg --purge graceshim: %v\n%s", err, out)
			}
			os.Remove(filepath.Join("/var/cache", filepath.Base(deb)))
		})
		hosts := newFleet(t, u, fleetHosts)
		inv := writeInventory(t, hosts, func(h fleetHost) map[string]any { return fleetVars(u, h, src, hostDeb(h, deb), true) })

		// The first deployment: install, convert, start on v1. It
		// daemon-reloads, so no other test's stop may run meanwhile.
		unlock, err := lockReload(syscall.LOCK_EX)
		if err != nil {
			t.Fatal(err)
		}
		out1, code := runPlaybook(t, inv, "-e", "app_release=v1")
		unlock()
		if code != 0 {
			t.Fatalf("the first deployment failed (exit %d):\n%s", code, out1)
		}
		if st, err := exec.Command("dpkg-query", "-W", "-f=${Version}", "graceshim").Output(); err != nil || string(st) != fleetDebVersion {
			t.Errorf("graceshim package after the first deployment: %q (%v), want version %s", st, err, fleetDebVersion)
		}
		for _, h := range hosts {
			if got := served(h); got != "v1" {
				t.Errorf("%s serves release %q after the first deployment, want v1", h.Name, got)
			}
			cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", u.MainPID(t, h.Unit)))
			if args := strings.Split(string(cmdline), "\x00"); args[0] != "/usr/bin/graceshim" {
				t.Errorf("%s's main process is %q, want the packaged /usr/bin/graceshim", h.Name, args)
			}
			if d := u.Show(t, h.Unit, "DropInPaths"); !strings.Contains(d, "graceshim.conf") {
				t.Errorf("%s has drop-ins %q, want graceshim.conf", h.Name, d)
			}
		}
		if t.Failed() {
			t.Fatalf("first deployment:\n%s", out1)
		}

		var servers []lbServer
		for _, h := range hosts {
			servers = append(servers, lbServer{Name: h.Name, Port: h.Port, CheckPort: h.HealthPort})
		}
		lb := startHAProxy(t, servers, "/", "    stats enable\n    stats uri /haproxy-stats\n")
		logMark := map[string]int{}
		for _, h := range hosts {
			logMark[h.Name] = len(u.UnitLog(t, h.Unit))
		}

		r := rolloutUnderLoad(t, lb, hosts, inv, "-e", "app_release=v2", "-e", "rolling_lb_stats_url="+lb.URL+"/haproxy-stats")
		if r.code != 0 {
			t.Errorf("the rollout of v2 failed (exit %d):\n%s", r.code, r.out)
		}
		requireNoLoss(t, r, hosts, size, sum)
		// Each host stopped once under graceshim, without escalation; its
		// stop summary counts the connections that closed after the
		// graceful signal. With a 3 s drain delay and 6 s downloads that
		// all started together, a host's downloads may all end before it
		// (measured: 0 on every host in one run), so the proof that the
		// load met each stop is HAProxy's count of the sessions on the
		// server when it took it out, judged over the fleet below.
		drained := 0
		for _, h := range hosts {
			if got := served(h); got != "v2" {
				t.Errorf("%s serves release %q after the rollout, want v2", h.Name, got)
			}
			log := u.UnitLog(t, h.Unit)[logMark[h.Name]:]
			m := stopSummaryRE.FindAllStringSubmatch(log, -1)
			switch {
			case len(m) != 1:
				t.Errorf("%s: %d stops under graceshim during the rollout, want 1:\n%s", h.Name, len(m), log)
			case m[0][1] != "no escalation":
				t.Errorf("%s: the stop escalated: %s", h.Name, m[0][0])
			default:
				n, _ := strconv.Atoi(m[0][2])
				drained += n
				t.Logf("%s: %s", h.Name, m[0][0])
			}
		}
		onAtDown := 0
		for _, h := range hosts {
			for _, c := range r.lb[h.Name] {
				if c.Status != "UP" {
					onAtDown += c.Scur
					break
				}
			}
		}
		t.Logf("connections drained after the graceful signal: %d; sessions on the servers when HAProxy took them out: %d", drained, onAtDown)
		if onAtDown == 0 {
			t.Errorf("no server had a session when HAProxy took it out: the load did not meet the rollout")
		}
		// Two at a time, and the second batch stops only once HAProxy
		// sends the first one traffic again.
		var batch1Back time.Time
		for i, h := range hosts {
			spans := downSpans(r.lb[h.Name])
			if len(spans) != 1 || spans[0][1].IsZero() {
				t.Errorf("%s left HAProxy's pool %d times (statuses %v), want once and back", h.Name, len(spans), lbStatuses(r.lb[h.Name]))
				continue
			}
			if i < 2 && spans[0][1].After(batch1Back) {
				batch1Back = spans[0][1]
			}
		}
		// Both times come from watchLB's snapshots, which read every
		// server at once: a second-batch host first seen out in the very
		// snapshot that first saw the first batch back left after it (the
		// snapshot shows them UP), so only an earlier time breaks serial.
		for _, h := range hosts[2:] {
			if spans := downSpans(r.lb[h.Name]); len(spans) == 1 && spans[0][0].Before(batch1Back) {
				t.Errorf("%s left the pool at %s, before the first batch was back (%s): serial 2 not kept",
					h.Name, spans[0][0].Format("15:04:05.000"), batch1Back.Format("15:04:05.000"))
			}
		}
		if t.Failed() {
			t.Logf("ansible-playbook output:\n%s", r.out)
			return
		}

		t.Run("broken", func(t *testing.T) {
			// v3 with a directive nginx does not know on web2, one host
			// at a time: web1 gets v3, web2 fails before its restart
			// (validate: nginx -t) and the rollout ends there.
			broken := hosts[1].Name
			inv := writeInventory(t, hosts, func(h fleetHost) map[string]any {
				v := fleetVars(u, h, src, hostDeb(h, deb), true)
				if h.Name == broken {
					v["app_extra_server"] = v["app_extra_server"].(string) + "\nthis_is_not_an_nginx_directive on;"
				}
				return v
			})
			before := map[string]int{}
			for _, h := range hosts {
				before[h.Name] = u.MainPID(t, h.Unit)
			}
			r := rolloutUnderLoad(t, lb, hosts, inv, "-e", "app_release=v3", "-e", "rolling_batch=1",
				"-e", "rolling_lb_stats_url="+lb.URL+"/haproxy-stats")
			if r.code == 0 {
				t.Errorf("the rollout with a broken config on %s exited 0", broken)
			}
			if !strings.Contains(r.out, "release v3 failed on "+broken) {
				t.Errorf("the playbook did not stop at %s with its message", broken)
			}
			ran := recap(r.out)
			want := map[string]string{"web1": "v3", "web2": "v2", "web3": "v2", "web4": "v2"}
			for _, h := range hosts {
				if got := served(h); got != want[h.Name] {
					t.Errorf("%s serves %q after the broken rollout, want %s", h.Name, got, want[h.Name])
				}
				pid := u.MainPID(t, h.Unit)
				switch h.Name {
				case "web1":
					if pid == before[h.Name] {
						t.Errorf("web1 was not restarted")
					}
				default:
					if pid != before[h.Name] || u.Show(t, h.Unit, "ActiveState") != "active" {
						t.Errorf("%s was touched: main pid %d -> %d, %s", h.Name, before[h.Name], pid, u.Show(t, h.Unit, "ActiveState"))
					}
				}
			}
			if ran["web1"] != 0 || ran[broken] != 1 {
				t.Errorf("PLAY RECAP failed counts %v, want web1 0 and %s 1", ran, broken)
			}
			for _, h := range hosts[2:] {
				if _, ok := ran[h.Name]; ok {
					t.Errorf("%s ran after the broken host: PLAY RECAP %v", h.Name, ran)
				}
			}
			requireNoLoss(t, r, hosts, size, sum)
			if t.Failed() {
				t.Logf("ansible-playbook output:\n%s", r.out)
			}
		})

		t.Run("nginx balancer", func(t *testing.T) {
			// The same hosts behind nginx with examples/nginx's settings
			// (passive checks: nothing asks the health endpoint), v4 two
			// at a time, no balancer to wait for.
			url := startNginxLB(t, hosts)
			w := startWrk(t, url+"/small")
			d := streamDownloads(t, url+"/big", fleetDownloads)
			unlock, err := lockReload(syscall.LOCK_SH)
			if err != nil {
				t.Fatal(err)
			}
			out, code := runPlaybook(t, inv, "-e", "app_release=v4")
			unlock()
			downloads := d.Stop()
			res := w.Stop(t)
			t.Logf("wrk through nginx: %s", res)
			cut := cutDownloads(downloads, size, sum)
			t.Logf("downloads through nginx: %d, %d cut", len(downloads), len(cut))
			if code != 0 {
				t.Errorf("the rollout of v4 failed (exit %d):\n%s", code, out)
			}
			if res.errors() != 0 || res.Requests == 0 {
				t.Errorf("wrk through the nginx balancer during the rollout: %s\n%s", res, res.Output)
			}
			if len(cut) > 0 || len(downloads) == 0 {
				t.Errorf("%d of %d downloads were cut:\n  %s", len(cut), len(downloads), strings.Join(cut, "\n  "))
			}
			for _, h := range hosts {
				if got := served(h); got != "v4" {
					t.Errorf("%s serves release %q after the rollout, want v4", h.Name, got)
				}
			}
		})
	})

	t.Run("plain units", func(t *testing.T) {
		// The control: the same hosts' units left as Debian ships them
		// (QUIT for 5 s, then TERM; nginx closes its listeners at once),
		// HAProxy checking nginx itself. The same rollout loses requests
		// or downloads, so the graceshim rollout can fail.
		hosts := newFleet(t, u, fleetHosts)
		inv := writeInventory(t, hosts, func(h fleetHost) map[string]any { return fleetVars(u, h, src, "", false) })
		out1, code := runPlaybook(t, inv, "-e", "app_release=v1")
		if code != 0 {
			t.Fatalf("the first deployment failed (exit %d):\n%s", code, out1)
		}
		var servers []lbServer
		for _, h := range hosts {
			servers = append(servers, lbServer{Name: h.Name, Port: h.Port})
		}
		lb := startHAProxy(t, servers, "/small", "    stats enable\n    stats uri /haproxy-stats\n")
		r := rolloutUnderLoad(t, lb, hosts, inv, "-e", "app_release=v2", "-e", "rolling_lb_stats_url="+lb.URL+"/haproxy-stats")
		if r.code != 0 {
			t.Errorf("the rollout of v2 failed (exit %d):\n%s", r.code, r.out)
		}
		// The criteria the graceshim rollouts are held to: errors the
		// clients saw and errors HAProxy hid by retrying a refused
		// connection both count.
		lost := losses(r, hosts, size, sum)
		t.Logf("downloads through haproxy: %d, %d cut; losses:\n  %s", len(r.downloads), len(cutDownloads(r.downloads, size, sum)), strings.Join(lost, "\n  "))
		if len(lost) == 0 {
			t.Errorf("the rollout over plain units lost nothing (%s; %d downloads): the scenario no longer tells graceshim from a plain unit",
				r.wrk, len(r.downloads))
		}
		for _, h := range hosts {
			if got := served(h); got != "v2" {
				t.Errorf("%s serves release %q after the rollout, want v2", h.Name, got)
			}
		}
	})
}

// TestE2EFleetPlaybookLint: ansible-playbook --syntax-check and
// ansible-lint (Debian 12's 6.13, production profile, offline) pass on
// the playbook and the role, and the same lint fails a copy of the role
// with a task written the way the role avoids (a bare module name, a
// command that always reports a change), so the lint can fail.
func TestE2EFleetPlaybookLint(t *testing.T) {
	t.Parallel()
	playbook := needCmd(t, "ansible-playbook")
	lint := needCmd(t, "ansible-lint")
	run := func(dir, bin string, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Dir = dir
		cmd.Env = ansibleEnv(t)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run(ansibleDir, playbook, "-i", "inventory.ini", "--syntax-check", "rolling-deploy.yml"); err != nil {
		t.Errorf("ansible-playbook --syntax-check: %v\n%s", err, out)
	}
	lintArgs := []string{"--offline", "--nocolor", "-p", "rolling-deploy.yml", "roles/graceshim"}
	if out, err := run(ansibleDir, lint, lintArgs...); err != nil {
		t.Errorf("ansible-lint: %v\n%s", err, out)
	}

	// The control: the example copied, one bad task added to the role.
	dir := t.TempDir()
	if out, err := exec.Command("cp", "-a", ansibleDir+"/.", dir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	tasks := filepath.Join(dir, "roles", "graceshim", "tasks", "main.yml")
	f, err := os.OpenFile(tasks, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString("\n- name: Ask graceshim its version\n  command: graceshim --version\n")
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	out, err := run(dir, lint, lintArgs...)
	if err == nil {
		t.Errorf("ansible-lint passed a role with a bare 'command:' that always reports a change:\n%s", out)
	}
	for _, rule := range []string{"fqcn", "no-changed-when"} {
		if !strings.Contains(out, rule) {
			t.Errorf("ansible-lint did not name %s:\n%s", rule, out)
		}
	}
}

// haproxyTime reads an HAProxy time ("1s", "200ms", "2000": milliseconds
// without a unit, configuration manual section 2.5).
func haproxyTime(s string) (time.Duration, error) {
	if n, err := strconv.Atoi(s); err == nil {
		return time.Duration(n) * time.Millisecond, nil
	}
	return time.ParseDuration(s)
}

// haproxyProblems checks an HAProxy config against graceshim's drain
// delay and health port: health checks ask the health endpoint, and a
// server leaves the pool before the drain delay ends (inter + (fall - 1)
// x fastinter + timeout check, with HAProxy's defaults inter 2s, fall 3,
// fastinter = inter, timeout check = inter), and nothing cuts the
// sessions of a server marked down.
func haproxyProblems(cfg string, delay time.Duration, healthPort string) []string {
	var bad []string
	// Comments say what the settings are not.
	cfg = regexp.MustCompile(`(?m)#.*$`).ReplaceAllString(cfg, "")
	word := func(line, key, def string) string {
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == key {
				return f[i+1]
			}
		}
		return def
	}
	ds := regexp.MustCompile(`(?m)^\s*default-server\s.*$`).FindString(cfg)
	if ds == "" {
		return []string{"no default-server line with the check settings"}
	}
	if !regexp.MustCompile(`(?m)^\s*option httpchk GET /`).MatchString(cfg) {
		bad = append(bad, "no option httpchk GET: HAProxy would not ask the health endpoint")
	}
	if p := word(ds, "port", ""); p != healthPort {
		bad = append(bad, fmt.Sprintf("checks go to port %q, graceshim's health endpoint is on %s", p, healthPort))
	}
	if strings.Contains(cfg, "shutdown-sessions") {
		bad = append(bad, "on-marked-down shutdown-sessions cuts the requests graceshim drains")
	}
	inter, err1 := haproxyTime(word(ds, "inter", "2000"))
	fast, err2 := haproxyTime(word(ds, "fastinter", word(ds, "inter", "2000")))
	fall, err3 := strconv.Atoi(word(ds, "fall", "3"))
	tc := inter
	if m := regexp.MustCompile(`(?m)^\s*timeout check (\S+)`).FindStringSubmatch(cfg); m != nil {
		var err error
		if tc, err = haproxyTime(m[1]); err != nil {
			bad = append(bad, err.Error())
		}
	}
	if err := errors.Join(err1, err2, err3); err != nil {
		return append(bad, err.Error())
	}
	if worst := inter + time.Duration(fall-1)*fast + tc; worst >= delay {
		bad = append(bad, fmt.Sprintf("a stopping server leaves the pool up to %s after its 503 begins (inter %s + %d x fastinter %s + timeout check %s), not inside the drain delay %s",
			worst, inter, fall-1, fast, tc, delay))
	}
	return bad
}

// TestE2EFleetLoadBalancerExamples: examples/haproxy/load-balancer.cfg and
// examples/nginx/load-balancer.conf are valid for the Debian 12 daemons,
// and their numbers fit the role's defaults: HAProxy takes a stopping
// server out inside graceshim's drain delay, on graceshim's health port;
// nginx tries enough servers for a batch of the rollout.
func TestE2EFleetLoadBalancerExamples(t *testing.T) {
	t.Parallel()
	haproxy := needCmd(t, "haproxy")
	nginx := needCmd(t, "nginx")
	read := func(elem ...string) string {
		b, err := os.ReadFile(repoPath(elem...))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	hcfg := repoPath("examples", "haproxy", "load-balancer.cfg")
	if out, err := exec.Command(haproxy, "-c", "-f", hcfg).CombinedOutput(); err != nil {
		t.Errorf("haproxy -c -f %s: %v\n%s", hcfg, err, out)
	}
	defaults := read("examples", "ansible", "roles", "graceshim", "defaults", "main.yml")
	roleVar := func(name string) string {
		m := regexp.MustCompile(`(?m)^` + name + `: "?([^"\n]*)"?$`).FindStringSubmatch(defaults)
		if m == nil {
			t.Fatalf("the role's defaults lack %s", name)
		}
		return m[1]
	}
	delay, err := time.ParseDuration(roleVar("graceshim_drain_delay"))
	if err != nil {
		t.Fatal(err)
	}
	_, healthPort, err := net.SplitHostPort(roleVar("graceshim_health_listen"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := read("examples", "haproxy", "load-balancer.cfg")
	for _, p := range haproxyProblems(cfg, delay, healthPort) {
		t.Errorf("load-balancer.cfg with the role's --drain-delay=%s: %s", delay, p)
	}
	// The check can fail: slower checks, a longer fall, the wrong port,
	// shut-down sessions.
	for _, tc := range []struct{ from, to string }{
		{"inter 1s", "inter 2s"},
		{"fall 1", "fall 3"},
		{"timeout check 1s", "timeout check 5s"},
		{"port 8081", "port 80"},
		{"rise 2", "rise 2 on-marked-down shutdown-sessions"},
	} {
		lines := strings.Split(cfg, "\n")
		changed := false
		for i, l := range lines {
			if !strings.HasPrefix(strings.TrimSpace(l), "#") && strings.Contains(l, tc.from) {
				lines[i], changed = strings.Replace(l, tc.from, tc.to, 1), true
				break
			}
		}
		if !changed {
			t.Errorf("load-balancer.cfg has no setting %q", tc.from)
			continue
		}
		if p := haproxyProblems(strings.Join(lines, "\n"), delay, healthPort); len(p) == 0 {
			t.Errorf("%q instead of %q passed the check", tc.to, tc.from)
		}
	}

	// nginx: the snippet in an http block, as /etc/nginx/conf.d/ has it.
	dir := t.TempDir()
	snippet, err := filepath.Abs(repoPath("examples", "nginx", "load-balancer.conf"))
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "nginx.conf")
	main := fmt.Sprintf("pid %[1]s/nginx.pid;\nerror_log %[1]s/error.log;\nevents {}\nhttp {\n    include %[2]s;\n}\n", dir, snippet)
	if err := os.WriteFile(conf, []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(nginx, "-t", "-q", "-c", conf).CombinedOutput(); err != nil {
		t.Errorf("nginx -t with load-balancer.conf: %v\n%s", err, out)
	}
	ncfg := read("examples", "nginx", "load-balancer.conf")
	playbook := read("examples", "ansible", "rolling-deploy.yml")
	m := regexp.MustCompile(`serial: "\{\{ rolling_batch \| default\((\d+)\) \}\}"`).FindStringSubmatch(playbook)
	if m == nil {
		t.Fatalf("rolling-deploy.yml has no default batch size")
	}
	batch, _ := strconv.Atoi(m[1])
	if m := regexp.MustCompile(`(?m)^\s*proxy_next_upstream_tries (\d+);`).FindStringSubmatch(ncfg); m == nil {
		t.Errorf("load-balancer.conf sets no proxy_next_upstream_tries")
	} else if n, _ := strconv.Atoi(m[1]); n <= batch {
		t.Errorf("proxy_next_upstream_tries %d: a request can meet the %d hosts of a batch that restart before a live one", n, batch)
	}
	if !regexp.MustCompile(`(?m)^\s*proxy_next_upstream error`).MatchString(ncfg) {
		t.Errorf("load-balancer.conf does not pass a refused connection to the next server (proxy_next_upstream error)")
	}
	// A server out of nginx's choice comes back once more than
	// fail_timeout (whole seconds) has passed since its last failure: by
	// then the next batch must not have closed its listeners, which
	// happens a drain delay after its stop begins at the earliest.
	fts := regexp.MustCompile(`(?m)^\s*server \S+ .*fail_timeout=(\d+)s;`).FindAllStringSubmatch(ncfg, -1)
	if len(fts) == 0 {
		t.Errorf("load-balancer.conf's servers set no fail_timeout in seconds (nginx's default is 10s)")
	}
	for _, m := range fts {
		if ft, _ := strconv.Atoi(m[1]); time.Duration(ft+1)*time.Second >= delay {
			t.Errorf("fail_timeout=%ss: a server of the last batch may still be out of nginx's choice when the next batch closes its listeners (drain delay %s): every server out means 502", m[1], delay)
		}
	}
	if regexp.MustCompile(`(?m)^\s*keepalive \d+;`).MatchString(ncfg) {
		t.Errorf("load-balancer.conf keeps upstream connections alive: a POST on one the backend closes at QUIT gets a 502")
	}
}

// --- Kubernetes ---------------------------------------------------------------

// yamlDocs parses every document of a YAML file with a real YAML parser
// (python3-yaml, as ansible-core has it) into Go values.
func yamlDocs(t *testing.T, path string) []any {
	t.Helper()
	py := needCmd(t, "python3")
	cmd := exec.Command(py, "-c", "import sys, json, yaml; json.dump(list(yaml.safe_load_all(sys.stdin)), sys.stdout)")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd.Stdin = f
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cannot parse %s as YAML: %v\n%s", path, err, errb.String())
	}
	var docs []any
	if err := json.Unmarshal(out, &docs); err != nil {
		t.Fatal(err)
	}
	return docs
}

// dig walks maps by key.
func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func asList(v any) []any { l, _ := v.([]any); return l }

// num reads a JSON number, or def when absent.
func num(v any, def float64) float64 {
	if f, ok := v.(float64); ok {
		return f
	}
	return def
}

// k8sProblems checks the pod templates of a manifest for what goes wrong
// when a pod running graceshim is stopped (Kubernetes docs, "Pod
// Lifecycle", termination of pods: the grace period, 30 s unless set,
// counts from the deletion and includes the preStop hook; then SIGKILL;
// probe defaults periodSeconds 10, timeoutSeconds 1, failureThreshold 3):
//   - terminationGracePeriodSeconds above preStop + drain delay + drain
//     timeout + kill timeout, with graceshim's own defaults for unset
//     variables (0 s, 5 m, 10 s), so that graceshim's escalation, not the
//     kubelet's SIGKILL, ends a stop;
//   - a readiness probe on graceshim's health endpoint (its port, by
//     number or by name), noticing the 503 within the drain delay;
//   - no liveness probe on it: it answers 503 until the server listens,
//     so a slow start fails the probe and the kubelet restarts the
//     container, again and again; and 503 is its answer during a stop;
//   - no preStop sleep together with a drain delay (they add up; one is
//     enough, and the drain delay makes the 503 start at once).
func k8sProblems(docs []any) []string {
	var bad []string
	pods := 0
	for _, d := range docs {
		spec := dig(d, "spec", "template", "spec")
		if spec == nil {
			continue
		}
		pods++
		grace := time.Duration(num(dig(spec, "terminationGracePeriodSeconds"), 30)) * time.Second
		for _, c := range asList(dig(spec, "containers")) {
			name, _ := dig(c, "name").(string)
			env := map[string]string{}
			for _, e := range asList(dig(c, "env")) {
				k, _ := dig(e, "name").(string)
				v, _ := dig(e, "value").(string)
				env[k] = v
			}
			if env["GRACESHIM_HEALTH_LISTEN"] == "" && env["GRACESHIM_DRAIN_DELAY"] == "" {
				continue // not run by graceshim, or not for a balancer
			}
			dur := func(k, def string) time.Duration {
				v := env[k]
				if v == "" {
					v = def
				}
				d, err := time.ParseDuration(v)
				if err != nil {
					bad = append(bad, fmt.Sprintf("%s: %s=%q: %v", name, k, v, err))
				}
				return d
			}
			delay := dur("GRACESHIM_DRAIN_DELAY", "0s")
			drain := dur("GRACESHIM_DRAIN_TIMEOUT", "5m")
			kill := dur("GRACESHIM_KILL_TIMEOUT", "10s")
			var preStop time.Duration
			if cmd := asList(dig(c, "lifecycle", "preStop", "exec", "command")); cmd != nil {
				var words []string
				for _, w := range cmd {
					s, _ := w.(string)
					words = append(words, s)
				}
				if m := regexp.MustCompile(`\bsleep\s+(\d+)`).FindStringSubmatch(strings.Join(words, " ")); m != nil {
					n, _ := strconv.Atoi(m[1])
					preStop = time.Duration(n) * time.Second
					if delay > 0 {
						bad = append(bad, fmt.Sprintf("%s: a preStop sleep %s and GRACESHIM_DRAIN_DELAY %s add up; keep the drain delay (the 503 starts at once)", name, preStop, delay))
					}
				}
			}
			if need := preStop + delay + drain + kill; grace <= need {
				bad = append(bad, fmt.Sprintf("%s: terminationGracePeriodSeconds %s does not cover preStop %s + drain delay %s + drain timeout %s + kill timeout %s = %s",
					name, grace, preStop, delay, drain, kill, need))
			}
			_, healthPort, err := net.SplitHostPort(env["GRACESHIM_HEALTH_LISTEN"])
			if err != nil {
				bad = append(bad, fmt.Sprintf("%s: GRACESHIM_HEALTH_LISTEN=%q: %v", name, env["GRACESHIM_HEALTH_LISTEN"], err))
				continue
			}
			// A probe's port: a number, or the name of a containerPort.
			probePort := func(probe string) string {
				p := dig(c, probe, "httpGet", "port")
				if s, ok := p.(string); ok {
					for _, cp := range asList(dig(c, "ports")) {
						if dig(cp, "name") == s {
							return strconv.Itoa(int(num(dig(cp, "containerPort"), 0)))
						}
					}
					return s
				}
				if p == nil {
					return ""
				}
				return strconv.Itoa(int(num(p, 0)))
			}
			switch p := probePort("readinessProbe"); {
			case dig(c, "readinessProbe") == nil:
				bad = append(bad, fmt.Sprintf("%s: no readinessProbe on graceshim's health endpoint", name))
			case p != healthPort:
				bad = append(bad, fmt.Sprintf("%s: the readinessProbe asks port %q, graceshim's health endpoint is on %s", name, p, healthPort))
			default:
				r := dig(c, "readinessProbe")
				period := time.Duration(num(dig(r, "periodSeconds"), 10)) * time.Second
				fails := int(num(dig(r, "failureThreshold"), 3))
				timeout := time.Duration(num(dig(r, "timeoutSeconds"), 1)) * time.Second
				if notice := time.Duration(fails)*period + timeout; notice >= delay {
					bad = append(bad, fmt.Sprintf("%s: the readiness probe notices the 503 up to %s after it begins (%d x %s + %s), not within the drain delay %s",
						name, notice, fails, period, timeout, delay))
				}
			}
			if dig(c, "livenessProbe") != nil && probePort("livenessProbe") == healthPort {
				bad = append(bad, fmt.Sprintf("%s: the livenessProbe asks graceshim's health endpoint, which answers 503 until the server listens: a slow start gets the container restarted", name))
			}
		}
	}
	if pods == 0 {
		bad = append(bad, "no pod template")
	}
	return bad
}

// TestE2EKubernetesManifest checks examples/kubernetes/deployment.yaml,
// parsed as YAML, with k8sProblems, and that the check fails each mistake
// it is there for. TestE2EPID1Examples (pid1_test.go) runs graceshim with
// the manifest's settings as PID 1; no cluster runs here.
func TestE2EKubernetesManifest(t *testing.T) {
	t.Parallel()
	path := repoPath("examples", "kubernetes", "deployment.yaml")
	docs := yamlDocs(t, path)
	if len(docs) == 0 || dig(docs[0], "kind") != "Deployment" || dig(docs[0], "apiVersion") != "apps/v1" {
		t.Fatalf("%s: want an apps/v1 Deployment first, got %v %v", path, dig(docs[0], "apiVersion"), dig(docs[0], "kind"))
	}
	for _, p := range k8sProblems(docs) {
		t.Errorf("%s: %s", path, p)
	}
	container := func(docs []any) map[string]any {
		return asList(dig(docs[0], "spec", "template", "spec", "containers"))[0].(map[string]any)
	}
	setEnv := func(c map[string]any, k, v string) {
		for _, e := range asList(c["env"]) {
			if dig(e, "name") == k {
				e.(map[string]any)["value"] = v
				return
			}
		}
		c["env"] = append(asList(c["env"]), map[string]any{"name": k, "value": v})
	}
	for _, tc := range []struct {
		name   string
		mutate func([]any)
		want   string
	}{
		{"grace period too short", func(d []any) {
			dig(d[0], "spec", "template", "spec").(map[string]any)["terminationGracePeriodSeconds"] = 60.0
		}, "does not cover"},
		{"grace period left at its default", func(d []any) {
			delete(dig(d[0], "spec", "template", "spec").(map[string]any), "terminationGracePeriodSeconds")
		}, "does not cover"},
		{"drain timeout left at graceshim's default", func(d []any) {
			c := container(d)
			var env []any
			for _, e := range asList(c["env"]) {
				if dig(e, "name") != "GRACESHIM_DRAIN_TIMEOUT" {
					env = append(env, e)
				}
			}
			c["env"] = env
		}, "does not cover"},
		{"readiness probe on nginx", func(d []any) {
			dig(container(d), "readinessProbe", "httpGet").(map[string]any)["port"] = "http"
		}, "readinessProbe asks port"},
		{"no readiness probe", func(d []any) { delete(container(d), "readinessProbe") }, "no readinessProbe"},
		{"slow readiness probe", func(d []any) {
			dig(container(d), "readinessProbe").(map[string]any)["periodSeconds"] = 10.0
		}, "not within the drain delay"},
		{"liveness probe on the health endpoint", func(d []any) {
			container(d)["livenessProbe"] = map[string]any{"httpGet": map[string]any{"path": "/", "port": "health"}}
		}, "livenessProbe"},
		{"preStop sleep as well", func(d []any) {
			container(d)["lifecycle"] = map[string]any{"preStop": map[string]any{"exec": map[string]any{"command": []any{"sleep", "5"}}}}
		}, "add up"},
		{"bad duration", func(d []any) { setEnv(container(d), "GRACESHIM_DRAIN_DELAY", "5") }, "missing unit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := yamlDocs(t, path)
			tc.mutate(d)
			p := k8sProblems(d)
			if !strings.Contains(strings.Join(p, "\n"), tc.want) {
				t.Errorf("k8sProblems = %q, want one saying %q", p, tc.want)
			}
		})
	}
}

// --- nginx as the balancer ----------------------------------------------------

// nginxLB runs nginx in the foreground as a balancer with the upstream and
// proxy settings of examples/nginx/load-balancer.conf, its servers
// replaced by the hosts and its listen by a free loopback port.
func startNginxLB(t *testing.T, hosts []fleetHost) string {
	t.Helper()
	bin := needCmd(t, "nginx")
	b, err := os.ReadFile(repoPath("examples", "nginx", "load-balancer.conf"))
	if err != nil {
		t.Fatal(err)
	}
	serverRE := regexp.MustCompile(`(?m)^(\s*)server 192\.0\.2\.\d+:80( [^;]*)?;\n`)
	lines := serverRE.FindAllStringSubmatch(string(b), -1)
	if len(lines) == 0 {
		t.Fatalf("load-balancer.conf has no server 192.0.2.N:80 lines")
	}
	var servers strings.Builder
	for _, h := range hosts {
		fmt.Fprintf(&servers, "%sserver 127.0.0.1:%d%s;\n", lines[0][1], h.Port, lines[0][2])
	}
	snippet := serverRE.ReplaceAllString(string(b), "")
	snippet = strings.Replace(snippet, "upstream web {\n", "upstream web {\n"+servers.String(), 1)
	port := freePort(t)
	if !strings.Contains(snippet, "    listen 80;\n") {
		t.Fatalf("load-balancer.conf has no 'listen 80;'")
	}
	snippet = strings.Replace(snippet, "    listen 80;\n", fmt.Sprintf("    listen 127.0.0.1:%d;\n", port), 1)
	dir := t.TempDir()
	conf := filepath.Join(dir, "nginx.conf")
	// Root workers: the proxy's temp files go to the test's own dir.
	main := fmt.Sprintf(`daemon off;
user root;
worker_processes 2;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log notice;
events { worker_connections 1024; }
http {
    access_log off;
    proxy_temp_path %[1]s/proxy_temp;
    client_body_temp_path %[1]s/client_temp;
%[2]s
}
`, dir, snippet)
	if err := os.WriteFile(conf, []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-t", "-q", "-c", conf).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s\n%s", err, out, main)
	}
	cmd := exec.Command(bin, "-c", conf)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if log, err := os.ReadFile(filepath.Join(dir, "error.log")); err == nil && t.Failed() {
			t.Logf("balancer's error log:\n%s", tail(string(log), 4000))
		}
	})
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	c := &httpClient{timeout: 5 * time.Second}
	if !waitFor(30*time.Second, 20*time.Millisecond, func() bool {
		code, err := c.status(fmt.Sprintf("127.0.0.1:%d", port), "/small")
		return err == nil && code == 200
	}) {
		t.Fatalf("the nginx balancer did not answer:\n%s", out.String())
	}
	return url
}
