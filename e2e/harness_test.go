package e2e

// The end-to-end harness: a graceshim binary built once, a real systemd user
// manager, real nginx sites and real curl downloads. The scenarios live in
// the other files of this package; this file holds only what they share.
//
// Every wait below is bounded by a generous timeout that only guards
// against hangs; the tests synchronise on events (a file appearing, a
// process answering), never on sleeps.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// repoRoot is the repository's top directory, where graceshim's main
// package, testdata/ and examples/ are; go test runs this package in e2e/.
const repoRoot = ".."

// repoPath joins elem to repoRoot.
func repoPath(elem ...string) string {
	return filepath.Join(append([]string{repoRoot}, elem...)...)
}

// graceshimBin is the graceshim binary TestMain built for the end-to-end
// tests; empty when the build failed (the tests that need it fail then).
var graceshimBin string

// graceshimBuildErr says why graceshimBin is empty.
var graceshimBuildErr error

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "graceshim-e2e-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: cannot make a temp dir: %v\n", err)
		os.Exit(1)
	}
	// The manager runs the binary as root from the units; the dir must be
	// readable by it whoever we are.
	_ = os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "graceshim")
	build := exec.Command(goTool(), "build", "-o", bin, ".")
	build.Dir = repoRoot
	// Static, as the deb and the container example build it: the tests
	// run what ships, and the figures measured here are its figures.
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		graceshimBuildErr = fmt.Errorf("go build: %v\n%s", err, out)
	} else {
		graceshimBin = bin
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// goTool finds the go command: go test puts GOROOT/bin first in PATH.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// needGraceshim fails the test when TestMain could not build graceshim.
func needGraceshim(t testing.TB) string {
	t.Helper()
	if graceshimBin == "" {
		t.Fatalf("graceshim was not built: %v", graceshimBuildErr)
	}
	return graceshimBin
}

// needRoot skips unless we run as root.
func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

// needCmd skips when the command name is not installed, and returns its
// path.
func needCmd(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		// sbin may be missing from a test runner's PATH.
		for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
			if st, err := os.Stat(filepath.Join(dir, name)); err == nil && st.Mode()&0o111 != 0 {
				return filepath.Join(dir, name)
			}
		}
		t.Skipf("needs %s, not installed", name)
	}
	return p
}

// freePort returns a loopback TCP port for a server to listen on: free
// now, and no other test hands it out while this test process runs.
//
// It is taken below the kernel's ephemeral range
// (/proc/sys/net/ipv4/ip_local_port_range, see ip(7)), not from a bind to
// port 0: a port the kernel picked and we closed again is one it picks
// next for any outgoing connection on the machine (curl, wrk, another
// package's tests), and the server that binds it later then fails with
// "Address already in use". Below the range only an explicit bind takes
// a port, and every test process here reserves its ports (reservePort).
func freePort(t testing.TB) int {
	t.Helper()
	return reservePort(t, serverPorts, func(p int) bool {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			return false
		}
		l.Close()
		return true
	})
}

// The ports below the ephemeral range are split between the two kinds
// of reservation, so that neither search fills the other's span:
// freeSourcePort's clients bind 10000-14999, servers get the rest.
var (
	sourcePorts = portSpan{10000, 15000}
	serverPorts = portSpan{15000, 0} // 0: up to the ephemeral range
)

// portSpan is the ports lo up to (not including) hi.
type portSpan struct{ lo, hi int }

// portLockDir holds a lock file per reserved port; a test process holds
// an flock on the file of each port it reserved until it exits, so that
// test processes running at once (the packages go test runs in parallel,
// or a second checkout's tests) never share a port.
var portLockDir = filepath.Join(os.TempDir(), "graceshim-e2e-ports")

var (
	portMu    sync.Mutex
	portLocks = map[int]*os.File{} // guarded by portMu; held, never released
)

