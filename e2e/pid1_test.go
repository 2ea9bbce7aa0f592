package e2e

// End-to-end tests of graceshim as a container's entrypoint: PID 1 of a new
// PID namespace (unshare --pid --fork --mount-proc), with no systemd and no
// NOTIFY_SOCKET. PID 1 has two duties an ordinary process does not: every
// orphan of the namespace becomes its child and must be reaped, and the
// kernel delivers to it only the signals it has a handler for (a
// container's TERM would otherwise do nothing). The tests start real
// children that orphan grandchildren, watch the namespace from outside
// through /proc, and check the drain and the exit code.

import (
	"encoding/json"
	"errors"
	"fmt"
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

	"github.com/graceshim/graceshim/supervisor/proctab"
)

// pid1 is graceshim running as PID 1 of a new PID namespace, under
// unshare.
type pid1 struct {
	cmd    *exec.Cmd // unshare
	out    *syncBuffer
	exited chan struct{}
	err    error // unshare's Wait, once exited is closed
	shim   int   // graceshim's pid as seen from outside
	ns     string
}

// startPID1 runs unshare --pid --fork --mount-proc graceshim args... and
// waits until graceshim runs as PID 1 of the new namespace.
func startPID1(t *testing.T, args ...string) *pid1 {
	t.Helper()
	return startPID1Env(t, nil, args...)
}

// startPID1Env is startPID1 with env added to graceshim's environment.
func startPID1Env(t *testing.T, env []string, args ...string) *pid1 {
	t.Helper()
	needRoot(t)
	unshare := needCmd(t, "unshare")
	bin := needGraceshim(t)
	p := &pid1{out: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(unshare, append([]string{"--pid", "--fork", "--mount-proc", bin}, args...)...)
	// As a container runtime does: no systemd to talk to.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NOTIFY_SOCKET=") {
			p.cmd.Env = append(p.cmd.Env, kv)
		}
	}
	p.cmd.Env = append(p.cmd.Env, env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("cannot start unshare: %v", err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		select {
		case <-p.exited:
			return
		default:
		}
		// SIGKILL to the namespace's init kills the whole namespace.
		if p.shim > 0 {
			syscall.Kill(p.shim, syscall.SIGKILL)
		}
		p.cmd.Process.Kill()
		<-p.exited
	})
	ok := waitFor(30*time.Second, 10*time.Millisecond, func() bool {
		for _, pid := range childPIDs(p.cmd.Process.Pid) {
			if procField(pid, "Name") == "graceshim" {
				p.shim = pid
				return true
			}
		}
		select {
		case <-p.exited:
			return true
		default:
		}
		return false
	})
	if !ok || p.shim == 0 {
		t.Fatalf("graceshim did not start under unshare (exited: %v):\n%s", p.err, p.out)
	}
	if nspid := strings.Fields(procField(p.shim, "NSpid")); len(nspid) < 2 || nspid[len(nspid)-1] != "1" {
		t.Fatalf("graceshim (pid %d) is not PID 1 of a namespace: NSpid %v", p.shim, nspid)
	}
	var err error
	if p.ns, err = os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", p.shim)); err != nil {
		t.Fatal(err)
	}
	return p
}

// childPIDs lists the processes whose parent is pid.
func childPIDs(pid int) []int {
	table, err := proctab.Read()
	if err != nil {
		return nil
	}
	return proctab.Children(table, pid)
}

// nsProc is a process of the namespace, seen from outside.
type nsProc struct {
	PID, PPID int
	Name      string
	State     string // "S (sleeping)", "Z (zombie)", ...
}

func (p nsProc) zombie() bool { return strings.HasPrefix(p.State, "Z") }

func (p nsProc) String() string {
	return fmt.Sprintf("%d %s (parent %d, %s)", p.PID, p.Name, p.PPID, p.State)
}

