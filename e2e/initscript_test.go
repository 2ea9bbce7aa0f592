package e2e

// End-to-end tests of graceshim initscript: fixed and generated SysV
// scripts really run under bash (Red Hat style, with the test functions
// library in testdata/initscripts/functions that keeps CentOS 6's killproc
// semantics) or sh (Debian style, with the host's /lib/lsb/init-functions
// and start-stop-daemon), starting and stopping a real nginx while slow
// downloads are in flight.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/graceshim/graceshim/unitgen/sysv"
)

// initscriptRate and initscriptSeconds size the downloads: long enough to
// be in flight through a stop, short enough to keep the tests quick.
const (
	initscriptRate      = "200k"
	initscriptSeconds   = 4
	initscriptDownloads = 6
	// initscriptActionTimeout guards each script run against a hang.
	initscriptActionTimeout = 2 * time.Minute
)

// controlOpts size the downloads of a test that wants them cut (a control,
// an escalation) at initscriptControlSeconds: a download that ends before
// the script's signal counts as kept, and on a loaded machine starting
// them and running the script can take most of initscriptSeconds.
const initscriptControlSeconds = 15

func controlOpts(o nginxOpts) nginxOpts {
	rate, _ := rateBytes(initscriptRate)
	o.FileSize = initscriptControlSeconds * rate
	return o
}

// initscriptEnv runs init scripts against one nginx site, with every path
// they use (functions library, /etc/sysconfig, /etc/default, lock and pid
// files, logs) moved into a temp dir.
type initscriptEnv struct {
	dir  string
	site *nginxSite
	repl *strings.Replacer
}

func newInitscriptEnv(t *testing.T, o nginxOpts) *initscriptEnv {
	t.Helper()
	needRoot(t)
	needCmd(t, "nginx")
	needCmd(t, "curl")
	needCmd(t, "bash")
	o.Rate = initscriptRate
	rate, err := rateBytes(initscriptRate)
	if err != nil {
		t.Fatal(err)
	}
	if o.FileSize == 0 {
		o.FileSize = initscriptSeconds * rate
	}
	site := newNginxSite(t, o)
	dir := t.TempDir()
	for _, d := range []string{"sysconfig", "default", "lock", "log"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The functions library's own defaults (/var/run/$base.pid, the
	// subsys lock) move into the sandbox too, in a copy.
	lib, err := os.ReadFile(repoPath("testdata/initscripts/functions"))
	if err != nil {
		t.Fatal(err)
	}
	functions := filepath.Join(dir, "functions")
	lib = []byte(strings.NewReplacer(
		"/var/run/", site.Dir+"/",
		"/var/lock/subsys/", dir+"/lock/",
		`PATH="/sbin:`, `PATH="`+dir+`/bin:/sbin:`,
	).Replace(string(lib)))
	if err := os.WriteFile(functions, lib, 0o644); err != nil {
		t.Fatal(err)
	}
	// Scripts without -p fall back to pidof, which on this host would also
	// find the nginx of every other test running now. The sandbox's pidof
	// is the real one, narrowed to this site's processes (master and
	// workers alike: all of them hold its error log open).
	pidof := fmt.Sprintf(`#!/bin/bash
pids=
for p in $(%s "$@"); do
	if ls -l /proc/$p/fd 2>/dev/null | grep -qF %q; then
		pids="$pids $p"
	fi
done
[ -n "$pids" ] || exit 1
echo $pids
`, needCmd(t, "pidof"), site.ErrorLog)
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "pidof"), []byte(pidof), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "network"), []byte("NETWORKING=yes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Settings both styles' nginx scripts read: the Debian script's
	// DAEMON_OPTS names the test config.
	e := &initscriptEnv{dir: dir, site: site}
	e.setConf(t, "")
	e.repl = strings.NewReplacer(
		"/etc/rc.d/init.d/functions", functions,
		"/etc/init.d/functions", functions,
		"/etc/sysconfig/network", filepath.Join(dir, "network"),
		"/etc/sysconfig/", dir+"/sysconfig/",
		"/etc/default/", dir+"/default/",
		"/var/lock/subsys/", dir+"/lock/",
		"/var/run/nginx.pid", site.PIDFile,
		"/run/nginx.pid", site.PIDFile,
		"/var/run/", site.Dir+"/", // where nginx writes its pid file: /var/run/${prog}.pid must find it
		"/var/log/", dir+"/log/",
		"/etc/nginx/nginx.conf", site.Conf,
		// graceshim_stop's pidof fallback would otherwise find the
		// nginx of every other test running now: narrowed like the
		// functions library's.
		`pidof "$2"`, dir+`/bin/pidof "$2"`,
	)
	t.Cleanup(func() { e.killMasters(t) })
	return e
}

