package e2e

// graceshim demo, run as a user runs it: the built binary, its real child
// (graceshim demo-server) and real downloads on loopback.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

var demoSummary = regexp.MustCompile(`(?m)^(\d+)/(\d+) in-flight requests completed, stop took (\S+)( \(a plain TERM is nginx's fast shutdown\))?$`)

// runDemo runs graceshim demo with args and returns its output and exit
// code.
func runDemo(t *testing.T, args ...string) (string, int) {
	t.Helper()
	bin := needGraceshim(t)
	cmd := exec.Command(bin, append([]string{"demo"}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		requireNoDemoServer(t, cmd.Process.Pid)
		return out.String(), code
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("graceshim demo did not end within 2 minutes:\n%s", out.String())
	}
	return "", 0
}

// demoServers lists the demo servers the demo with pid parent started: the
// processes running "demo-server ... --parent PID".
func demoServers(parent int) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		if len(args) < 2 || args[1] != "demo-server" {
			continue
		}
		for i := 0; i+1 < len(args); i++ {
			if args[i] == "--parent" && args[i+1] == strconv.Itoa(parent) {
				// A zombie is gone already, but for its parent's wait.
				if st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil && zombie(st) {
					break
				}
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

func zombie(stat []byte) bool {
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}

// requireNoDemoServer fails when a demo server of the demo with pid parent
// is still running. The wait covers the kernel delivering a parent-death
// signal and the server ending on it; it is a hang guard (a server left
// behind stays for good), long enough for a loaded machine.
func requireNoDemoServer(t *testing.T, parent int) {
	t.Helper()
	if !waitFor(30*time.Second, 20*time.Millisecond, func() bool { return len(demoServers(parent)) == 0 }) {
		pids := demoServers(parent)
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		t.Fatalf("demo servers left behind by the demo (pid %d): %v", parent, pids)
	}
}

func TestE2EDemoCompletesEveryRequest(t *testing.T) {
	t.Parallel()
	out, code := runDemo(t, "--port", strconv.Itoa(freePort(t)))
	if code != 0 {
		t.Fatalf("graceshim demo exited %d, want 0:\n%s", code, out)
	}
	m := demoSummary.FindStringSubmatch(out)
	if m == nil || m[1] != "10" || m[2] != "10" || m[4] != "" {
		t.Fatalf("want the summary 10/10 in-flight requests completed, got:\n%s", out)
	}
	for _, want := range []string{
		"graceshim: received TERM: stopping",
		"gracefully with QUIT",
		"systemd <- STOPPING=1",
		"systemd <- STATUS=draining: 10 connections left",
		"systemd <- EXTEND_TIMEOUT_USEC=",
		"systemd <- STATUS=stopped:",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, " completed: 64 KiB in "); n != 10 {
		t.Errorf("%d downloads reported complete, want 10:\n%s", n, out)
	}
	if strings.Contains(out, "LOST") {
		t.Errorf("a download was lost:\n%s", out)
	}
	if strings.ContainsAny(out, "\r\x1b") {
		t.Errorf("progress line drawn on a pipe:\n%q", out)
	}
}

func TestE2EDemoCompareLosesEveryRequest(t *testing.T) {
	t.Parallel()
	out, code := runDemo(t, "--compare", "--port", strconv.Itoa(freePort(t)))
	if code != 0 {
		t.Fatalf("graceshim demo --compare exited %d, want 0:\n%s", code, out)
	}
	m := demoSummary.FindStringSubmatch(out)
	if m == nil || m[1] != "0" || m[2] != "10" || m[4] == "" {
		t.Fatalf("want the summary 0/10 in-flight requests completed ... (a plain TERM is nginx's fast shutdown), got:\n%s", out)
	}
	if !strings.Contains(out, "TERM becomes TERM") {
		t.Errorf("the demo server did not get a plain TERM:\n%s", out)
	}
	if n := strings.Count(out, " LOST: "); n != 10 {
		t.Errorf("%d downloads reported lost, want 10:\n%s", n, out)
	}
}

// A taken port is not an error: the demo says so and uses another.
func TestE2EDemoPortTaken(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	out, code := runDemo(t, "--port", strconv.Itoa(port))
	if code != 0 {
		t.Fatalf("graceshim demo exited %d, want 0:\n%s", code, out)
	}
	m := regexp.MustCompile(fmt.Sprintf(`port %d is taken; the demo server uses (\d+)`, port)).FindStringSubmatch(out)
	if m == nil || m[1] == strconv.Itoa(port) {
		t.Fatalf("want the demo to say port %d is taken and use another:\n%s", port, out)
	}
	if s := demoSummary.FindStringSubmatch(out); s == nil || s[1] != "10" {
		t.Fatalf("want every request completed on the other port:\n%s", out)
	}
}

func TestE2EDemoBadInput(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--port", "0"}, {"--port", "70000"}, {"extra"}, {"--no-such-flag"}} {
		out, code := runDemo(t, args...)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		// urfave/cli shows the command's help before an unknown flag's error.
		if code != exitUsage || !strings.HasPrefix(lines[len(lines)-1], "graceshim: ") {
			t.Errorf("graceshim demo %v: exit %d, want %d and a one-line error:\n%s", args, code, exitUsage, out)
		}
	}
}

// A demo interrupted while the downloads are in flight, with Ctrl-C
// (SIGINT) or SIGKILL, leaves no process behind.
func TestE2EDemoInterrupted(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		sig  syscall.Signal
		code int
		// when to send it: after this line of output
		after string
	}{
		{syscall.SIGINT, exitInterrupted, "downloads in flight"},
		{syscall.SIGINT, exitInterrupted, "sending SIGTERM to graceshim"},
		{syscall.SIGKILL, 128 + int(syscall.SIGKILL), "downloads in flight"},
	} {
		t.Run(fmt.Sprintf("%s after %s", tc.sig, tc.after), func(t *testing.T) {
			bin := needGraceshim(t)
			cmd := exec.Command(bin, "demo", "--port", strconv.Itoa(freePort(t)))
			pr, pw := io.Pipe()
			cmd.Stdout, cmd.Stderr = pw, pw
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { err := cmd.Wait(); pw.Close(); done <- err }()
			var out strings.Builder // the reader's until readerDone closes
			seen := make(chan struct{})
			readerDone := make(chan struct{})
			go func() {
				defer close(readerDone)
				signalled := false
				sc := bufio.NewScanner(pr)
				for sc.Scan() {
					out.WriteString(sc.Text() + "\n")
					if !signalled && strings.Contains(sc.Text(), tc.after) {
						close(seen)
						signalled = true
					}
				}
				io.Copy(io.Discard, pr)
			}()
			select {
			case <-seen:
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				<-done
				<-readerDone
				t.Fatalf("no %q line within 30s:\n%s", tc.after, out.String())
			}
			if n := len(demoServers(cmd.Process.Pid)); n != 1 {
				t.Errorf("%d demo servers running before the signal, want 1", n)
			}
			if err := cmd.Process.Signal(tc.sig); err != nil {
				t.Fatal(err)
			}
			var err error
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				<-done
				t.Fatalf("the demo did not end within 30s of %s", tc.sig)
			}
			<-readerDone
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
				if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					code = 128 + int(ws.Signal())
				}
			}
			if code != tc.code {
				t.Errorf("exit %d after %s, want %d:\n%s", code, tc.sig, tc.code, out.String())
			}
			requireNoDemoServer(t, cmd.Process.Pid)
		})
	}
}