// reservePort returns a port of span that no test process reserved and
// that free accepts, trying each port of the span once at most from a
// start that differs between processes. The reservation lasts as long as
// the process: a port is not handed out again even after its test
// ended, when a daemon of that test might still be going.
func reservePort(t testing.TB, span portSpan, free func(int) bool) int {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		t.Fatalf("cannot read the ephemeral port range: %v", err)
	}
	var ephemeral int
	if _, err := fmt.Sscan(string(b), &ephemeral); err != nil {
		t.Fatalf("cannot read the ephemeral port range %q: %v", b, err)
	}
	lo, hi := span.lo, span.hi
	if hi == 0 || hi > ephemeral {
		hi = ephemeral
	}
	n := hi - lo
	if n <= 0 {
		t.Fatalf("the ephemeral range starts at %d: no port in %d-%d to reserve", ephemeral, lo, hi-1)
	}
	// Test processes of other users (the non-root tests) share the dir;
	// sticky, so that none removes a lock file another holds. An
	// os.FileMode's sticky bit is os.ModeSticky: Go drops the 0o1000 of
	// a plain 0o1777 (os.FileMode.Perm).
	const lockDirMode = 0o777 | os.ModeSticky
	if err := os.MkdirAll(portLockDir, lockDirMode); err != nil {
		t.Fatalf("cannot make %s: %v", portLockDir, err)
	}
	_ = os.Chmod(portLockDir, lockDirMode)
	portMu.Lock()
	defer portMu.Unlock()
	p := lo + (os.Getpid()*7919+int(time.Now().UnixNano()/1000))%n
	for range n {
		if _, mine := portLocks[p]; !mine {
			if f := lockPort(p); f != nil {
				if free(p) {
					portLocks[p] = f
					return p
				}
				f.Close()
			}
		}
		p = lo + (p-lo+1)%n
	}
	t.Fatalf("no port in %d-%d is free to reserve", lo, hi-1)
	return 0
}

// lockPort takes the lock file of port p without waiting; nil when
// another process holds it (or the file cannot be opened).
func lockPort(p int) *os.File {
	// An existing file is opened without O_CREAT: in a sticky
	// world-writable directory, fs.protected_regular (proc_sys_fs(5))
	// refuses an O_CREAT open of another user's file even to root.
	path := filepath.Join(portLockDir, strconv.Itoa(p))
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		f, err = os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o644)
	}
	if err != nil {
		return nil
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil
	}
	return f
}

// waitFor polls cond every interval until it holds or timeout passes (a
// hang guard); it reports whether cond held.
func waitFor(timeout, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval)
	}
}

// --- systemd user manager ---------------------------------------------------

const (
	userRuntimeDir = "/run/user/0"
	// managerLock serialises starting the user manager between test
	// processes (several packages' tests run at once).
	managerLock = userRuntimeDir + "/.graceshim-e2e.lock"
	// managerLog gets the output of a manager we start.
	managerLog = userRuntimeDir + "/graceshim-e2e-systemd.log"
	// systemctlTimeout guards every systemctl call against a hang.
	systemctlTimeout = 90 * time.Second
)

// userSystemd talks to the systemd user manager of root. Get one with
// userManager; each test gets its own value (it keeps that test's unit
// logs), the manager behind it is shared.
type userSystemd struct {
	env     []string // ours plus XDG_RUNTIME_DIR, for systemctl
	unitDir string   // where InstallUnit writes units
	logDir  string   // the test's dir for unit logs

	mu   sync.Mutex        // guards logs
	logs map[string]string // unit name -> its output file
}

var (
	managerOnce sync.Once
	managerErr  error
)

// userManager makes sure a systemd user manager for root runs (starting
// one as ../shared/FACTS.md section 6 describes when the machine's PID 1
// is not systemd) and returns a handle on it for t. The manager is left
// running at the end: other test processes may use it.
func userManager(t testing.TB) *userSystemd {
	t.Helper()
	needRoot(t)
	needCmd(t, "systemctl")
	if _, err := os.Stat("/lib/systemd/systemd"); err != nil {
		t.Skip("needs systemd (/lib/systemd/systemd), not installed")
	}
	managerOnce.Do(func() { managerErr = ensureUserManager() })
	if managerErr != nil {
		t.Fatalf("cannot run a systemd user manager: %v", managerErr)
	}
	home, err := os.UserHomeDir()
	if err != nil {
		t.Fatalf("no home dir for the user units: %v", err)
	}
	u := &userSystemd{
		env:     append(os.Environ(), "XDG_RUNTIME_DIR="+userRuntimeDir),
		unitDir: filepath.Join(home, ".config", "systemd", "user"),
		logDir:  t.TempDir(),
		logs:    map[string]string{},
	}
	if err := os.MkdirAll(u.unitDir, 0o755); err != nil {
		t.Fatalf("cannot make the user unit dir: %v", err)
	}
	return u
}

