package sysv

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStopFunc runs graceshim_stop under bash against real processes that
// honour or ignore the graceful signal, and checks the escalation it
// reports and that the process is gone (or, for a stale pid file, left
// alone) when it returns. The processes are our children, so they stay
// zombies until reaped: graceshim_stop must count a zombie as gone.
func TestStopFunc(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("needs bash")
	}
	for _, tc := range []struct {
		name    string
		ignore  string // signals the daemon ignores
		want    []string
		notWant []string
	}{
		{"graceful", "", nil, []string{"sending TERM", "sending KILL"}},
		{"ignores QUIT", "QUIT", []string{"still running 1s after QUIT: sending TERM"}, []string{"sending KILL"}},
		{"ignores QUIT and TERM", "QUIT TERM", []string{"sending TERM", "still running 5s after TERM: sending KILL"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			pidfile := filepath.Join(dir, "d.pid")
			script := "trap '' " + tc.ignore + "; exec sleep 300"
			if tc.ignore == "" {
				script = "exec sleep 300"
			}
			d := exec.Command(bash, "-c", script)
			if err := d.Start(); err != nil {
				t.Fatal(err)
			}
			defer d.Process.Kill()
			exited := make(chan struct{})
			// Reap only after graceshim_stop returned, to leave a zombie.
			// Wait until bash has exec'd sleep with its signal dispositions.
			if !waitUntil(5*time.Second, func() bool {
				exe, _ := os.Readlink("/proc/" + strconv.Itoa(d.Process.Pid) + "/exe")
				return strings.HasSuffix(exe, "/sleep")
			}) {
				t.Fatal("the test daemon did not start")
			}
			if err := os.WriteFile(pidfile, []byte(strconv.Itoa(d.Process.Pid)+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			stop := exec.Command(bash, "-c", StopFunc+`graceshim_stop "$1" /usr/bin/sleep QUIT 1; echo "rc=$?"`, "bash", pidfile)
			var out bytes.Buffer
			stop.Stdout, stop.Stderr = &out, &out
			if err := stop.Run(); err != nil {
				t.Fatalf("graceshim_stop: %v\n%s", err, out.String())
			}
			got := out.String()
			if !strings.Contains(got, "rc=0") {
				t.Errorf("graceshim_stop did not return 0:\n%s", got)
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("output lacks %q:\n%s", w, got)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(got, w) {
					t.Errorf("output has %q:\n%s", w, got)
				}
			}
			if _, err := os.Stat(pidfile); !os.IsNotExist(err) {
				t.Errorf("pid file still there after the stop: %v", err)
			}
			go func() { d.Wait(); close(exited) }()
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
				t.Fatal("the daemon did not exit")
			}
		})
	}
}

// TestStopFuncNotRunning: a stale pid file and a missing one are a
// successful stop of nothing.
func TestStopFuncNotRunning(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("needs bash")
	}
	dir := t.TempDir()
	stale := filepath.Join(dir, "stale.pid")
	// A pid that cannot be running: above the kernel's pid_max limit.
	if err := os.WriteFile(stale, []byte("99999999\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{stale, filepath.Join(dir, "missing.pid")} {
		// No process runs this binary, so pidof finds nothing either.
		out, err := exec.Command(bash, "-c", StopFunc+`graceshim_stop "$1" /usr/sbin/graceshim-test-none QUIT 1; echo "none=$_gs_none"`, "bash", f).CombinedOutput()
		if err != nil {
			t.Errorf("graceshim_stop %s: %v\n%s", f, err, out)
		}
		// What a rewritten "sig QUIT && exit 0; echo Not running" reads.
		if !strings.Contains(string(out), "none=1") {
			t.Errorf("graceshim_stop %s: _gs_none not set with nothing running:\n%s", f, out)
		}
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale pid file kept: %v", err)
	}
}

func waitUntil(d time.Duration, cond func() bool) bool {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cond()
}