// procs lists every process in graceshim's PID namespace but graceshim.
func (p *pid1) procs() []nsProc {
	var out []nsProc
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == p.shim {
			continue
		}
		if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid)); err != nil || ns != p.ns {
			continue
		}
		ppid, _ := strconv.Atoi(procField(pid, "PPid"))
		out = append(out, nsProc{PID: pid, PPID: ppid, Name: procField(pid, "Name"), State: procField(pid, "State")})
	}
	return out
}

// orphansOfShim counts the processes named name whose parent is graceshim.
func (p *pid1) orphansOfShim(name string) int {
	n := 0
	for _, q := range p.procs() {
		if q.Name == name && q.PPID == p.shim {
			n++
		}
	}
	return n
}

// requireOrphansReaped waits until n orphans named name have been
// re-parented to graceshim, then until they are gone: a zombie (an exit
// PID 1 did not reap) stays in /proc for good.
func (p *pid1) requireOrphansReaped(t *testing.T, name string, n int) {
	t.Helper()
	if !waitFor(20*time.Second, 10*time.Millisecond, func() bool { return p.orphansOfShim(name) >= n }) {
		t.Fatalf("want %d orphaned %s re-parented to graceshim (PID 1); the namespace holds:\n%s", n, name, procList(p.procs()))
	}
	gone := waitFor(20*time.Second, 20*time.Millisecond, func() bool {
		for _, q := range p.procs() {
			if q.Name == name || q.zombie() {
				return false
			}
		}
		return true
	})
	if !gone {
		t.Fatalf("orphans were not reaped by graceshim (PID 1); the namespace holds:\n%s\ngraceshim's output:\n%s", procList(p.procs()), p.out)
	}
}

func procList(ps []nsProc) string {
	var b strings.Builder
	for _, q := range ps {
		fmt.Fprintf(&b, "  %s\n", q)
	}
	if b.Len() == 0 {
		return "  (none)\n"
	}
	return b.String()
}

// wait waits for unshare to end and returns its exit code.
func (p *pid1) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("graceshim as PID 1 did not exit within 60s; the namespace holds:\n%s\noutput:\n%s", procList(p.procs()), p.out)
	}
	var ee *exec.ExitError
	switch {
	case p.err == nil:
		return 0
	case errors.As(p.err, &ee):
		return ee.ExitCode()
	}
	t.Fatalf("unshare: %v\n%s", p.err, p.out)
	return -1
}

// writeScript writes an executable sh script into dir.
func writeScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// orphanLoop is sh that starts n orphans named sleep, each living for
// secs: every `sh -c 'sleep S &'` exits at once and leaves its sleep to
// PID 1.
func orphanLoop(n int, secs string) string {
	return fmt.Sprintf("i=0\nwhile [ $i -lt %d ]; do sh -c 'sleep %s &'; i=$((i+1)); done\n", n, secs)
}

