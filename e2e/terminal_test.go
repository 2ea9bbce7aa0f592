package e2e

// End-to-end tests of graceshim on a terminal, through a real pty opened
// here (/dev/ptmx, pts(4)): the built binary runs as a session leader with
// the pty as its controlling terminal, as under docker run -it, or as a
// job of an interactive bash. The package doc of supervisor has the
// design these tests check: the child's process group owns the
// foreground, Ctrl-Z suspends graceshim after the child, CONT resumes
// both, and a resize is not a command.

import (
	"bytes"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// pty is the master side of a pseudo-terminal and what was read from it.
type pty struct {
	master *os.File
	mu     sync.Mutex
	out    bytes.Buffer
	closed chan struct{} // the reader ended (every slave fd closed)
}

// openPTY opens a pty pair (posix_openpt, unlockpt, ptsname by hand) and
// starts reading the master side.
func openPTY(t *testing.T) (*pty, *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("ptsname: %v", err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("cannot open the pty's slave: %v", err)
	}
	p := &pty{master: m, closed: make(chan struct{})}
	go func() {
		defer close(p.closed)
		buf := make([]byte, 4096)
		for {
			n, err := m.Read(buf)
			p.mu.Lock()
			p.out.Write(buf[:n])
			p.mu.Unlock()
			if err != nil {
				return // EIO once no process holds the slave
			}
		}
	}()
	t.Cleanup(func() { m.Close(); s.Close() })
	return p, s
}

// start runs argv as a session leader whose controlling terminal is the
// pty, with the pty as stdin, stdout and stderr.
func (p *pty) start(t *testing.T, slave *os.File, env []string, argv ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.Env = append(append(os.Environ(), "TERM=dumb"), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatalf("cannot start %s: %v", argv[0], err)
	}
	slave.Close() // the child holds it now; EIO on the master marks its end
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return cmd
}

func (p *pty) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// type_ writes s as if typed on the terminal.
func (p *pty) type_(t *testing.T, s string) {
	t.Helper()
	if _, err := p.master.WriteString(s); err != nil {
		t.Fatalf("cannot write to the pty: %v", err)
	}
}

// waitOutput waits until the terminal showed want after position from,
// and returns the position after it.
func (p *pty) waitOutput(t *testing.T, from int, want string) int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		out := p.output()
		if i := strings.Index(out[min(from, len(out)):], want); i >= 0 {
			return from + i + len(want)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the terminal did not show %q within 20s:\n%s", want, out)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitExit waits for cmd to exit and returns its exit code.
func waitExit(t *testing.T, cmd *exec.Cmd, p *pty) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not exit within 30s; the terminal shows:\n%s", cmd.Path, p.output())
	}
	return cmd.ProcessState.ExitCode()
}

// TestE2ETerminalChildReads: a child that reads the terminal and changes
// its modes (stty) is not stopped by SIGTTIN or SIGTTOU: its group owns
// the foreground. This is the issue's repro (script -qec "graceshim ...
// sh -c 'read x; ...'") on a pty of our own.
func TestE2ETerminalChildReads(t *testing.T) {
	t.Parallel()
	bin := needGraceshim(t)
	p, slave := openPTY(t)
	cmd := p.start(t, slave, nil, bin, "--ready=exec", "--", "sh", "-c", "stty -echo && echo typing-hidden && read x && stty echo && echo got:$x")
	at := p.waitOutput(t, 0, "typing-hidden")
	p.type_(t, "hello\n")
	p.waitOutput(t, at, "got:hello")
	if code := waitExit(t, cmd, p); code != 0 {
		t.Errorf("graceshim exited %d, want 0:\n%s", code, p.output())
	}
	if strings.Contains(p.output(), "hello\r\ngot") {
		t.Errorf("the input was echoed: stty -echo did not take effect:\n%q", p.output())
	}
}

// TestE2ETerminalCtrlZ: graceshim as a job of an interactive bash. Ctrl-Z
// stops the child (the foreground group), graceshim stops itself after
// it, and bash gets its prompt back; fg resumes both, and the child owns
// the terminal again and reads it.
func TestE2ETerminalCtrlZ(t *testing.T) {
	t.Parallel()
	bin := needGraceshim(t)
	bash := needCmd(t, "bash")
	p, slave := openPTY(t)
	cmd := p.start(t, slave, []string{"PS1=PROMPT> "}, bash, "--norc", "--noprofile", "-i")
	at := p.waitOutput(t, 0, "PROMPT> ")
	p.type_(t, bin+" --ready=exec -- sh -c 'read x; echo got:$x'\n")
	at = p.waitOutput(t, at, "started sh")
	shim := childNamed(t, cmd.Process.Pid, "graceshim")
	child := childNamed(t, shim, "sh")
	p.type_(t, "\x1a") // Ctrl-Z (VSUSP)
	at = p.waitOutput(t, at, "Stopped")
	at = p.waitOutput(t, at, "PROMPT> ")
	for pid, name := range map[int]string{shim: "graceshim", child: "the child"} {
		if st := procField(pid, "State"); !strings.HasPrefix(st, "T") {
			t.Errorf("%s (pid %d) is %q after Ctrl-Z, want stopped", name, pid, st)
		}
	}
	p.type_(t, "fg\n")
	at = p.waitOutput(t, at, "continuing sh")
	p.type_(t, "hello\n")
	at = p.waitOutput(t, at, "got:hello")
	p.waitOutput(t, at, "PROMPT> ")
	p.type_(t, "exit\n")
	waitExit(t, cmd, p)
}

