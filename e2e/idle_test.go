package e2e

// What an idle supervisor costs, side by side with tini (Debian's tini
// package): wake-ups per second (the context switches of all its threads,
// voluntary and not, over idleWindow) and its memory (VmRSS, and of it
// RssAnon, its own memory: the rest is the binary's pages, shared with
// the page cache). Each supervises a process that sleeps (a worker
// daemon: nothing to listen for, so graceshim waits out its ready bound,
// here 2 s instead of the default 30 s to keep the run short) and real
// nginx serving nothing. All four run at once, so that the load of a
// shared machine weighs on all alike. Issue 14's goal: at most 2
// wake-ups a second and 8 MB. Run as
//
//	go test -run '^$' -bench BenchmarkIdle -benchtime 1x ./e2e/

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const idleWindow = 20 * time.Second

// switches sums the context switches of pid's threads.
func switches(pid int) (int, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	if err != nil || len(tasks) == 0 {
		return 0, fmt.Errorf("no threads of %d: %v", pid, err)
	}
	n := 0
	for _, task := range tasks {
		b, err := os.ReadFile(filepath.Join(task, "status"))
		if err != nil {
			continue // a thread that exited
		}
		for _, line := range strings.Split(string(b), "\n") {
			k, v, _ := strings.Cut(line, ":")
			if k == "voluntary_ctxt_switches" || k == "nonvoluntary_ctxt_switches" {
				c, _ := strconv.Atoi(strings.TrimSpace(v))
				n += c
			}
		}
	}
	return n, nil
}

// kB reads a "N kB" field of /proc/PID/status.
func kB(pid int, field string) float64 {
	n, _ := strconv.Atoi(strings.TrimSuffix(procField(pid, field), " kB"))
	return float64(n)
}

func BenchmarkIdle(b *testing.B) {
	shim := needGraceshim(b)
	tini := needCmd(b, "tini")
	nginx := needCmd(b, "nginx")
	type subject struct {
		name string
		argv []string
		cmd  *exec.Cmd
		sw   int
	}
	var subjects []*subject
	for _, wrap := range []struct {
		name string
		argv []string
	}{
		// -s: a subreaper, as graceshim is, without being PID 1.
		{"tini", []string{tini, "-s", "--"}},
		{"graceshim", []string{shim, "--ready-timeout=2s", "--notify=off", "--"}},
	} {
		site := newNginxSite(b, nginxOpts{})
		subjects = append(subjects,
			&subject{name: wrap.name + "-sleep", argv: append(wrap.argv, "sleep", "600")},
			&subject{name: wrap.name + "-nginx", argv: append(wrap.argv, nginx, "-c", site.Conf)})
	}
	for b.Loop() {
		for _, s := range subjects {
			s.cmd = exec.Command(s.argv[0], s.argv[1:]...)
			if err := s.cmd.Start(); err != nil {
				b.Fatal(err)
			}
		}
		// Past graceshim's ready bound and nginx's start.
		time.Sleep(4 * time.Second)
		for _, s := range subjects {
			n, err := switches(s.cmd.Process.Pid)
			if err != nil {
				b.Fatalf("%s: %v", s.name, err)
			}
			s.sw = n
		}
		time.Sleep(idleWindow)
		for _, s := range subjects {
			pid := s.cmd.Process.Pid
			n, err := switches(pid)
			if err != nil {
				b.Fatalf("%s: %v", s.name, err)
			}
			b.ReportMetric(float64(n-s.sw)/idleWindow.Seconds(), s.name+"-wakeups/s")
			b.ReportMetric(kB(pid, "VmRSS")/1024, s.name+"-rss-MB")
			b.ReportMetric(kB(pid, "RssAnon")/1024, s.name+"-anon-MB")
		}
		for _, s := range subjects {
			s.cmd.Process.Signal(syscall.SIGTERM)
			s.cmd.Wait()
		}
	}
}

// TestE2EIdleUnmapsStartup: once past its ready bound, graceshim holds
// much less of its binary mapped than while it waited (dropStartupPages),
// and it still stops its child as before: the code faults back in.
func TestE2EIdleUnmapsStartup(t *testing.T) {
	shim := needGraceshim(t)
	var stderr syncBuffer
	// The ready bound leaves room to measure the wait: the sample is
	// taken once start-up is done (the child started, its signals
	// chosen) and counts only if the bound had not passed by then.
	cmd := exec.Command(shim, "--ready-timeout=3s", "--notify=off", "--", "sleep", "600")
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	pid := cmd.Process.Pid
	const started, bound = "graceful and fast signal are both TERM", "no listening socket seen in 3s"
	if !waitFor(10*time.Second, 10*time.Millisecond, func() bool { return strings.Contains(stderr.String(), started) }) {
		t.Fatalf("graceshim did not start sleep:\n%s", stderr.String())
	}
	waiting := kB(pid, "RssFile")
	if strings.Contains(stderr.String(), bound) {
		t.Fatalf("the ready bound passed before RssFile was read while waiting:\n%s", stderr.String())
	}
	if !waitFor(10*time.Second, 10*time.Millisecond, func() bool { return strings.Contains(stderr.String(), bound) }) {
		t.Fatalf("graceshim did not reach its ready bound:\n%s", stderr.String())
	}
	var idle float64
	if !waitFor(10*time.Second, 100*time.Millisecond, func() bool {
		idle = kB(pid, "RssFile")
		return idle < waiting/2
	}) {
		t.Fatalf("RssFile %.0f kB while waiting for a listener, %.0f kB after the ready bound: want less than half\n%s", waiting, idle, stderr.String())
	}
	t.Logf("RssFile %.0f kB while waiting for a listener, %.0f kB idle", waiting, idle)
	cmd.Process.Signal(syscall.SIGTERM)
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 128+int(syscall.SIGTERM) {
		t.Fatalf("graceshim ended with %v, want exit 143 (sleep killed by TERM)\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "killed by signal TERM") {
		t.Errorf("no word of the child's end:\n%s", stderr.String())
	}
}