// managerAnswers reports whether a user manager answers on
// XDG_RUNTIME_DIR; any state but "offline" counts (degraded is usual).
// It asks for the manager's SystemState property: "systemctl
// is-system-running" prints "offline" without asking anyone when
// /run/systemd/system is missing, which it is once the manager runs.
func managerAnswers() (string, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "systemctl", "--user", "show", "-p", "SystemState", "--value")
	cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+userRuntimeDir)
	out, err := cmd.CombinedOutput()
	state := strings.TrimSpace(string(out))
	if err != nil {
		return state, false
	}
	switch state {
	case "running", "degraded", "starting", "initializing", "maintenance":
		return state, true
	}
	return state, false
}

// userManagerRunning reports whether a systemd --user process of ours runs
// already (it may be starting, or busy).
func userManagerRunning() bool {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return false
	}
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		if len(args) >= 2 && filepath.Base(args[0]) == "systemd" && args[1] == "--user" {
			var st syscall.Stat_t
			if syscall.Stat("/proc/"+e.Name(), &st) == nil && int(st.Uid) == os.Geteuid() {
				return true
			}
		}
	}
	return false
}

// pid1IsSystemd reports whether the machine runs systemd as init.
func pid1IsSystemd() bool {
	comm, err := os.ReadFile("/proc/1/comm")
	return err == nil && strings.TrimSpace(string(comm)) == "systemd"
}