// TestE2ETerminalCtrlZPID1: graceshim as PID 1 of a new pid namespace with
// a terminal (docker run -it). It cannot stop itself there (the kernel
// drops init's own SIGSTOP) and nothing above it would resume it: Ctrl-Z
// stops the child, graceshim continues it at once, and the child reads
// the terminal as before instead of the session hanging.
func TestE2ETerminalCtrlZPID1(t *testing.T) {
	t.Parallel()
	needRoot(t)
	unshare := needCmd(t, "unshare")
	bin := needGraceshim(t)
	p, slave := openPTY(t)
	cmd := p.start(t, slave, nil, unshare, "--pid", "--fork", "--mount-proc", bin, "--ready=exec", "--", "sh", "-c", "echo reading && read x; echo got:$x")
	at := p.waitOutput(t, 0, "reading")
	shim := childNamed(t, cmd.Process.Pid, "graceshim")
	if nspid := strings.Fields(procField(shim, "NSpid")); len(nspid) < 2 || nspid[len(nspid)-1] != "1" {
		t.Fatalf("graceshim (pid %d) is not PID 1 of a namespace: NSpid %v", shim, nspid)
	}
	child := childNamed(t, shim, "sh")
	p.type_(t, "\x1a") // Ctrl-Z (VSUSP)
	at = p.waitOutput(t, at, "stopped by TSTP")
	at = p.waitOutput(t, at, "continuing sh")
	if st := procField(shim, "State"); strings.HasPrefix(st, "T") {
		t.Errorf("graceshim is %q as PID 1 after Ctrl-Z", st)
	}
	p.type_(t, "hello\n")
	p.waitOutput(t, at, "got:hello")
	if code := waitExit(t, cmd, p); code != 0 {
		t.Errorf("unshare exited %d, want 0:\n%s", code, p.output())
	}
	t.Logf("the child was pid %d outside the namespace", child)
}

// childNamed waits for a child of parent with the given name.
func childNamed(t *testing.T, parent int, name string) int {
	t.Helper()
	var pid int
	if !waitFor(20*time.Second, 5*time.Millisecond, func() bool {
		for _, c := range childPIDs(parent) {
			if procField(c, "Name") == name {
				pid = c
				return true
			}
		}
		return false
	}) {
		t.Fatalf("no child %s of pid %d within 20s", name, parent)
	}
	return pid
}

// TestE2ETerminalResize: a terminal resize reaches graceshim (it owns the
// foreground once the process it started has handed over to a daemonized
// master) and is not a command, even with the httpd preset whose graceful
// stop is WINCH; the same signal sent with kill is one.
func TestE2ETerminalResize(t *testing.T) {
	t.Parallel()
	bin := needGraceshim(t)
	p, slave := openPTY(t)
	// The first process leaves a master in a session of its own and
	// exits 0: graceshim follows the master and takes the terminal back.
	master := `setsid sh -c 'trap "exit 0" TERM; while :; do sleep 0.05; done' & exit 0`
	cmd := p.start(t, slave, nil, bin, "--preset=httpd", "--ready=exec", "--log-level=debug", "--drain-timeout=1s", "--", "sh", "-c", master)
	at := p.waitOutput(t, 0, "following sh master pid")
	if err := unix.IoctlSetWinsize(int(p.master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 41, Col: 101}); err != nil {
		t.Fatal(err)
	}
	at = p.waitOutput(t, at, "terminal window resized: not a command")
	if strings.Contains(p.output(), "stopping") {
		t.Fatalf("a resize started a stop:\n%s", p.output())
	}
	// The same signal from kill, the window unchanged, is the command
	// it stands for: httpd's graceful stop.
	if err := syscall.Kill(cmd.Process.Pid, syscall.SIGWINCH); err != nil {
		t.Fatal(err)
	}
	p.waitOutput(t, at, "received WINCH: stopping")
	if code := waitExit(t, cmd, p); code != 0 {
		t.Errorf("graceshim exited %d, want 0 (the master's TERM trap):\n%s", code, p.output())
	}
}

// TestE2ETerminalTostop: with stty tostop, a process outside the
// terminal's foreground group that writes to it gets SIGTTOU. graceshim
// hands the foreground to the child and then writes its log lines: they
// must reach the terminal, and TERM must still stop the child. (Caught,
// TTOU made every such write restart for good, graceshim spinning with
// TERM unhandled.)
func TestE2ETerminalTostop(t *testing.T) {
	t.Parallel()
	bin := needGraceshim(t)
	p, slave := openPTY(t)
	if err := exec.Command("stty", "-F", slave.Name(), "tostop").Run(); err != nil {
		t.Skipf("stty tostop: %v", err)
	}
	cmd := p.start(t, slave, nil, bin, "--ready=exec", "--", "sh", "-c", "echo child-up; exec sleep 60")
	at := p.waitOutput(t, 0, "child-up")
	if err := syscall.Kill(cmd.Process.Pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p.waitOutput(t, at, "received TERM: stopping")
	if code := waitExit(t, cmd, p); code != 143 {
		t.Errorf("graceshim exited %d, want 143 (sleep killed by TERM):\n%s", code, p.output())
	}
}