// TestE2EPID1Nginx: graceshim as PID 1 in front of real nginx, started by
// a script that orphans grandchildren first. The orphans are reaped; HUP
// (a signal PID 1 gets no default action for) reloads nginx; TERM from
// outside the namespace, as a container runtime sends it, drains the
// downloads in flight; graceshim exits 0 with nginx.
func TestE2EPID1Nginx(t *testing.T) {
	t.Parallel()
	site := newNginxSite(t, nginxOpts{Rate: "200k", FileSize: 4 * 200 * 1024})
	const orphans = 8
	script := writeScript(t, t.TempDir(), "entrypoint.sh",
		orphanLoop(orphans, "1")+fmt.Sprintf("exec /usr/sbin/nginx -c %s\n", site.Conf))
	p := startPID1(t, "--preset", "nginx", "--drain-delay", "500ms", "--", script)
	if !waitFor(30*time.Second, 20*time.Millisecond, func() bool {
		code, err := site.Get("/small")
		return err == nil && code == 200
	}) {
		t.Fatalf("nginx under graceshim as PID 1 did not answer:\n%s", p.out)
	}
	p.requireOrphansReaped(t, "sleep", orphans)

	master, err := site.MasterPID() // nginx writes its namespace pid
	if err != nil {
		t.Fatal(err)
	}
	var hostMaster int
	for _, q := range p.procs() {
		if q.PPID == p.shim && q.Name == "nginx" {
			hostMaster = q.PID
		}
	}
	if hostMaster == 0 {
		t.Fatalf("no nginx master below graceshim; the namespace holds:\n%s", procList(p.procs()))
	}
	before := childPIDs(hostMaster)
	if err := syscall.Kill(p.shim, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	reloaded := waitFor(20*time.Second, 20*time.Millisecond, func() bool {
		for _, w := range childPIDs(hostMaster) {
			if !slices.Contains(before, w) {
				return true
			}
		}
		return false
	})
	if !reloaded {
		t.Errorf("HUP to graceshim as PID 1 did not reload nginx (master %d in the namespace, workers %v, now %v):\n%s",
			master, before, childPIDs(hostMaster), p.out)
	}

	const n = 10
	d := startDownloads(t, site.URL, n)
	if err := syscall.Kill(p.shim, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code := p.wait(t)
	d.RequireComplete(t, site.FileSize, site.SHA256)
	t.Logf("figures: %d/%d downloads complete; unshare exited %d", d.Completed(site.FileSize, site.SHA256), n, code)
	if code != 0 {
		t.Errorf("unshare exited %d, want 0 (nginx exits 0 after a graceful stop)", code)
	}
	out := p.out.String()
	for _, want := range []string{"received TERM: stopping entrypoint.sh gracefully with QUIT", "received HUP: reloading entrypoint.sh"} {
		if !strings.Contains(out, want) {
			t.Errorf("graceshim's output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}
}

// TestE2EPID1ExitCode: the child's exit code comes out of the container
// (graceshim, then unshare), whether the child ends on TERM or on its own,
// and the orphans it left are reaped either way.
func TestE2EPID1ExitCode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		body string // after the orphans are made
		term bool   // send TERM from outside
		want int
	}{
		{
			name: "term",
			// The trap runs once the foreground sleep ends.
			body: "trap 'sleep 0.3; exit 7' TERM\nwhile :; do sleep 0.1; done\n",
			term: true,
			want: 7,
		},
		{
			name: "own",
			body: "sleep 0.5\nexit 3\n",
			want: 3,
		},
		{
			name: "signalled",
			// Killed by a signal: 128 + 9, as a shell reports it.
			body: "sleep 0.5\nkill -KILL $$\n",
			want: 128 + 9,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			const orphans = 5
			script := writeScript(t, t.TempDir(), "entrypoint.sh", orphanLoop(orphans, "1")+tt.body)
			began := time.Now()
			p := startPID1(t, "--", script)
			if tt.term {
				// The orphans are still there when TERM comes: graceshim
				// must end them too, or wait for them, before it exits.
				if !waitFor(20*time.Second, 10*time.Millisecond, func() bool { return p.orphansOfShim("sleep") >= orphans }) {
					t.Fatalf("the orphans were not re-parented to graceshim:\n%s", procList(p.procs()))
				}
				if err := syscall.Kill(p.shim, syscall.SIGTERM); err != nil {
					t.Fatal(err)
				}
			} else {
				p.requireOrphansReaped(t, "sleep", orphans)
			}
			got := p.wait(t)
			t.Logf("unshare exited %d after %s", got, time.Since(began).Round(time.Millisecond))
			if got != tt.want {
				t.Errorf("unshare exited %d, want %d\noutput:\n%s", got, tt.want, p.out)
			}
		})
	}
}

// TestE2EPID1Signals: as PID 1 graceshim receives only the signals it
// handles, and passes them on: USR1 and USR2 reach the child, which writes
// down what it got.
func TestE2EPID1Signals(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	got := filepath.Join(dir, "got")
	script := writeScript(t, dir, "entrypoint.sh", fmt.Sprintf(`
trap 'echo USR1 >>%[1]s' USR1
trap 'echo USR2 >>%[1]s' USR2
trap 'exit 0' TERM
: >%[1]s.ready
while :; do sleep 0.05; done
`, got))
	p := startPID1(t, "--", script)
	if !waitFor(20*time.Second, 10*time.Millisecond, func() bool {
		_, err := os.Stat(got + ".ready")
		return err == nil
	}) {
		t.Fatalf("the child did not start:\n%s", p.out)
	}
	for _, sig := range []struct {
		num  syscall.Signal
		name string
	}{{syscall.SIGUSR1, "USR1"}, {syscall.SIGUSR2, "USR2"}} {
		if err := syscall.Kill(p.shim, sig.num); err != nil {
			t.Fatal(err)
		}
		if !waitFor(20*time.Second, 10*time.Millisecond, func() bool {
			b, _ := os.ReadFile(got)
			return strings.Contains(string(b), sig.name)
		}) {
			b, _ := os.ReadFile(got)
			t.Errorf("%s sent to graceshim as PID 1 did not reach the child (it got %q):\n%s", sig.name, b, p.out)
		}
	}
	if err := syscall.Kill(p.shim, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t); code != 0 {
		t.Errorf("unshare exited %d, want 0\n%s", code, p.out)
	}
}

// TestE2EPID1ReloadFromHost: `graceshim reload PID` run on the host reaches
// a graceshim that is PID 1 of a container with a network of its own
// (unshare --net --pid), though its control socket, abstract, lives in the
// container's network namespace: graceshim answers (the generic preset's
// reload is a HUP, which the child ignores: done, exit 0), where a client
// dialling in the host's namespace found nothing there (exit 2).
func TestE2EPID1ReloadFromHost(t *testing.T) {
	t.Parallel()
	needRoot(t)
	unshare := needCmd(t, "unshare")
	bin := needGraceshim(t)
	var out syncBuffer
	cmd := exec.Command(unshare, "--net", "--pid", "--fork", "--mount-proc", bin, "--ready=exec", "--", "sh", "-c", "trap '' HUP; exec sleep 60")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	shim := 0
	if !waitFor(30*time.Second, 10*time.Millisecond, func() bool {
		for _, pid := range childPIDs(cmd.Process.Pid) {
			if procField(pid, "Name") == "graceshim" {
				shim = pid
			}
		}
		return shim != 0 && strings.Contains(out.String(), "started sh")
	}) {
		t.Fatalf("graceshim did not start in its namespaces:\n%s", out.String())
	}
	defer syscall.Kill(shim, syscall.SIGKILL)
	// The control socket is listed in the container's network namespace
	// only.
	netns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", shim))
	own, _ := os.Readlink("/proc/self/ns/net")
	if netns == own {
		t.Fatalf("graceshim runs in the test's network namespace (%s)", own)
	}
	rel := exec.Command(bin, "reload", strconv.Itoa(shim))
	reply, err := rel.CombinedOutput()
	code := 0
	if err != nil {
		code = rel.ProcessState.ExitCode()
	}
	if code != 0 || !strings.Contains(string(reply), "reloaded: signal sent") {
		t.Errorf("graceshim reload %d from the host: exit %d, %q; want graceshim's answer (exit 0, reloaded)\n%s", shim, code, reply, out.String())
	}
}

// --- the examples -----------------------------------------------------------

// dockerfileExec returns the exec-form (JSON array) argument of the
// Dockerfile instruction, e.g. ENTRYPOINT; nil when there is none.
func dockerfileExec(t *testing.T, dockerfile, instr string) []string {
	t.Helper()
	for _, line := range strings.Split(dockerfile, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), instr+" ")
		if !ok {
			continue
		}
		var argv []string
		if err := json.Unmarshal([]byte(rest), &argv); err != nil {
			t.Fatalf("%s %s is not in exec form (a JSON array): %v", instr, rest, err)
		}
		return argv
	}
	return nil
}