func ensureUserManager() error {
	if err := os.MkdirAll(userRuntimeDir, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(userRuntimeDir, 0o700); err != nil {
		return err
	}
	lock, err := os.OpenFile(managerLock, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close() // closing releases the lock
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("cannot lock %s: %w", managerLock, err)
	}
	if _, ok := managerAnswers(); ok {
		return nil
	}
	if userManagerRunning() {
		// Starting a second one would take over the sockets of the first
		// under its units' feet (their sd_notify datagrams would reach a
		// manager that does not know them).
		return waitManager(nil)
	}
	if pid1IsSystemd() {
		// The real thing: let the system manager start root's user
		// manager and use it as it is.
		out, err := exec.Command("systemctl", "start", "user@0.service").CombinedOutput()
		if err != nil {
			return fmt.Errorf("systemctl start user@0.service: %v: %s", err, out)
		}
		return waitManager(nil)
	}

	// systemd --user refuses to start unless /run/systemd/system says the
	// machine booted with systemd; the marker is needed only at start-up,
	// and left behind it makes apt try to start services.
	const marker = "/run/systemd/system"
	madeMarker := false
	if _, err := os.Stat(marker); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(marker, 0o755); err != nil {
			return err
		}
		madeMarker = true
	}
	defer func() {
		if madeMarker {
			os.Remove(marker)
		}
	}()
	logf, err := os.OpenFile(managerLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	home, _ := os.UserHomeDir()
	cmd := exec.Command("/lib/systemd/systemd", "--user")
	// A clean environment: the user manager hands its own to every unit.
	cmd.Env = []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + home,
		"USER=root",
		"LOGNAME=root",
		"LANG=C.UTF-8",
		"XDG_RUNTIME_DIR=" + userRuntimeDir,
	}
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("cannot start systemd --user: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	return waitManager(exited)
}

// waitManager waits until the user manager answers, or exited reports it
// died.
func waitManager(exited <-chan error) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		state, ok := managerAnswers()
		if ok {
			return nil
		}
		select {
		case err := <-exited:
			log, _ := os.ReadFile(managerLog)
			return fmt.Errorf("systemd --user exited (%v): %s", err, tail(string(log), 2000))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the user manager did not answer within 30s (last: %q)", state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// systemctl runs systemctl --user with args and returns its combined
// output.
func (u *userSystemd) systemctl(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), systemctlTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "systemctl", append([]string{"--user"}, args...)...)
	cmd.Env = u.env
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("systemctl --user %s: no answer in %s", strings.Join(args, " "), systemctlTimeout)
	} else if err != nil {
		err = fmt.Errorf("systemctl --user %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), err
}

// unitName makes a unit name for base unique to this test process, so
// parallel tests and packages never share a unit.
func unitName(base string) string {
	return fmt.Sprintf("graceshim-e2e-%s-%d.service", base, os.Getpid())
}

// InstallUnit writes the unit name with content and sends the unit's
// output to a file UnitLog reads (the user manager here may have no
// journal). At the end of the test the unit is stopped, its failed state
// reset and the file removed.
//
// A new unit needs no daemon-reload: the manager loads a unit it has not
// seen from disk when it is first named. InstallUnit reloads only when the
// manager holds an older version of the unit (see Reload for why reloads
// are kept rare).
func (u *userSystemd) InstallUnit(t testing.TB, name, content string) {
	t.Helper()
	logPath := filepath.Join(u.logDir, name+".log")
	if !strings.Contains(content, "StandardOutput=") {
		content = addToSection(content, "Service",
			"StandardOutput=append:"+logPath+"\nStandardError=append:"+logPath)
	}
	u.mu.Lock()
	u.logs[name] = logPath
	u.mu.Unlock()
	path := filepath.Join(u.unitDir, name)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatalf("cannot write unit %s: %v", name, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		t.Fatalf("cannot write unit %s: %v", name, err)
	}
	t.Cleanup(func() {
		if _, err := u.stop(name); err != nil {
			t.Logf("cleanup: %v", err)
		}
		u.systemctl("reset-failed", name)
		os.Remove(path)
	})
	if u.Show(t, name, "NeedDaemonReload") == "yes" {
		u.Reload(t)
	}
}

// reloadLock orders daemon-reloads against stops, between the tests of
// every package: a stop holds it shared, a reload exclusively.
const reloadLock = userRuntimeDir + "/.graceshim-e2e-reload.lock"

// lockReload takes reloadLock, shared or exclusive; the returned func
// releases it.
func lockReload(how int) (func(), error) {
	f, err := os.OpenFile(reloadLock, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, fmt.Errorf("cannot lock %s: %w", reloadLock, err)
	}
	return func() { f.Close() }, nil
}

// Reload runs systemctl --user daemon-reload, once no stop is under way.
//
// systemd 252 re-arms a stopping unit's timer on a reload from the time
// the stop began plus TimeoutStopSec, forgetting every
// EXTEND_TIMEOUT_USEC: a reload during a drain that has outlived
// TimeoutStopSec makes systemd SIGKILL the unit at once (measured here:
// TimeoutStopSec=5, a 10 s drain under graceshim, daemon-reload 7 s in:
// killed at 7 s, Result=timeout). So the tests never reload while a stop
// of theirs runs.
func (u *userSystemd) Reload(t testing.TB) {
	t.Helper()
	unlock, err := lockReload(syscall.LOCK_EX)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	if _, err := u.systemctl("daemon-reload"); err != nil {
		t.Fatal(err)
	}
}

// stop runs systemctl --user stop holding reloadLock shared, and returns
// how long it took.
func (u *userSystemd) stop(name string) (time.Duration, error) {
	unlock, err := lockReload(syscall.LOCK_SH)
	if err != nil {
		return 0, err
	}
	defer unlock()
	began := time.Now()
	_, err = u.systemctl("stop", name)
	return time.Since(began), err
}

// addToSection inserts lines right after the [section] header of a unit,
// appending the section when there is none.
func addToSection(content, section, lines string) string {
	header := "[" + section + "]"
	i := strings.Index(content, header+"\n")
	if i < 0 {
		if !strings.HasSuffix(content, "\n") {
			content += "\n"
		}
		return content + header + "\n" + lines + "\n"
	}
	at := i + len(header) + 1
	return content[:at] + lines + "\n" + content[at:]
}

// Start starts the unit and fails the test, with its status and log, when
// it does not come up.
func (u *userSystemd) Start(t testing.TB, name string) {
	t.Helper()
	if _, err := u.systemctl("start", name); err != nil {
		t.Fatalf("%v\n%s\nlog:\n%s", err, u.Status(t, name), u.UnitLog(t, name))
	}
}

// Stop stops the unit and returns how long systemctl stop took.
func (u *userSystemd) Stop(t testing.TB, name string) time.Duration {
	t.Helper()
	took, err := u.stop(name)
	if err != nil {
		t.Fatalf("%v\n%s\nlog:\n%s", err, u.Status(t, name), u.UnitLog(t, name))
	}
	return took
}

// Show returns the unit's property prop.
func (u *userSystemd) Show(t testing.TB, name, prop string) string {
	t.Helper()
	out, err := u.systemctl("show", "-p", prop, "--value", name)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// MainPID returns the unit's main pid, 0 when it has none.
func (u *userSystemd) MainPID(t testing.TB, name string) int {
	t.Helper()
	s := u.Show(t, name, "MainPID")
	pid, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("unit %s: MainPID %q is not a number", name, s)
	}
	return pid
}

// Status returns systemctl status for the unit (whatever its state).
func (u *userSystemd) Status(t testing.TB, name string) string {
	t.Helper()
	out, _ := u.systemctl("status", "--no-pager", "--full", name)
	return out
}

// UnitLog returns what the unit wrote to stdout and stderr so far.
func (u *userSystemd) UnitLog(t testing.TB, name string) string {
	t.Helper()
	u.mu.Lock()
	path, ok := u.logs[name]
	u.mu.Unlock()
	if !ok {
		return "(no log: the unit sets its own StandardOutput=)"
	}
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	return string(b)
}

// WatchStatus polls the unit's StatusText about every 100ms until the
// returned stop is called; stop returns the distinct values seen, in the
// order they first appeared.
func (u *userSystemd) WatchStatus(t testing.TB, name string) (stop func() []string) {
	t.Helper()
	type seen struct {
		list []string
		have map[string]bool
	}
	stopSeen := pollUntilStopped(100*time.Millisecond, func(s *seen) {
		out, err := u.systemctl("show", "-p", "StatusText", "--value", name)
		if v := strings.TrimSpace(out); err == nil && !s.have[v] {
			if s.have == nil {
				s.have = map[string]bool{}
			}
			s.have[v] = true
			s.list = append(s.list, v)
		}
	})
	return func() []string { return stopSeen().list }
}

// pollUntilStopped runs step in a goroutine, every interval (0: back to
// back), until the returned stop is called; stop waits for the step under
// way and returns the state the steps built up. stop may be called more
// than once.
func pollUntilStopped[T any](interval time.Duration, step func(*T)) (stop func() T) {
	quit := make(chan struct{})
	done := make(chan T, 1)
	go func() {
		var state T
		var tick <-chan time.Time
		if interval > 0 {
			t := time.NewTicker(interval)
			defer t.Stop()
			tick = t.C
		}
		for {
			step(&state)
			if tick == nil {
				select {
				case <-quit:
					done <- state
					return
				default:
				}
				continue
			}
			select {
			case <-quit:
				done <- state
				return
			case <-tick:
			}
		}
	}()
	var once sync.Once
	var result T
	return func() T {
		once.Do(func() {
			close(quit)
			result = <-done
		})
		return result
	}
}

// --- nginx ------------------------------------------------------------------

// nginxOpts shape a test site.
type nginxOpts struct {
	Daemon                bool   // daemon on; (nginx's default) rather than daemon off;
	Rate                  string // limit_rate of /big, e.g. "200k"; default "100k"
	FileSize              int    // bytes of /big; default 12 s worth at Rate
	WorkerShutdownTimeout string // worker_shutdown_timeout, e.g. "2s"; default none
	Workers               int    // worker_processes; default 2
	ExtraHTTP             string // more directives in the http block
}

// nginxSite is a self-contained nginx configuration in a temp dir: its pid
// file, logs and temp paths all inside Dir, one server on a free loopback
// port serving /big, FileSize random bytes whose hash is SHA256.
type nginxSite struct {
	Dir, Conf, PIDFile, URL string
	Port                    int
	FileSize                int
	SHA256                  string
	ErrorLog                string
}

// rateBytes reads an nginx size ("100k", "1m", "4096") as bytes per second.
func rateBytes(s string) (int, error) {
	mult := 1
	switch {
	case strings.HasSuffix(s, "k"), strings.HasSuffix(s, "K"):
		mult, s = 1024, s[:len(s)-1]
	case strings.HasSuffix(s, "m"), strings.HasSuffix(s, "M"):
		mult, s = 1024*1024, s[:len(s)-1]
	}
	n, err := strconv.Atoi(s)
	return n * mult, err
}

// downloadSeconds is how long one download of /big lasts by default.
const downloadSeconds = 12

func newNginxSite(t testing.TB, o nginxOpts) *nginxSite {
	t.Helper()
	nginx := needCmd(t, "nginx")
	if o.Rate == "" {
		o.Rate = "100k"
	}
	if o.Workers == 0 {
		o.Workers = 2
	}
	if o.FileSize == 0 {
		rate, err := rateBytes(o.Rate)
		if err != nil {
			t.Fatalf("bad rate %q: %v", o.Rate, err)
		}
		o.FileSize = downloadSeconds * rate
	}
	dir := t.TempDir()
	s := &nginxSite{
		Dir:      dir,
		Conf:     filepath.Join(dir, "nginx.conf"),
		PIDFile:  filepath.Join(dir, "nginx.pid"),
		ErrorLog: filepath.Join(dir, "error.log"),
		Port:     freePort(t),
		FileSize: o.FileSize,
	}
	s.URL = fmt.Sprintf("http://127.0.0.1:%d/big", s.Port)
	www := filepath.Join(dir, "www")
	if err := os.MkdirAll(www, 0o755); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, o.FileSize)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	s.SHA256 = hex.EncodeToString(sum[:])
	if err := os.WriteFile(filepath.Join(www, "big"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(www, "small"), []byte("ok\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	daemon := "off"
	if o.Daemon {
		daemon = "on"
	}
	var main strings.Builder
	fmt.Fprintf(&main, "daemon %s;\n", daemon)
	// t.TempDir is private to root: workers must run as root to read it.
	fmt.Fprintf(&main, "user root;\n")
	fmt.Fprintf(&main, "worker_processes %d;\n", o.Workers)
	fmt.Fprintf(&main, "pid %s;\n", s.PIDFile)
	fmt.Fprintf(&main, "error_log %s notice;\n", s.ErrorLog)
	if o.WorkerShutdownTimeout != "" {
		fmt.Fprintf(&main, "worker_shutdown_timeout %s;\n", o.WorkerShutdownTimeout)
	}
	conf := main.String() + nginxHTTPConf(dir, s.Port, o.Rate, o.ExtraHTTP, "")
	if err := os.WriteFile(s.Conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, nginx, "-t", "-q", "-c", s.Conf).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t -c %s: %v\n%s\n%s", s.Conf, err, out, conf)
	}
	return s
}

// Get fetches path (e.g. "/small") from the site with a short timeout.
func (s *nginxSite) Get(path string) (int, error) {
	c := &httpClient{timeout: 5 * time.Second}
	return c.status(fmt.Sprintf("127.0.0.1:%d", s.Port), path)
}

// httpClient is the least HTTP/1.0 client a readiness probe needs: no
// keep-alive, no proxy settings from the environment.
type httpClient struct{ timeout time.Duration }

func (c *httpClient) status(addr, path string) (int, error) {
	conn, err := net.DialTimeout("tcp", addr, c.timeout)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(c.timeout))
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, addr); err != nil {
		return 0, err
	}
	head := make([]byte, 12)
	if _, err := io.ReadFull(conn, head); err != nil {
		return 0, err
	}
	code, err := strconv.Atoi(string(bytes.TrimSpace(head[9:12])))
	if err != nil {
		return 0, fmt.Errorf("bad status line %q", head)
	}
	return code, nil
}