// TestStopFuncSetEAndStale: graceshim_stop inside a 'set -e' script with a
// pid file that has no trailing newline stops the daemon and lets the
// script go on; with the daemon's binary named, a pid that runs something
// else (a stale pid file) is left alone.
func TestStopFuncSetEAndStale(t *testing.T) {
	for _, tc := range []struct {
		name      string
		binary    string
		wantAlive bool
		want      string
	}{
		{"set -e, no newline", "sleep", false, "after rc=0"},
		{"binary matches", "/usr/bin/sleep", false, "after rc=0"},
		// The pid runs something else: a stale pid file whose pid was
		// given to another process. No such binary runs, so the pidof
		// fallback finds nothing and the stop succeeds without a signal.
		{"stale pid file", "/usr/sbin/graceshim-test-none", true, "after rc=0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			pidfile := filepath.Join(dir, "d.pid")
			d := exec.Command("sleep", "300")
			if err := d.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { d.Process.Kill(); d.Wait() }()
			if err := os.WriteFile(pidfile, []byte(strconv.Itoa(d.Process.Pid)), 0o644); err != nil {
				t.Fatal(err)
			}
			script := "set -eu\n" + StopFunc + `graceshim_stop "$1" "$2" TERM 2; echo "after rc=$?"`
			out, err := exec.Command("sh", "-c", script, "sh", pidfile, tc.binary).CombinedOutput()
			if err != nil {
				t.Fatalf("the script failed under set -e: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Errorf("output %q, want %q", out, tc.want)
			}
			alive := procAlive(d.Process.Pid)
			if alive != tc.wantAlive {
				t.Errorf("daemon alive=%v after the stop, want %v\n%s", alive, tc.wantAlive, out)
			}
		})
	}
}

// procAlive reports whether pid runs and is not a zombie.
func procAlive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z'
}