// setConf writes /etc/sysconfig/nginx and /etc/default/nginx with extra
// settings (STOP_TIMEOUT=...).
func (e *initscriptEnv) setConf(t *testing.T, extra string) {
	t.Helper()
	conf := fmt.Sprintf("DAEMON_OPTS=\"-c %s\"\n%s", e.site.Conf, extra)
	for _, d := range []string{"sysconfig", "default"} {
		if err := os.WriteFile(filepath.Join(e.dir, d, "nginx"), []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// install writes script with its paths moved into the sandbox and returns
// its path.
func (e *initscriptEnv) install(t *testing.T, name string, script []byte) string {
	t.Helper()
	p := filepath.Join(e.dir, name)
	if err := os.WriteFile(p, []byte(e.repl.Replace(string(script))), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// run runs "script action" with the shell the style runs under on its
// home system (bash for Red Hat, where /bin/sh is bash; sh for Debian).
// Output goes to a file, not a pipe: a daemon started by the script keeps
// inherited descriptors open.
func (e *initscriptEnv) run(t *testing.T, style sysv.Style, script, action string) (string, error) {
	t.Helper()
	shell := "bash"
	if style == sysv.StyleLSB {
		shell = "sh"
	}
	out, err := os.CreateTemp(e.dir, "out-")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	ctx, cancel := context.WithTimeout(context.Background(), initscriptActionTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, shell, script, action)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), "PATH="+e.dir+"/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	runErr := cmd.Run()
	b, err := os.ReadFile(out.Name())
	if err != nil {
		t.Fatal(err)
	}
	if ctx.Err() != nil {
		t.Fatalf("%s %s did not return within %s:\n%s", filepath.Base(script), action, initscriptActionTimeout, b)
	}
	return string(b), runErr
}

// must runs an action that has to succeed.
func (e *initscriptEnv) must(t *testing.T, style sysv.Style, script, action string) string {
	t.Helper()
	out, err := e.run(t, style, script, action)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(script), action, err, out)
	}
	return out
}

// masters lists the live nginx master processes of this site (found by
// its config path in their command line).
func (e *initscriptEnv) masters() []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err != nil {
			continue
		}
		s := string(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
		if strings.HasPrefix(s, "nginx: master process") && strings.Contains(s, e.site.Conf) && !initscriptZombie(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// initscriptChildren lists the children of pid.
func initscriptChildren(pid int) []int {
	var kids []int
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		child, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			kids = append(kids, child)
		}
	}
	return kids
}

func initscriptZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z' || s[i+2] == 'X'
}

// killMasters kills what a failed test left running: the site's masters
// (by pid) and their process groups' workers.
func (e *initscriptEnv) killMasters(t *testing.T) {
	for _, pid := range e.masters() {
		t.Logf("cleanup: killing nginx master %d and its workers", pid)
		kids := initscriptChildren(pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
		for _, k := range kids {
			_ = syscall.Kill(k, syscall.SIGKILL)
		}
	}
	shims, _ := filepath.Glob(filepath.Join(e.site.Dir, "*-graceshim.pid"))
	for _, f := range shims {
		if b, err := os.ReadFile(f); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

// requireOneMaster checks exactly one master runs and serves.
func (e *initscriptEnv) requireOneMaster(t *testing.T) {
	t.Helper()
	var ms []int
	// The new master may take a moment to appear after start returns.
	waitFor(10*time.Second, 50*time.Millisecond, func() bool { ms = e.masters(); return len(ms) == 1 })
	if len(ms) != 1 {
		t.Fatalf("want exactly one nginx master, found %d: %v", len(ms), ms)
	}
	var code int
	var err error
	waitFor(10*time.Second, 50*time.Millisecond, func() bool { code, err = e.site.Get("/small"); return code == 200 })
	if code != 200 {
		t.Fatalf("nginx does not serve: code %d, %v", code, err)
	}
}

// requireNoMaster checks the site's nginx is gone when a stop returned.
func (e *initscriptEnv) requireNoMaster(t *testing.T, out string) {
	t.Helper()
	if ms := e.masters(); len(ms) != 0 {
		t.Fatalf("stop returned while nginx masters %v still run:\n%s", ms, out)
	}
}

// stopUnderLoad starts the script, puts downloads in flight and runs
// action (stop or restart) while they are; it returns the downloads and
// the action's output.
func (e *initscriptEnv) stopUnderLoad(t *testing.T, style sysv.Style, script, action string) (*downloads, string) {
	t.Helper()
	e.must(t, style, script, "start")
	e.requireOneMaster(t)
	d := startDownloads(t, e.site.URL, initscriptDownloads)
	begin := time.Now()
	out, err := e.run(t, style, script, action)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(script), action, err, out)
	}
	t.Logf("%s %s with %d downloads of %d s in flight returned after %s", filepath.Base(script), action, initscriptDownloads, initscriptSeconds, time.Since(begin).Round(10*time.Millisecond))
	return d, out
}

// checkStopAndRestart is the real run every fixed and generated nginx
// script must pass: stop with downloads in flight completes them all and
// returns only once nginx is gone; restart with downloads in flight
// completes them and leaves exactly one master, serving.
func (e *initscriptEnv) checkStopAndRestart(t *testing.T, style sysv.Style, script string, restart bool) string {
	t.Helper()
	d, out := e.stopUnderLoad(t, style, script, "stop")
	stopOut := out
	e.requireNoMaster(t, out)
	d.RequireComplete(t, e.site.FileSize, e.site.SHA256)
	t.Logf("stop: %d/%d downloads completed", d.Completed(e.site.FileSize, e.site.SHA256), initscriptDownloads)
	if !restart {
		return stopOut
	}
	d, out = e.stopUnderLoad(t, style, script, "restart")
	d.RequireComplete(t, e.site.FileSize, e.site.SHA256)
	e.requireOneMaster(t)
	t.Logf("restart: %d/%d downloads completed, one master serving", d.Completed(e.site.FileSize, e.site.SHA256), initscriptDownloads)
	if out, err := e.run(t, style, script, "status"); err != nil {
		t.Fatalf("status after restart: %v\n%s", err, out)
	}
	out = e.must(t, style, script, "stop")
	e.requireNoMaster(t, out)
	return stopOut
}

func readCorpus(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(repoPath("testdata/initscripts/fix", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fixWithCLI runs "graceshim initscript fix --in-place" on a copy of a
// corpus script, as an admin would, and returns the fixed script.
func fixWithCLI(t *testing.T, name string) []byte {
	t.Helper()
	bin := needGraceshim(t)
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, readCorpus(t, name), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "initscript", "fix", "--in-place", p)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("graceshim initscript fix --in-place %s: %v\n%s", name, err, out)
	}
	fixed, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	orig, err := os.ReadFile(p + ".orig")
	if err != nil || !bytes.Equal(orig, readCorpus(t, name)) {
		t.Fatalf("%s.orig is not the original: %v", name, err)
	}
	return fixed
}

// TestE2EInitscriptFixed runs each fixed nginx script from the corpus.
func TestE2EInitscriptFixed(t *testing.T) {
	for _, tc := range []struct {
		name    string
		style   sysv.Style
		restart bool
		reports string // what the stop prints, as the original did
	}{
		{"nginx-redhat-killproc", sysv.StyleRedHat, true, "[  OK  ]"},
		{"nginx-redhat-quit-nowait", sysv.StyleRedHat, true, "[  OK  ]"},
		{"nginx-redhat-d-before-p", sysv.StyleRedHat, true, "[  OK  ]"},
		{"nginx-redhat-kill-cat", sysv.StyleRedHat, false, ""},
		{"nginx-debian-bare-stop", sysv.StyleLSB, true, ""},
		{"nginx-debian-retry-term", sysv.StyleLSB, true, ""},
		{"nginx-redhat-conf-pid", sysv.StyleRedHat, true, "[  OK  ]"},
		// log_daemon_msg and log_end_msg of /lib/lsb/init-functions.
		{"nginx-debian-stop-schedule", sysv.StyleLSB, true, "Stopping nginx: nginx"},
		// Run with sh (dash), under set -e and set -u, as on Debian.
		{"nginx-sig-wrapper", sysv.StyleLSB, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.style == sysv.StyleLSB {
				needCmd(t, "start-stop-daemon")
			}
			e := newInitscriptEnv(t, nginxOpts{Daemon: true})
			script := e.install(t, tc.name, fixWithCLI(t, tc.name))
			out := e.checkStopAndRestart(t, tc.style, script, tc.restart)
			if !strings.Contains(out, tc.reports) {
				t.Errorf("the fixed stop does not report %q as the original did:\n%s", tc.reports, out)
			}
		})
	}
}

// TestE2EInitscriptOriginalCuts is the control: the scripts as shipped
// lose requests or do not stop at all, under the same test functions
// library and the same load.
func TestE2EInitscriptOriginalCuts(t *testing.T) {
	t.Run("killproc-term", func(t *testing.T) {
		t.Parallel()
		e := newInitscriptEnv(t, controlOpts(nginxOpts{Daemon: true}))
		script := e.install(t, "orig", readCorpus(t, "nginx-redhat-killproc"))
		d, out := e.stopUnderLoad(t, sysv.StyleRedHat, script, "stop")
		got := d.Completed(e.site.FileSize, e.site.SHA256)
		t.Logf("original killproc stop: %d/%d downloads completed:\n%s", got, initscriptDownloads, out)
		if got == initscriptDownloads {
			t.Fatalf("the original script's stop (killproc: TERM) completed every download; the control shows nothing:\n%s", out)
		}
	})
	t.Run("sig-wrapper", func(t *testing.T) {
		t.Parallel()
		// Long downloads: nginx must still drain them when the stop
		// returns, however long the script took.
		e := newInitscriptEnv(t, controlOpts(nginxOpts{Daemon: true}))
		script := e.install(t, "orig", readCorpus(t, "nginx-sig-wrapper"))
		d, out := e.stopUnderLoad(t, sysv.StyleLSB, script, "stop")
		ms := e.masters()
		d.Wait(t)
		if len(ms) == 0 {
			t.Fatalf("the original stop (sig QUIT) returned after nginx was gone; the control shows nothing:\n%s", out)
		}
		t.Logf("original sig QUIT: stop returned while nginx master %v still drained", ms)
	})
	t.Run("d-before-p", func(t *testing.T) {
		t.Parallel()
		e := newInitscriptEnv(t, nginxOpts{Daemon: true})
		script := e.install(t, "orig", readCorpus(t, "nginx-redhat-d-before-p"))
		e.must(t, sysv.StyleRedHat, script, "start")
		e.requireOneMaster(t)
		out := e.must(t, sysv.StyleRedHat, script, "stop")
		if ms := e.masters(); len(ms) != 1 {
			t.Fatalf("want the original stop (killproc -d before -p) to leave nginx running, found masters %v:\n%s", ms, out)
		}
		t.Logf("original killproc -d ... -p ...: stop exited 0 and nginx still runs")
	})
}

// TestE2EInitscriptEscalates: a fixed script whose STOP_TIMEOUT (set in
// /etc/sysconfig/nginx) runs out while downloads are in flight sends TERM
// and returns with nginx gone, long before the downloads would have
// ended: the bound holds and the admin's override is read.
func TestE2EInitscriptEscalates(t *testing.T) {
	e := newInitscriptEnv(t, controlOpts(nginxOpts{Daemon: true}))
	e.setConf(t, "STOP_TIMEOUT=1\n")
	script := e.install(t, "nginx", fixWithCLI(t, "nginx-redhat-killproc"))
	d, out := e.stopUnderLoad(t, sysv.StyleRedHat, script, "stop")
	e.requireNoMaster(t, out)
	if !strings.Contains(out, "still running 1s after QUIT: sending TERM") {
		t.Errorf("stop did not report escalating after STOP_TIMEOUT=1:\n%s", out)
	}
	if got := d.Completed(e.site.FileSize, e.site.SHA256); got == initscriptDownloads {
		t.Errorf("all %d downloads of %d s completed although STOP_TIMEOUT=1 should have cut them", got, initscriptControlSeconds)
	}
}

// TestE2EInitscriptGenerated generates scripts in both styles, with and
// without graceshim, checks them with bash -n and shellcheck, and runs
// them.
func TestE2EInitscriptGenerated(t *testing.T) {
	for _, tc := range []struct {
		style sysv.Style
		shim  bool
	}{
		{sysv.StyleRedHat, true},
		{sysv.StyleRedHat, false},
		{sysv.StyleLSB, true},
		{sysv.StyleLSB, false},
	} {
		name := tc.style.String() + "-shim"
		if !tc.shim {
			name = tc.style.String() + "-noshim"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			bin := needGraceshim(t)
			if tc.style == sysv.StyleLSB {
				needCmd(t, "start-stop-daemon")
			}
			// Under graceshim nginx runs in the foreground; alone it
			// daemonizes and writes its pid file.
			e := newInitscriptEnv(t, nginxOpts{Daemon: !tc.shim})
			args := []string{"initscript", "--style", tc.style.String(), "--name", "nginx"}
			if tc.shim {
				args = append(args, "--graceshim", bin)
			} else {
				args = append(args, "--no-shim", "--pidfile", e.site.PIDFile)
			}
			args = append(args, "--", needCmd(t, "nginx"), "-c", e.site.Conf)
			gen, err := exec.Command(bin, args...).Output()
			if err != nil {
				t.Fatalf("graceshim %s: %v", strings.Join(args, " "), err)
			}
			script := e.install(t, "nginx", gen)
			if out, err := exec.Command("bash", "-n", script).CombinedOutput(); err != nil {
				t.Fatalf("bash -n: %v\n%s", err, out)
			}
			if sc, err := exec.LookPath("shellcheck"); err == nil {
				if out, err := exec.Command(sc, script).CombinedOutput(); err != nil {
					t.Fatalf("shellcheck: %v\n%s", err, out)
				}
			} else {
				t.Error("shellcheck is not installed (CI installs it)")
			}
			e.checkStopAndRestart(t, tc.style, script, true)
			if tc.shim {
				// The stops went through graceshim's translation.
				b, err := os.ReadFile(filepath.Join(e.dir, "log", "nginx-graceshim.log"))
				if err != nil {
					t.Fatal(err)
				}
				log := string(b)
				if n := strings.Count(log, "received TERM: stopping nginx gracefully with QUIT"); n != 3 {
					t.Errorf("graceshim's log shows %d graceful stops, want 3 (stop, restart, stop):\n%s", n, log)
				}
				lines := strings.Split(strings.TrimSpace(log), "\n")
				t.Logf("graceshim's log ends:\n%s", strings.Join(lines[max(0, len(lines)-4):], "\n"))
			}
		})
	}
}

// TestE2EInitscriptCLI checks the fix command's exit codes and that bad
// input writes nothing.
func TestE2EInitscriptCLI(t *testing.T) {
	bin := needGraceshim(t)
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	broken := write("nginx-broken", readCorpus(t, "nginx-redhat-killproc"))
	right := write("nginx-right", readCorpus(t, "nginx-debian-correct"))
	unsure := write("nginx-unsure", readCorpus(t, "nginx-two-stops"))
	template := write("nginx.init.in", readCorpus(t, "nginx-pkgoss-rpm-template"))
	unknown := write("varnish", readCorpus(t, "varnish-redhat"))
	binary := write("binary", []byte("\x7fELF\x02\x01\x01\x00\x00\x00\x00"))
	withBackup := write("nginx-backup", readCorpus(t, "nginx-redhat-killproc"))
	write("nginx-backup.orig", []byte("the admin's own backup\n"))

	for _, tc := range []struct {
		name string
		args []string
		code int
		out  string // in stdout or stderr
	}{
		{"diff", []string{"fix", broken}, 0, `+    if graceshim_stop "$pidfile" "$nginx" QUIT "$STOP_TIMEOUT" only; then success "$prog shutdown"; else failure "$prog shutdown"; fi`},
		{"template", []string{"fix", "--check", template}, 4, "--preset NAME"},
		{"template with --preset", []string{"fix", "--preset", "nginx", template}, 0, `graceshim_stop "${pidfile}" "$nginx" QUIT "$STOP_TIMEOUT"`},
		{"unknown daemon", []string{"fix", "--check", unknown}, 4, "varnishd is no known daemon"},
		{"check needs fix", []string{"fix", "--check", broken}, 1, "needs a fix"},
		{"already right", []string{"fix", "--check", right}, 0, "already right"},
		{"unsure", []string{"fix", unsure}, 4, "two stop paths"},
		{"binary", []string{"fix", binary}, 2, "not a shell script"},
		{"missing", []string{"fix", filepath.Join(dir, "nosuch")}, 2, "cannot read"},
		{"backup exists", []string{"fix", "--in-place", withBackup}, 3, "already exists"},
		{"check and in-place", []string{"fix", "--check", "--in-place", broken}, 2, "cannot be used together"},
		{"unknown preset", []string{"fix", "--preset", "nosuch", broken}, 2, "unknown preset"},
		{"bad style", []string{"--style", "bsd", "--", "/usr/sbin/nginx"}, 2, "unknown style"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(bin, append([]string{"initscript"}, tc.args...)...)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.code || !strings.Contains(out.String(), tc.out) {
				t.Errorf("graceshim initscript %s: exit %d, want %d with %q:\n%s", strings.Join(tc.args, " "), code, tc.code, tc.out, out.String())
			}
		})
	}
	// Nothing was written by any of them.
	for p, want := range map[string][]byte{
		broken: readCorpus(t, "nginx-redhat-killproc"), withBackup: readCorpus(t, "nginx-redhat-killproc"),
		unsure: readCorpus(t, "nginx-two-stops"), withBackup + ".orig": []byte("the admin's own backup\n"),
		template: readCorpus(t, "nginx-pkgoss-rpm-template"), unknown: readCorpus(t, "varnish-redhat"),
	} {
		if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s changed (%v)", p, err)
		}
	}
	if _, err := os.Stat(broken + ".orig"); !os.IsNotExist(err) {
		t.Errorf("a backup was written without --in-place: %v", err)
	}

	t.Run("read-only dir", func(t *testing.T) {
		ro := filepath.Join(t.TempDir(), "ro")
		if err := os.Mkdir(ro, 0o755); err != nil {
			t.Fatal(err)
		}
		script := readCorpus(t, "nginx-redhat-killproc")
		p := filepath.Join(ro, "nginx")
		if os.Geteuid() == 0 {
			// Permission bits do not stop root: use a read-only mount.
			if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", ro).CombinedOutput(); err != nil {
				t.Skipf("cannot mount a tmpfs to make read-only: %v: %s", err, out)
			}
			defer exec.Command("umount", ro).Run()
			if err := os.WriteFile(p, script, 0o755); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command("mount", "-o", "remount,ro", ro).CombinedOutput(); err != nil {
				t.Skipf("cannot remount read-only: %v: %s", err, out)
			}
		} else {
			if err := os.WriteFile(p, script, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(ro, 0o555); err != nil {
				t.Fatal(err)
			}
			defer os.Chmod(ro, 0o755)
		}
		out, err := exec.Command(bin, "initscript", "fix", "--in-place", p).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
			t.Errorf("fix --in-place in a read-only dir: %v, want exit 3:\n%s", err, out)
		}
		ents, _ := os.ReadDir(ro)
		if len(ents) != 1 {
			t.Errorf("files left in the read-only dir: %v", ents)
		}
		if got, _ := os.ReadFile(p); !bytes.Equal(got, script) {
			t.Error("the script changed")
		}
		t.Logf("%s", bytes.TrimSpace(out))
	})
}