// On a terminal the demo redraws one progress line with what systemd is
// told; script(1) (util-linux, on every Debian) gives it a terminal.
func TestE2EDemoProgressOnTerminal(t *testing.T) {
	t.Parallel()
	script := needCmd(t, "script")
	bin := needGraceshim(t)
	cmd := exec.Command(script, "-qec", bin+" demo --port "+strconv.Itoa(freePort(t)), "/dev/null")
	cmd.Env = append(os.Environ(), "TERM=xterm")
	raw, err := cmd.Output()
	out := string(raw)
	if err != nil {
		t.Fatalf("graceshim demo on a terminal: %v\n%q", err, out)
	}
	if !strings.Contains(out, "\r\x1b[K") {
		t.Errorf("no progress line redrawn in place:\n%q", out)
	}
	if !regexp.MustCompile(`\r\x1b\[K +[0-9.]+s  systemd <- STATUS=draining: \d+ connections? left`).MatchString(out) {
		t.Errorf("the progress line does not show the drain as systemd is told it:\n%q", out)
	}
	plain := strings.NewReplacer("\r\x1b[K", "\n", "\r\n", "\n").Replace(out)
	if m := demoSummary.FindStringSubmatch(plain); m == nil || m[1] != "10" {
		t.Errorf("want 10/10 in-flight requests completed:\n%q", out)
	}
}