// TestStopFuncSeveralPids: a pid file with several pids (HAProxy with
// nbproc writes one a line) gets every one of them stopped, and the
// timeout reads killproc's suffixes.
func TestStopFuncSeveralPids(t *testing.T) {
	dir := t.TempDir()
	var pids []string
	var procs []*exec.Cmd
	for i := 0; i < 3; i++ {
		d := exec.Command("sleep", "300")
		if err := d.Start(); err != nil {
			t.Fatal(err)
		}
		procs = append(procs, d)
		pids = append(pids, strconv.Itoa(d.Process.Pid))
	}
	defer func() {
		for _, d := range procs {
			d.Process.Kill()
			d.Wait()
		}
	}()
	pidfile := filepath.Join(dir, "d.pid")
	// Two lines, the second with two pids, as __pids_var_run reads them.
	if err := os.WriteFile(pidfile, []byte(pids[0]+"\n"+pids[1]+" "+pids[2]+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("sh", "-c", "set -eu\n"+StopFunc+`graceshim_stop "$1" /usr/bin/sleep TERM 1m; echo "rc=$?"`, "sh", pidfile).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "rc=0") {
		t.Fatalf("graceshim_stop: %v\n%s", err, out)
	}
	for i, d := range procs {
		if procAlive(d.Process.Pid) {
			t.Errorf("pid %d (line %d of the pid file) still runs after the stop", d.Process.Pid, i)
		}
	}
}

// TestStopFuncTimeouts: every timeout stops the daemon. Leading zeros
// are decimal (dash's arithmetic fails on 08 and reads 010 as 8), N.M is
// rounded up as killproc -d accepts decimals, and a timeout it cannot
// read, or one that would overflow, gets a warning and the default bound
// rather than leaving the daemon running.
func TestStopFuncTimeouts(t *testing.T) {
	for _, tc := range []struct{ timeout, warn string }{
		{"08", ""}, {"010", ""}, {"1.5", ""}, {"09s", ""},
		{"1min", "timeout '1min' is not N, N.N, Ns, Nm, Nh or Nd: waiting 60 s"},
		{"999999999999d", "timeout '999999999999d' is not N, N.N, Ns, Nm, Nh or Nd: waiting 60 s"},
	} {
		t.Run(tc.timeout, func(t *testing.T) {
			t.Parallel()
			d := exec.Command("sleep", "300")
			if err := d.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { d.Process.Kill(); d.Wait() }()
			pidfile := filepath.Join(t.TempDir(), "d.pid")
			if err := os.WriteFile(pidfile, []byte(strconv.Itoa(d.Process.Pid)), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command("dash", "-c", "set -eu\n"+StopFunc+`graceshim_stop "$1" sleep TERM "$2"; echo "rc=$?"`, "dash", pidfile, tc.timeout).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "rc=0") || !strings.Contains(string(out), tc.warn) {
				t.Errorf("timeout %q: %v, want rc=0 and %q:\n%s", tc.timeout, err, tc.warn, out)
			}
			if tc.warn == "" && strings.Contains(string(out), "waiting 60 s") {
				t.Errorf("timeout %q read as unreadable:\n%s", tc.timeout, out)
			}
			if procAlive(d.Process.Pid) {
				t.Errorf("timeout %q: the daemon still runs:\n%s", tc.timeout, out)
			}
		})
	}
}

// TestStopFuncPidofMasters: with no pid file, graceshim_stop falls back to
// pidof like killproc, but signals only masters: a process whose parent
// runs the same binary is a worker, left to its master.
func TestStopFuncPidofMasters(t *testing.T) {
	dir := t.TempDir()
	// A binary of our own name, so that pidof finds only this test's.
	bin := filepath.Join(dir, "gs-test-daemon")
	// The master starts a worker (the same binary), records its pid and
	// waits; TERM ends the master, not the worker.
	master, worker := startMasterWorker(t, bin, `"$0" -c 'trap "" TERM; while :; do sleep 0.1; done' & echo $! >"$1.tmp"; mv "$1.tmp" "$1"; wait`)
	// With "only", the missing pid file means nothing runs: no pidof.
	out, err := exec.Command("sh", "-c", StopFunc+`graceshim_stop "$1" "$2" TERM 5 only; echo "rc=$?"`, "sh", filepath.Join(dir, "missing.pid"), bin).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "rc=0") || !procAlive(master.Process.Pid) {
		t.Fatalf("graceshim_stop ... only: %v, master alive %v\n%s", err, procAlive(master.Process.Pid), out)
	}
	out, err = exec.Command("sh", "-c", StopFunc+`graceshim_stop "$1" "$2" TERM 5; echo "rc=$?"`, "sh", filepath.Join(dir, "missing.pid"), bin).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "rc=0") {
		t.Fatalf("graceshim_stop: %v\n%s", err, out)
	}
	if procAlive(master.Process.Pid) {
		t.Errorf("the master found by pidof still runs:\n%s", out)
	}
	if !strings.Contains(string(out), "stopping the gs-test-daemon masters pidof finds: "+strconv.Itoa(master.Process.Pid)) {
		t.Errorf("the pidof fallback is not reported:\n%s", out)
	}
	if !procAlive(worker) {
		t.Errorf("the worker was signalled too; pidof's masters only should be:\n%s", out)
	}
}