// MasterPID reads the site's pid file.
func (s *nginxSite) MasterPID() (int, error) {
	b, err := os.ReadFile(s.PIDFile)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// --- downloads --------------------------------------------------------------

// dlResult is how one download ended.
type dlResult struct {
	Code   int    // HTTP status curl saw (0: none)
	Size   int    // bytes written to the output file
	SHA256 string // of the output file
	Err    error  // curl's failure, with its message
	End    time.Time
}

// downloads are concurrent curl processes fetching one URL.
type downloads struct {
	dir     string
	procs   []*exec.Cmd
	outs    []*bytes.Buffer
	errs    []*bytes.Buffer
	ended   []chan struct{}
	results []dlResult
	once    sync.Once
}

// downloadMaxTime bounds each curl: a hang guard far beyond any scenario.
const downloadMaxTime = 90 * time.Second

// startDownloads starts n curl processes fetching url and returns once
// every one of them has received its first bytes (so all are in flight).
func startDownloads(t testing.TB, url string, n int) *downloads {
	t.Helper()
	curl := needCmd(t, "curl")
	// Every slice is allocated up front: the waiting goroutines write
	// their own element of results.
	d := &downloads{
		dir:     t.TempDir(),
		procs:   make([]*exec.Cmd, n),
		outs:    make([]*bytes.Buffer, n),
		errs:    make([]*bytes.Buffer, n),
		ended:   make([]chan struct{}, n),
		results: make([]dlResult, n),
	}
	t.Cleanup(func() {
		for i, p := range d.procs {
			if p == nil {
				continue
			}
			select {
			case <-d.ended[i]:
			default:
				p.Process.Kill()
				<-d.ended[i]
			}
		}
	})
	for i := 0; i < n; i++ {
		d.outs[i], d.errs[i] = &bytes.Buffer{}, &bytes.Buffer{}
		d.ended[i] = make(chan struct{})
		cmd := exec.Command(curl, "-sS", "--no-keepalive", "--noproxy", "*",
			"--max-time", strconv.Itoa(int(downloadMaxTime/time.Second)),
			"-o", d.file(i), "-w", "%{http_code} %{size_download}", url)
		cmd.Stdout, cmd.Stderr = d.outs[i], d.errs[i]
		if err := cmd.Start(); err != nil {
			t.Fatalf("cannot start curl: %v", err)
		}
		d.procs[i] = cmd
		go func(i int) {
			err := cmd.Wait()
			d.results[i].End = time.Now()
			d.results[i].Err = err
			close(d.ended[i])
		}(i)
	}
	// All connected: each output file has bytes (curl creates it on the
	// first data), or the curl already ended (Wait reports why). The
	// bound is a hang guard: starting 20 has taken 10 s on a loaded
	// machine, and a download that ends before the scenario's stop is
	// judged as what it is (complete, or not) all the same.
	ok := waitFor(downloadMaxTime, 20*time.Millisecond, func() bool {
		for i := range d.procs {
			select {
			case <-d.ended[i]:
				continue
			default:
			}
			if st, err := os.Stat(d.file(i)); err != nil || st.Size() == 0 {
				return false
			}
		}
		return true
	})
	if !ok {
		t.Fatalf("the %d downloads of %s did not all start within %s", n, url, downloadMaxTime)
	}
	return d
}

func (d *downloads) file(i int) string { return filepath.Join(d.dir, fmt.Sprintf("dl-%03d", i)) }

// Wait waits for every curl to end and returns the results.
func (d *downloads) Wait(t testing.TB) []dlResult {
	t.Helper()
	if err := d.wait(); err != nil {
		t.Fatal(err)
	}
	return append([]dlResult(nil), d.results...)
}

// wait waits for every curl to end (bounded) and fills in the results.
func (d *downloads) wait() error {
	guard := time.After(downloadMaxTime + 30*time.Second)
	for i := range d.procs {
		select {
		case <-d.ended[i]:
		case <-guard:
			return fmt.Errorf("curl %d did not end despite --max-time", i)
		}
	}
	d.once.Do(func() {
		for i := range d.procs {
			r := &d.results[i]
			fields := strings.Fields(d.outs[i].String())
			if len(fields) > 0 {
				r.Code, _ = strconv.Atoi(fields[0])
			}
			if b, err := os.ReadFile(d.file(i)); err == nil {
				r.Size = len(b)
				sum := sha256.Sum256(b)
				r.SHA256 = hex.EncodeToString(sum[:])
			}
			if r.Err != nil {
				r.Err = fmt.Errorf("%v: %s", r.Err, strings.TrimSpace(d.errs[i].String()))
			}
		}
	})
	return nil
}

// ok reports whether r is a complete, intact download of size bytes
// hashing to sum.
func (r dlResult) ok(size int, sum string) bool {
	return r.Err == nil && r.Code == 200 && r.Size == size && r.SHA256 == sum
}

func (r dlResult) String() string {
	s := fmt.Sprintf("code %d, %d bytes", r.Code, r.Size)
	if r.Err != nil {
		s += ", " + r.Err.Error()
	}
	return s
}

// Completed waits for the downloads and counts the intact ones (none
// when a curl hangs past its --max-time).
func (d *downloads) Completed(size int, sum string) int {
	if d.wait() != nil {
		return 0
	}
	n := 0
	for _, r := range d.results {
		if r.ok(size, sum) {
			n++
		}
	}
	return n
}

// RequireComplete waits for the downloads and fails the test listing every
// one that was cut or corrupted.
func (d *downloads) RequireComplete(t testing.TB, size int, sum string) {
	t.Helper()
	var bad []string
	res := d.Wait(t)
	for i, r := range res {
		if !r.ok(size, sum) {
			what := r.String()
			if r.Err == nil && r.Size == size && r.SHA256 != sum {
				what += ", content differs"
			}
			bad = append(bad, fmt.Sprintf("  download %d: %s", i, what))
		}
	}
	if len(bad) > 0 {
		t.Errorf("%d of %d downloads were cut (want %d bytes each):\n%s", len(bad), len(res), size, strings.Join(bad, "\n"))
	}
}

// LastEnd is when the last download ended.
func (d *downloads) LastEnd(t testing.TB) time.Time {
	t.Helper()
	var last time.Time
	for _, r := range d.Wait(t) {
		if r.End.After(last) {
			last = r.End
		}
	}
	return last
}

// graceshim's exit codes, as its --help and man page document them (the
// EXIT STATUS section; 130 is the demo's, interrupted): the e2e tests hold
// the binary to that contract.
const (
	exitFindings    = 1
	exitUsage       = 2
	exitWrite       = 3
	exitInterrupted = 130
)

// syncBuffer is a bytes.Buffer a test may read while a process it started
// still writes to it (exec copies a process's output from another
// goroutine when Stdout is not a file).
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// nginxHTTPConf is the events and http blocks of a test nginx serving
// dir/www on 127.0.0.1:port, /big at rate (an nginx size); extraHTTP goes
// into the http block, extraServer into the server block. Its temp paths
// are under dir: t.TempDir is private to root.
func nginxHTTPConf(dir string, port int, rate, extraHTTP, extraServer string) string {
	if extraServer != "" {
		extraServer = "        " + extraServer + "\n"
	}
	return fmt.Sprintf(`events {
    worker_connections 1024;
}
http {
    access_log off;
    default_type application/octet-stream;
    client_body_temp_path %[1]s/client_temp;
    proxy_temp_path %[1]s/proxy_temp;
    fastcgi_temp_path %[1]s/fastcgi_temp;
    uwsgi_temp_path %[1]s/uwsgi_temp;
    scgi_temp_path %[1]s/scgi_temp;
    keepalive_timeout 0;
%[4]s
    server {
        listen 127.0.0.1:%[2]d;
        root %[1]s/www;
        location = /big {
            limit_rate %[3]s;
        }
%[5]s    }
}
`, dir, port, rate, extraHTTP, extraServer)
}