// TestE2EInitscriptPidFileLies: the pid file names a pid that is gone (a
// stale file) or that a live unrelated process now has. The fixed stop
// must not signal the unrelated process, must still find nginx the way
// killproc does (pidof, masters only) and stop it gracefully.
func TestE2EInitscriptPidFileLies(t *testing.T) {
	for _, tc := range []struct {
		name    string
		foreign bool
	}{{"stale", false}, {"foreign live process", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newInitscriptEnv(t, nginxOpts{Daemon: true})
			script := e.install(t, "nginx", fixWithCLI(t, "nginx-redhat-conf-pid"))
			e.must(t, sysv.StyleRedHat, script, "start")
			e.requireOneMaster(t)
			// A pid that cannot be running: above the kernel's pid_max.
			content := "99999999\n"
			var other *exec.Cmd
			if tc.foreign {
				other = exec.Command("sleep", "300")
				if err := other.Start(); err != nil {
					t.Fatal(err)
				}
				defer func() { other.Process.Kill(); other.Wait() }()
				content = strconv.Itoa(other.Process.Pid) + "\n"
			}
			d := startDownloads(t, e.site.URL, initscriptDownloads)
			if err := os.WriteFile(e.site.PIDFile, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			out := e.must(t, sysv.StyleRedHat, script, "stop")
			e.requireNoMaster(t, out)
			d.RequireComplete(t, e.site.FileSize, e.site.SHA256)
			if other != nil && initscriptZombie(other.Process.Pid) {
				t.Fatalf("the unrelated process named in the pid file was signalled:\n%s", out)
			}
			t.Logf("%s pid file: nginx stopped through pidof, %d/%d downloads completed, unrelated process untouched", tc.name, d.Completed(e.site.FileSize, e.site.SHA256), initscriptDownloads)
		})
	}
}

