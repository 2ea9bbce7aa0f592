package supervisor

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/graceshim/graceshim/signals"
)

// configTestPreset is nginx's preset with a config test that fails, the way
// nginx -t does, while the file bad exists.
func configTestPreset(bad string) signals.Preset {
	p, _ := signals.Lookup("nginx")
	p.ConfigTest = func(argv []string) []string {
		return []string{"sh", "-c", `if [ -e "$0" ]; then
echo 'nginx: [emerg] unknown directive "bogus" in /etc/nginx/nginx.conf:3' >&2
echo 'nginx: configuration file /etc/nginx/nginx.conf test failed' >&2
exit 1
fi`, bad}
	}
	return p
}

func control(t *testing.T, cmd string) (ControlReply, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return Control(ctx, os.Getpid(), cmd)
}

// TestReloadRefused: with a broken config, a reload asked for over the
// control socket, or by HUP, is refused with the config test's message:
// no signal reaches the server, STATUS says so. With the config fixed the
// same request reloads and answers once the new worker runs.
func TestReloadRefused(t *testing.T) {
	ns := newNotifySocket(t)
	bad := filepath.Join(t.TempDir(), "bad")
	ev, _, _ := start(t, "server:workers", func(o *Options) { o.Preset = configTestPreset(bad) })
	ev.wait("worker")
	ev.wait("ready")
	ns.waitLine(t, "READY=1")
	ns.waitLine(t, "STATUS=") // sent with READY=1
	if err := os.WriteFile(bad, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	r, err := control(t, "reload")
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("reload with a broken config: %v, want it refused", err)
	}
	for _, want := range []string{"reload refused", `unknown directive "bogus"`} {
		if !strings.Contains(r.Message, want) {
			t.Errorf("reply %q does not say %q", r.Message, want)
		}
	}
	if !strings.Contains(r.Output, "test failed") {
		t.Errorf("reply output %q, want the config test's whole output", r.Output)
	}
	st, _ := ns.waitLine(t, "STATUS=")
	if !strings.Contains(st, "reload refused: config test") || !strings.Contains(st, "[emerg]") {
		t.Errorf("status %q, want the refusal with the test's message", st)
	}

	selfSignal(t, syscall.SIGHUP)
	st, before := ns.waitLine(t, "STATUS=")
	if !strings.Contains(st, "reload refused") {
		t.Errorf("status after HUP %q, want the refusal", st)
	}
	for _, l := range before {
		if strings.HasPrefix(l, "RELOADING=1") {
			t.Errorf("RELOADING=1 sent for a refused reload")
		}
	}
	// Both refusals are decided before anything would be sent.
	ev.none("got HUP", 500*time.Millisecond)

	if err := os.Remove(bad); err != nil {
		t.Fatal(err)
	}
	r, err = control(t, "reload")
	if err != nil {
		t.Fatalf("reload with the config fixed: %v", err)
	}
	ev.wait("got HUP")
	_, worker := ev.wait("worker")
	if want := "new worker pid " + worker; !strings.Contains(r.Message, want) {
		t.Errorf("reply %q, want it to name %s", r.Message, want)
	}
	ns.waitLine(t, "RELOADING=1")
	ns.waitLine(t, "READY=1")
}