// yamlEnv reads the "- name: X / value: Y" pairs of a manifest. There is
// no YAML library in go.mod; the manifest is ours and written in this
// simple form on purpose.
var yamlEnvRE = regexp.MustCompile(`(?m)^\s*- name: (\S+)\s*\n\s*value: "?([^"\n]*)"?\s*$`)

// yamlInt reads the first "key: N" of a manifest.
func yamlInt(t *testing.T, manifest, key string) int {
	t.Helper()
	m := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(key) + `: (\d+)\s*$`).FindStringSubmatch(manifest)
	if m == nil {
		t.Fatalf("the manifest has no %s", key)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// yamlBlock returns the lines indented below the first "key:" line.
func yamlBlock(manifest, key string) string {
	lines := strings.Split(manifest, "\n")
	for i, line := range lines {
		if strings.TrimSpace(line) != key+":" {
			continue
		}
		indent := len(line) - len(strings.TrimLeft(line, " "))
		var b strings.Builder
		for _, l := range lines[i+1:] {
			if strings.TrimSpace(l) != "" && len(l)-len(strings.TrimLeft(l, " ")) <= indent {
				break
			}
			b.WriteString(l + "\n")
		}
		return b.String()
	}
	return ""
}

// flagEnvVars lists the GRACESHIM_* variables graceshim's run flags read,
// as its --help shows them ("[$GRACESHIM_DRAIN_DELAY]").
func flagEnvVars(t *testing.T) map[string]bool {
	t.Helper()
	out, err := exec.Command(needGraceshim(t), "--help").Output()
	if err != nil {
		t.Fatalf("graceshim --help: %v", err)
	}
	vars := map[string]bool{}
	for _, m := range regexp.MustCompile(`\$(GRACESHIM_[A-Z_]+)`).FindAllStringSubmatch(string(out), -1) {
		vars[m[1]] = true
	}
	if len(vars) == 0 {
		t.Fatalf("graceshim --help names no GRACESHIM_ variable:\n%s", out)
	}
	return vars
}

// TestE2EPID1Examples checks examples/container and examples/kubernetes
// against graceshim, then runs graceshim with the Deployment's settings
// the way the kubelet would: as PID 1, stopped with SIGTERM.
func TestE2EPID1Examples(t *testing.T) {
	t.Parallel()
	dockerfile, err := os.ReadFile(repoPath("examples/container/Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	manifestBytes, err := os.ReadFile(repoPath("examples/kubernetes/deployment.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	manifest := string(manifestBytes)

	// The image: graceshim is the entrypoint, the server the command, no
	// STOPSIGNAL.
	entry := dockerfileExec(t, string(dockerfile), "ENTRYPOINT")
	if len(entry) != 2 || filepath.Base(entry[0]) != "graceshim" || entry[1] != "--" {
		t.Errorf("ENTRYPOINT is %q, want [graceshim --]", entry)
	}
	if cmd := dockerfileExec(t, string(dockerfile), "CMD"); len(cmd) == 0 || cmd[0] != "nginx" {
		t.Errorf("CMD is %q, want nginx and its arguments", cmd)
	}
	if regexp.MustCompile(`(?mi)^\s*STOPSIGNAL\b`).Match(dockerfile) {
		t.Errorf("the Dockerfile sets STOPSIGNAL; graceshim needs none")
	}

	// The Deployment's settings are graceshim's and add up.
	if strings.Contains(manifest, "\t") {
		t.Errorf("deployment.yaml has a tab; YAML indents with spaces only")
	}
	for _, want := range []string{"apiVersion: apps/v1", "kind: Deployment"} {
		if !regexp.MustCompile(`(?m)^` + want + `$`).MatchString(manifest) {
			t.Errorf("deployment.yaml lacks %q", want)
		}
	}
	known := flagEnvVars(t)
	env := map[string]string{}
	for _, m := range yamlEnvRE.FindAllStringSubmatch(manifest, -1) {
		if !strings.HasPrefix(m[1], "GRACESHIM_") {
			continue
		}
		if !known[m[1]] {
			t.Errorf("the Deployment sets %s, which no graceshim flag reads", m[1])
		}
		env[m[1]] = m[2]
	}
	dur := func(name string) time.Duration {
		d, err := time.ParseDuration(env[name])
		if err != nil {
			t.Fatalf("the Deployment's %s=%q: %v", name, env[name], err)
		}
		return d
	}
	delay, drain, kill := dur("GRACESHIM_DRAIN_DELAY"), dur("GRACESHIM_DRAIN_TIMEOUT"), dur("GRACESHIM_KILL_TIMEOUT")
	grace := time.Duration(yamlInt(t, manifest, "terminationGracePeriodSeconds")) * time.Second
	if grace <= delay+drain+kill {
		t.Errorf("terminationGracePeriodSeconds %s does not cover drain delay %s + drain timeout %s + kill timeout %s", grace, delay, drain, kill)
	}
	if regexp.MustCompile(`(?m)^\s*preStop:`).MatchString(manifest) {
		t.Errorf("the Deployment has a preStop hook; the drain delay replaces it")
	}
	_, healthPort, err := net.SplitHostPort(env["GRACESHIM_HEALTH_LISTEN"])
	if err != nil {
		t.Fatalf("GRACESHIM_HEALTH_LISTEN=%q: %v", env["GRACESHIM_HEALTH_LISTEN"], err)
	}
	if !regexp.MustCompile(`(?m)- name: health\s*\n\s*containerPort: ` + healthPort + `\s*$`).MatchString(manifest) {
		t.Errorf("no containerPort named health is %s, the health endpoint's port", healthPort)
	}
	if probe := yamlBlock(manifest, "readinessProbe"); !strings.Contains(probe, "port: health") {
		t.Errorf("the readiness probe does not ask the health port:\n%s", probe)
	}
	if t.Failed() {
		return
	}

	// Run it: the image's entrypoint with the Deployment's settings, the
	// health endpoint on a loopback port, in front of real nginx.
	site := newNginxSite(t, nginxOpts{Rate: "100k", FileSize: 8 * 100 * 1024})
	health := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	var extra []string
	for k, v := range env {
		if k == "GRACESHIM_HEALTH_LISTEN" {
			v = health
		}
		extra = append(extra, k+"="+v)
	}
	p := startPID1Env(t, extra, append(entry[1:], "/usr/sbin/nginx", "-c", site.Conf)...)
	hc := &httpClient{timeout: 5 * time.Second}
	if !waitFor(30*time.Second, 20*time.Millisecond, func() bool {
		code, err := site.Get("/small")
		return err == nil && code == 200
	}) {
		t.Fatalf("nginx did not answer:\n%s", p.out)
	}
	// The health endpoint answers 200 once graceshim has seen nginx
	// listen (READY=1), 503 before.
	if !waitFor(10*time.Second, 20*time.Millisecond, func() bool {
		code, err := hc.status(health, "/")
		return err == nil && code == 200
	}) {
		code, err := hc.status(health, "/")
		t.Fatalf("health endpoint before the stop: %d, %v; want 200\n%s", code, err, p.out)
	}
	const n = 5
	d := startDownloads(t, site.URL, n)
	if err := syscall.Kill(p.shim, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Within the drain delay: the readiness probe fails, nginx serves.
	if !waitFor(delay, 10*time.Millisecond, func() bool {
		code, err := hc.status(health, "/")
		return err == nil && code == 503
	}) {
		t.Errorf("the health endpoint did not answer 503 after SIGTERM:\n%s", p.out)
	}
	if code, err := site.Get("/small"); err != nil || code != 200 {
		t.Errorf("nginx did not serve a new request during the drain delay: %d, %v", code, err)
	}
	code := p.wait(t)
	d.RequireComplete(t, site.FileSize, site.SHA256)
	t.Logf("figures: %d/%d downloads complete; exit code %d", d.Completed(site.FileSize, site.SHA256), n, code)
	if code != 0 {
		t.Errorf("exit code %d, want nginx's 0", code)
	}
	if t.Failed() {
		t.Logf("output:\n%s", p.out)
	}
}