// TestE2EInitscriptHAProxySeveralPids: HAProxy before 2.5 with nbproc > 1
// wrote one pid a line into its pid file, and EPEL's script stopped them
// all through killproc's pidof. HAProxy 2.6 (Debian 12) has no nbproc any
// more (removed in 2.5), so the test makes the same situation from real
// HAProxy processes: two daemons (-D) on one port (HAProxy binds with
// SO_REUSEPORT by default, as nbproc's processes did), both pids in the
// pid file, one a line. The fixed script's stop must soft-stop both (every
// download through either intact), restart must leave exactly one HAProxy
// that serves, and status must say it runs.
func TestE2EInitscriptHAProxySeveralPids(t *testing.T) {
	t.Run("fixed", func(t *testing.T) { t.Parallel(); haproxySeveralPids(t, true) })
	// The control: the original's killproc $prog finds both through
	// pidof too, but sends TERM, HAProxy's hard stop.
	t.Run("original", func(t *testing.T) { t.Parallel(); haproxySeveralPids(t, false) })
}

func haproxySeveralPids(t *testing.T, fixed bool) {
	haproxy := needCmd(t, "haproxy")
	o := nginxOpts{Daemon: true}
	if !fixed {
		o = controlOpts(o) // TERM must find every download in flight
	}
	e := newInitscriptEnv(t, o)
	port := freePort(t)
	conf := filepath.Join(e.dir, "haproxy.cfg")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s

frontend fe
    bind 127.0.0.1:%d
    default_backend be

backend be
    server nginx 127.0.0.1:%d
`, port, e.site.Port)), 0o644); err != nil {
		t.Fatal(err)
	}
	// Narrow pidof to this test's HAProxy: its command line names conf.
	pidof := fmt.Sprintf("#!/bin/bash\npids=\nfor p in $(%s \"$@\"); do\n\tif tr '\\0' ' ' </proc/$p/cmdline 2>/dev/null | grep -qF %q; then pids=\"$pids $p\"; fi\ndone\n[ -n \"$pids\" ] || exit 1\necho $pids\n", needCmd(t, "pidof"), conf)
	if err := os.WriteFile(filepath.Join(e.dir, "bin", "pidof"), []byte(pidof), 0o755); err != nil {
		t.Fatal(err)
	}
	haproxys := func() []int {
		out, _ := exec.Command(filepath.Join(e.dir, "bin", "pidof"), haproxy).Output()
		var pids []int
		for _, f := range strings.Fields(string(out)) {
			if p, err := strconv.Atoi(f); err == nil && !initscriptZombie(p) {
				pids = append(pids, p)
			}
		}
		return pids
	}
	t.Cleanup(func() {
		for _, p := range haproxys() {
			syscall.Kill(p, syscall.SIGKILL)
		}
	})
	// The nginx behind HAProxy, started directly.
	if out, err := exec.Command("/usr/sbin/nginx", "-c", e.site.Conf).CombinedOutput(); err != nil {
		t.Fatalf("nginx: %v\n%s", err, out)
	}
	e.requireOneMaster(t)

	orig := readCorpus(t, "haproxy-redhat")
	if fixed {
		orig = fixWithCLI(t, "haproxy-redhat")
	}
	src := strings.ReplaceAll(string(orig), "/etc/haproxy/haproxy.cfg", conf)
	script := e.install(t, "haproxy", []byte(src))
	pidfile := filepath.Join(e.site.Dir, "haproxy.pid")
	var lines []string
	for i := 0; i < 2; i++ {
		own := filepath.Join(e.dir, fmt.Sprintf("haproxy-%d.pid", i))
		if out, err := exec.Command(haproxy, "-D", "-f", conf, "-p", own).CombinedOutput(); err != nil {
			t.Fatalf("haproxy -D: %v\n%s", err, out)
		}
		b, err := os.ReadFile(own)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, strings.TrimSpace(string(b)))
	}
	if err := os.WriteFile(pidfile, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if ps := haproxys(); len(ps) != 2 {
		t.Fatalf("want two HAProxy processes, found %v", ps)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/big", port)
	client := &httpClient{timeout: 2 * time.Second}
	if !waitFor(10*time.Second, 20*time.Millisecond, func() bool {
		code, _ := client.status(fmt.Sprintf("127.0.0.1:%d", port), "/small")
		return code == 200
	}) {
		t.Fatal("haproxy does not pass requests on")
	}

	d := startDownloads(t, url, initscriptDownloads)
	begin := time.Now()
	out := e.must(t, sysv.StyleRedHat, script, "restart")
	took := time.Since(begin)
	if !fixed {
		got := d.Completed(e.site.FileSize, e.site.SHA256)
		t.Logf("figures: the original's restart (killproc: TERM to both): %d/%d downloads intact, took %s", got, initscriptDownloads, took.Round(10*time.Millisecond))
		if got == initscriptDownloads {
			t.Fatalf("every download survived the original's TERM; the control tells nothing:\n%s", out)
		}
		return
	}
	d.RequireComplete(t, e.site.FileSize, e.site.SHA256)
	var ps []int
	waitFor(10*time.Second, 50*time.Millisecond, func() bool { ps = haproxys(); return len(ps) == 1 })
	if len(ps) != 1 {
		t.Fatalf("after restart want exactly one HAProxy, found %v:\n%s", ps, out)
	}
	for _, l := range lines {
		if p, _ := strconv.Atoi(l); p == ps[0] {
			t.Fatalf("HAProxy %d from the old pid file survived the restart:\n%s", p, out)
		}
	}
	if out, err := e.run(t, sysv.StyleRedHat, script, "status"); err != nil {
		t.Fatalf("status after restart: %v\n%s", err, out)
	}
	t.Logf("figures: restart with two HAProxy pids in the pid file: %d/%d downloads intact, one HAProxy after, restart took %s",
		d.Completed(e.site.FileSize, e.site.SHA256), initscriptDownloads, took.Round(10*time.Millisecond))
	out = e.must(t, sysv.StyleRedHat, script, "stop")
	if ps := haproxys(); len(ps) != 0 {
		t.Fatalf("stop returned while HAProxy %v still runs:\n%s", ps, out)
	}
}

// TestE2EInitscriptUpgradeLeftAlone: the fixer leaves an upgrade action's
// graceful signal to the old master alone in both styles (one decision,
// see the sysv package doc). Run for real: the fixed scripts' "upgrade"
// (nginx USR2, then QUIT to the old master named in nginx.pid.oldbin)
// returns while the old master drains, every download it holds completes,
// and exactly one master, the new one, serves afterwards.
func TestE2EInitscriptUpgradeLeftAlone(t *testing.T) {
	for _, tc := range []struct {
		name  string
		style sysv.Style
	}{
		{"nginx-redhat-killproc", sysv.StyleRedHat},
		{"nginx-debian-stop-schedule", sysv.StyleLSB},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.style == sysv.StyleLSB {
				needCmd(t, "start-stop-daemon")
			}
			e := newInitscriptEnv(t, nginxOpts{Daemon: true})
			script := e.install(t, tc.name, fixWithCLI(t, tc.name))
			e.must(t, tc.style, script, "start")
			e.requireOneMaster(t)
			old := e.masters()[0]
			d := startDownloads(t, e.site.URL, initscriptDownloads)
			begin := time.Now()
			out := e.must(t, tc.style, script, "upgrade")
			took := time.Since(begin)
			d.RequireComplete(t, e.site.FileSize, e.site.SHA256)
			e.requireOneMaster(t)
			if ms := e.masters(); ms[0] == old {
				t.Fatalf("the old master %d still runs after the upgrade:\n%s", old, out)
			}
			t.Logf("figures: upgrade returned after %s; %d/%d downloads on the old master completed; one new master serves",
				took.Round(10*time.Millisecond), d.Completed(e.site.FileSize, e.site.SHA256), initscriptDownloads)
			out = e.must(t, tc.style, script, "stop")
			e.requireNoMaster(t, out)
		})
	}
}

// TestE2EInitscriptCorpusExitCodes runs "graceshim initscript fix --check"
// on every script of the corpus and compares its exit code with
// testdata/initscripts/fix/exit-codes.txt, which lists every script.
func TestE2EInitscriptCorpusExitCodes(t *testing.T) {
	bin := needGraceshim(t)
	b, err := os.ReadFile(repoPath("testdata/initscripts/fix/exit-codes.txt"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 2 && !strings.HasPrefix(l, "#") {
			code, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatalf("exit-codes.txt: %q: %v", l, err)
			}
			want[f[0]] = code
		}
	}
	ents, err := os.ReadDir(repoPath("testdata/initscripts/fix"))
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, ent := range ents {
		name := ent.Name()
		if strings.Contains(name, ".") {
			continue // goldens and exit-codes.txt
		}
		seen++
		code, ok := want[name]
		if !ok {
			t.Errorf("%s is not in exit-codes.txt", name)
			continue
		}
		cmd := exec.Command(bin, "initscript", "fix", "--check", repoPath("testdata/initscripts/fix", name))
		out, err := cmd.CombinedOutput()
		got := 0
		if ee, ok := err.(*exec.ExitError); ok {
			got = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if got != code {
			t.Errorf("fix --check %s: exit %d, want %d:\n%s", name, got, code, out)
		}
	}
	if seen != len(want) {
		t.Errorf("exit-codes.txt lists %d scripts, the corpus has %d", len(want), seen)
	}
}

// TestE2EInitscriptSigWrapperNotRunning: the fixed "sig QUIT && exit 0;
// echo Not running" stop, with no nginx running, still says "Not running"
// as the original does (the fix tests graceshim_stop's _gs_none so that
// branch stays reachable); with nginx running it stops it and says
// nothing of the kind.
func TestE2EInitscriptSigWrapperNotRunning(t *testing.T) {
	e := newInitscriptEnv(t, nginxOpts{Daemon: true})
	orig := e.install(t, "orig", readCorpus(t, "nginx-sig-wrapper"))
	fixed := e.install(t, "fixed", fixWithCLI(t, "nginx-sig-wrapper"))
	for _, script := range []string{orig, fixed} {
		out, err := e.run(t, sysv.StyleLSB, script, "stop")
		if err != nil || !strings.Contains(out, "Not running") {
			t.Errorf("%s stop with nothing running: %v, want exit 0 and \"Not running\":\n%s", filepath.Base(script), err, out)
		}
	}
	e.must(t, sysv.StyleLSB, fixed, "start")
	e.requireOneMaster(t)
	out := e.must(t, sysv.StyleLSB, fixed, "stop")
	e.requireNoMaster(t, out)
	if strings.Contains(out, "Not running") {
		t.Errorf("the fixed stop of a running nginx says \"Not running\":\n%s", out)
	}
}