// TestStopFuncReportsFailure: when the processes do not go (here kill is
// a shell function that sends nothing, standing in for a process that
// survives KILL, such as one stuck in the kernel), graceshim_stop returns
// 1 and keeps the pid file, so the script reports [FAILED] rather than
// success.
func TestStopFuncReportsFailure(t *testing.T) {
	d := exec.Command("sleep", "300")
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { d.Process.Kill(); d.Wait() }()
	pidfile := filepath.Join(t.TempDir(), "d.pid")
	if err := os.WriteFile(pidfile, []byte(strconv.Itoa(d.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command("sh", "-c", "kill() { :; }\n"+StopFunc+`graceshim_stop "$1" sleep QUIT 1; echo "rc=$?"`, "sh", pidfile).CombinedOutput()
	for _, want := range []string{"still running 1s after QUIT: sending TERM", "still running 5s after TERM: sending KILL", "rc=1"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(pidfile); err != nil {
		t.Errorf("the pid file of a process still running was removed: %v", err)
	}
}

// TestStopFuncExeUnreadable: a daemon under another uid, stopped by a
// caller without CAP_SYS_PTRACE (as in a container with Docker's default
// capabilities), has an unreadable /proc/PID/exe. graceshim_stop must not
// take it for gone: it identifies the daemon by argv[0] and stops it, or,
// when argv[0] does not confirm it either, says so, fails and keeps the
// pid file.
func TestStopFuncExeUnreadable(t *testing.T) {
	setpriv, err := exec.LookPath("setpriv")
	if err != nil || os.Geteuid() != 0 {
		t.Skip("needs root and setpriv (util-linux)")
	}
	for _, tc := range []struct {
		name, binary string
		wantRC       string
		wantAlive    bool
		wantPidfile  bool
		want         string
	}{
		{"argv[0] confirms", "/usr/bin/sleep", "rc=0", false, false, ""},
		{"nothing confirms", "/usr/sbin/graceshim-test-none", "rc=1", true, true, "/exe is unreadable and argv[0] is not graceshim-test-none: not signalling it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "sleep", "300")
			if err := d.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { d.Process.Kill(); d.Wait() }()
			pid := strconv.Itoa(d.Process.Pid)
			if !waitUntil(5*time.Second, func() bool {
				b, _ := os.ReadFile("/proc/" + pid + "/cmdline")
				return strings.HasPrefix(string(b), "sleep\x00")
			}) {
				t.Fatal("the test daemon did not start")
			}
			pidfile := filepath.Join(t.TempDir(), "d.pid")
			if err := os.WriteFile(pidfile, []byte(pid+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(setpriv, "--inh-caps=-sys_ptrace", "--bounding-set=-sys_ptrace", "dash", "-c",
				StopFunc+`graceshim_stop "$1" "$2" TERM 2; echo "rc=$?"`, "dash", pidfile, tc.binary).CombinedOutput()
			if err != nil {
				t.Fatalf("graceshim_stop: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), tc.wantRC) || !strings.Contains(string(out), tc.want) {
				t.Errorf("output lacks %q or %q:\n%s", tc.wantRC, tc.want, out)
			}
			if procAlive(d.Process.Pid) != tc.wantAlive {
				t.Errorf("daemon alive=%v, want %v:\n%s", procAlive(d.Process.Pid), tc.wantAlive, out)
			}
			if _, err := os.Stat(pidfile); (err == nil) != tc.wantPidfile {
				t.Errorf("pid file kept=%v, want %v:\n%s", err == nil, tc.wantPidfile, out)
			}
		})
	}
}

// TestStopFuncKillsWorkers: a master that ignores the graceful signal and
// TERM is KILLed; its worker (the same binary, here ignoring TERM too)
// would be orphaned still holding the master's listening sockets, so it
// is KILLed with the master and waited for.
func TestStopFuncKillsWorkers(t *testing.T) {
	killsWorkers(t, []string{"sh"}, nil)
}

// TestStopFuncBusyBox: the same stop, run by BusyBox's sh with nothing but
// BusyBox's applets on PATH (no ps at all), and with a sleep that refuses
// fractions as BusyBox built without FEATURE_FLOAT_SLEEP does: the stop
// still escalates, finds the worker through /proc and ends.
func TestStopFuncBusyBox(t *testing.T) {
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("needs busybox (Debian package busybox, in .ci/install-deps)")
	}
	for _, frac := range []bool{true, false} {
		name := "fractional sleep"
		if !frac {
			name = "whole-second sleep"
		}
		t.Run(name, func(t *testing.T) {
			bin := t.TempDir()
			for _, applet := range []string{"sh", "cat", "tr", "readlink", "sleep", "pidof", "rm", "mv", "echo"} {
				if err := os.Symlink(busybox, filepath.Join(bin, applet)); err != nil {
					t.Fatal(err)
				}
			}
			refused := filepath.Join(t.TempDir(), "refused")
			if !frac {
				os.Remove(filepath.Join(bin, "sleep"))
				sleep := "#!" + busybox + " sh\ncase $1 in *.*) echo \"sleep: invalid number '$1'\" >&2; : >" + refused + "; exit 1 ;; esac\nexec " + busybox + " sleep \"$1\"\n"
				if err := os.WriteFile(filepath.Join(bin, "sleep"), []byte(sleep), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			killsWorkers(t, []string{busybox, "sh"}, []string{"PATH=" + bin})
			if _, err := os.Stat(refused); !frac && err != nil {
				t.Errorf("the stop never tried a fractional sleep, so the fallback was not exercised: %v", err)
			}
		})
	}
}

// killsWorkers runs TestStopFuncKillsWorkers' stop with the shell sh and
// the environment env (nil: the test's own).
func killsWorkers(t *testing.T, sh []string, env []string) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "gs-test-daemon")
	master, worker := startMasterWorker(t, bin, `trap "" QUIT TERM; "$0" -c 'trap "" QUIT TERM; while :; do sleep 0.1; done' & echo $! >"$1.tmp"; mv "$1.tmp" "$1"; while :; do sleep 0.1; done`)
	pidfile := filepath.Join(dir, "d.pid")
	if err := os.WriteFile(pidfile, []byte(strconv.Itoa(master.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	stop := exec.Command(sh[0], append(sh[1:], "-c", StopFunc+`graceshim_stop "$1" "$2" QUIT 1 only; echo "rc=$?"`, "sh", pidfile, bin)...)
	stop.Env = env
	out, err := stop.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "rc=0") || !strings.Contains(string(out), "sending KILL") {
		t.Fatalf("graceshim_stop: %v\n%s", err, out)
	}
	if procAlive(worker) {
		t.Errorf("the worker of the KILLed master still runs:\n%s", out)
	}
}

// TestStopFuncWallClockStill: the wait is bounded by time since boot, not
// by the wall clock: with a date that always prints the same second (a
// clock set back mid-stop looks the same to a date +%s loop, which then
// waits on), a daemon that ignores QUIT is still sent TERM after the
// timeout; and _gs_none stays empty when something was stopped.
func TestStopFuncWallClockStill(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("needs bash")
	}
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "date"), []byte("#!/bin/sh\necho 1000000000\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	d := exec.Command(bash, "-c", "trap '' QUIT; exec sleep 300")
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { d.Process.Kill(); d.Wait() }()
	if !waitUntil(5*time.Second, func() bool {
		exe, _ := os.Readlink("/proc/" + strconv.Itoa(d.Process.Pid) + "/exe")
		return strings.HasSuffix(exe, "/sleep")
	}) {
		t.Fatal("the test daemon did not start")
	}
	pidfile := filepath.Join(t.TempDir(), "d.pid")
	if err := os.WriteFile(pidfile, []byte(strconv.Itoa(d.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stop := exec.CommandContext(ctx, bash, "-c", StopFunc+`graceshim_stop "$1" /usr/bin/sleep QUIT 1 only; echo "rc=$? none=$_gs_none"`, "bash", pidfile)
	stop.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
	out, err := stop.CombinedOutput()
	if err != nil {
		t.Fatalf("graceshim_stop: %v (a wait bounded by date +%%s never ends here)\n%s", err, out)
	}
	if !strings.Contains(string(out), "still running 1s after QUIT: sending TERM") || !strings.Contains(string(out), "rc=0 none=\n") {
		t.Errorf("graceshim_stop did not escalate after its bound, or set _gs_none:\n%s", out)
	}
}

// startMasterWorker copies bash to bin (a name of the test's own, so
// that pidof finds only this test's processes) and runs script in it as
// a master: script is given bin as $0 and a file as $1, where it must
// write the pid of the worker it starts (bin again). Both are killed when
// the test ends.
func startMasterWorker(t *testing.T, bin, script string) (master *exec.Cmd, worker int) {
	t.Helper()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("needs bash")
	}
	src, err := os.ReadFile(bash)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, src, 0o755); err != nil {
		t.Fatal(err)
	}
	ready := filepath.Join(filepath.Dir(bin), "worker.pid")
	master = exec.Command(bin, "-c", script, bin, ready)
	if err := master.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { master.Process.Kill(); master.Wait() })
	if !waitUntil(10*time.Second, func() bool {
		b, err := os.ReadFile(ready)
		if err != nil {
			return false
		}
		worker, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		exe, _ := os.Readlink("/proc/" + strconv.Itoa(worker) + "/exe")
		return worker > 0 && exe == bin
	}) {
		t.Fatal("the test master did not start its worker")
	}
	t.Cleanup(func() { syscall.Kill(worker, syscall.SIGKILL) })
	return master, worker
}