// TestReloadOneAtATime: a second request while a reload's config test
// runs hears the outcome of that reload; one signal is sent.
func TestReloadOneAtATime(t *testing.T) {
	dir := t.TempDir()
	gate := filepath.Join(dir, "gate")
	started := filepath.Join(dir, "started")
	p, _ := signals.Lookup("nginx")
	// The test waits until the file gate exists: both requests arrive
	// while it runs.
	p.ConfigTest = func([]string) []string {
		return []string{"sh", "-c", `: > "$1"; while [ ! -e "$0" ]; do sleep 0.01; done`, gate, started}
	}
	joined := make(chan struct{}, 1)
	ev, _, _ := start(t, "server:workers", func(o *Options) {
		o.Preset = p
		o.Log = NewLogger(io.MultiWriter(testWriter{t}, lineWatch{"a reload is under way", joined}), LevelDebug)
	})
	ev.wait("worker")
	ev.wait("ready")
	replies := make(chan error, 2)
	go func() { _, err := control(t, "reload"); replies <- err }()
	for !exists(started) {
		time.Sleep(5 * time.Millisecond)
	}
	go func() { _, err := control(t, "reload"); replies <- err }()
	select {
	case <-joined:
	case <-time.After(20 * time.Second):
		t.Fatal("the second request did not join the reload under way")
	}
	os.WriteFile(gate, nil, 0o644)
	for i := 0; i < 2; i++ {
		select {
		case err := <-replies:
			if err != nil {
				t.Errorf("reload %d: %v", i, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("no reply")
		}
	}
	ev.wait("got HUP")
	ev.none("got HUP", 300*time.Millisecond)
}

// lineWatch signals on c each time a log line contains sub.
type lineWatch struct {
	sub string
	c   chan struct{}
}

func (w lineWatch) Write(b []byte) (int, error) {
	if strings.Contains(string(b), w.sub) {
		select {
		case w.c <- struct{}{}:
		default:
		}
	}
	return len(b), nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// TestReloadRefusedWhileStopping: no reload once a stop began.
func TestReloadDuringStop(t *testing.T) {
	ev, _, _ := start(t, "server", nil)
	_, port := ev.wait("ready")
	c := dial(t, ev, port) // holds the drain open
	defer c.Close()
	selfSignal(t, syscall.SIGTERM)
	ev.wait("got QUIT")
	r, err := control(t, "reload")
	if !errors.Is(err, ErrRefused) || !strings.Contains(r.Message, "stop") {
		t.Errorf("reload during a stop: %v (%q), want it refused because of the stop", err, r.Message)
	}
}

// TestControlAddrErrors: clear errors for a pid that is no graceshim.
func TestControlAddrErrors(t *testing.T) {
	sleep := exec.Command("sleep", "30")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sleep.Process.Kill(); sleep.Wait() }()
	_, err := ControlAddr(sleep.Process.Pid)
	if !errors.Is(err, ErrNoControl) || !strings.Contains(err.Error(), "(sleep) has no graceshim control socket") {
		t.Errorf("ControlAddr(sleep) = %v, want no control socket", err)
	}
	// The largest pid the kernel can hand out, plus one: no such process.
	_, err = ControlAddr(1 << 22)
	if !errors.Is(err, ErrNoControl) || !strings.Contains(err.Error(), "no process") {
		t.Errorf("ControlAddr(no such pid) = %v, want no process", err)
	}
}

// TestReloadNotConfirmed: a daemon that speaks sd_notify and says nothing
// after the reload signal: the reload is reported as failed at the bound,
// and systemd hears READY=1 again (the service still serves).
func TestReloadNotConfirmed(t *testing.T) {
	old := reloadTimeout
	reloadTimeout = 500 * time.Millisecond
	t.Cleanup(func() { reloadTimeout = old }) // after the supervisor returned
	ev, ns, _ := notifierRun(t, "silent", nil)
	selfSignal(t, syscall.SIGUSR1)
	ev.wait("notifier ready")
	ns.waitLine(t, "READY=1")
	r, err := control(t, "reload")
	if !errors.Is(err, ErrRefused) || !strings.Contains(r.Message, "no READY=1 from") {
		t.Fatalf("reload of a silent daemon: %v (%q), want it not confirmed", err, r.Message)
	}
	ev.wait("got HUP")
	ns.waitLine(t, "RELOADING=1")
	ns.waitLine(t, "READY=1")
	if st, _ := ns.waitLine(t, "STATUS="); !strings.Contains(st, "reload failed: no READY=1") {
		t.Errorf("status %q, want the failed reload", st)
	}
}

// TestReloadDaemonDies: the daemon dies of the reload; the asker hears it.
func TestReloadDaemonDies(t *testing.T) {
	ev, ns, _ := notifierRun(t, "dieonhup", nil)
	selfSignal(t, syscall.SIGUSR1)
	ev.wait("notifier ready")
	ns.waitLine(t, "READY=1") // graceshim knows it speaks sd_notify
	r, err := control(t, "reload")
	if !errors.Is(err, ErrRefused) || !strings.Contains(r.Message, "exited with status 78") {
		t.Fatalf("reload that killed the daemon: %v (%q), want its exit reported", err, r.Message)
	}
}

// TestReloadCommand: a preset whose reload is a command (caddy reload)
// runs it instead of a signal; its failure is the reload's.
func TestReloadCommand(t *testing.T) {
	fail := filepath.Join(t.TempDir(), "fail")
	p, _ := signals.Lookup("nginx")
	p.Reload = 0
	p.ReloadCommand = func([]string) []string {
		return []string{"sh", "-c", `if [ -e "$0" ]; then echo "reload: admin endpoint refused the config" >&2; exit 1; fi`, fail}
	}
	ev, _, _ := start(t, "server:workers", func(o *Options) { o.Preset = p })
	ev.wait("worker")
	ev.wait("ready")
	r, err := control(t, "reload")
	if err != nil || !strings.Contains(r.Message, "reloaded by sh -c") {
		t.Errorf("reload by command: %v (%q), want done", err, r.Message)
	}
	os.WriteFile(fail, nil, 0o644)
	r, err = control(t, "reload")
	if !errors.Is(err, ErrRefused) || !strings.Contains(r.Message, "admin endpoint refused the config") {
		t.Errorf("failing reload command: %v (%q), want its message", err, r.Message)
	}
	ev.none("got HUP", 300*time.Millisecond)
}
