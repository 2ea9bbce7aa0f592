package e2e

// End-to-end tests of reloads that test the configuration first: nginx
// under graceshim, ExecReload=graceshim reload $MAINPID, under the real
// systemd user manager. A broken config is refused before any signal:
// systemctl reload fails with nginx -t's message, nginx serves on with the
// old config, MainPID unchanged. A good config applies.

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/graceshim/graceshim/signals"
)

// versionSite is an nginx site whose http block includes a file holding
// a server on a second port that answers its version: rewriting the file
// and reloading shows whether the new config applied.
type versionSite struct {
	*nginxSite
	include string // the included file
	vport   int    // the version server's port
}

func newVersionSite(t *testing.T) *versionSite {
	t.Helper()
	dir := t.TempDir()
	s := &versionSite{include: filepath.Join(dir, "version.conf"), vport: freePort(t)}
	s.setVersion(t, "v1")
	s.nginxSite = newNginxSite(t, nginxOpts{ExtraHTTP: "    include " + s.include + ";"})
	return s
}

// setVersion writes the included file: a server answering v.
func (s *versionSite) setVersion(t *testing.T, v string) {
	t.Helper()
	s.write(t, fmt.Sprintf("server {\n    listen 127.0.0.1:%d;\n    location / { return 200 \"%s\\n\"; }\n}\n", s.vport, v))
}

func (s *versionSite) write(t *testing.T, content string) {
	t.Helper()
	tmp := s.include + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, s.include); err != nil {
		t.Fatal(err)
	}
}

// hups counts the HUPs nginx logged.
func (s *versionSite) hups(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile(s.ErrorLog)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "(SIGHUP) received")
}

// version asks the version server which config serves.
func (s *versionSite) version(t *testing.T) string {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/", s.vport))
	if err != nil {
		t.Fatalf("nginx does not serve: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b))
}

// reloadUnit runs nginx under graceshim with ExecReload=graceshim reload
// $MAINPID, as generated units do.
func reloadUnit(bin string, site *nginxSite) string {
	return shimUnit(bin, nil, site, "30s") + "ExecReload=" + bin + " reload $MAINPID\n"
}

// TestE2EReloadRefusesBrokenConfig: systemctl reload with a syntax error in
// nginx's config fails with nginx -t's message, nginx keeps serving the
// old config, nothing restarted; with the error fixed the reload applies.
func TestE2EReloadRefusesBrokenConfig(t *testing.T) {
	t.Parallel()
	needPresetData(t, "nginx", func(p signals.Preset) bool { return p.ConfigTest != nil }, "a config test")
	u := userManager(t)
	bin := needGraceshim(t)
	site := newVersionSite(t)
	name := unitName("reload-broken")
	u.InstallUnit(t, name, reloadUnit(bin, site.nginxSite))
	u.Start(t, name)
	requireServing(t, u, name, site.nginxSite)
	if got := site.version(t); got != "v1" {
		t.Fatalf("version %q before any reload, want v1", got)
	}
	mainPID := u.MainPID(t, name)
	master, err := site.MasterPID()
	if err != nil {
		t.Fatal(err)
	}

	// A good reload applies, and systemctl reload returns once it has.
	site.setVersion(t, "v2")
	began := time.Now()
	if _, err := u.systemctl("reload", name); err != nil {
		t.Fatalf("reload with a good config: %v\nlog:\n%s", err, u.UnitLog(t, name))
	}
	t.Logf("figures: systemctl reload (good config) took %s", time.Since(began).Round(time.Millisecond))
	if got := site.version(t); got != "v2" {
		t.Errorf("version %q right after systemctl reload returned, want v2", got)
	}
	if st := u.Show(t, name, "StatusText"); !strings.Contains(st, "reloaded: new worker pid") {
		t.Errorf("StatusText %q after the reload, want it to name the new worker", st)
	}

	// A broken one is refused: systemctl reload fails, with nginx -t's
	// message in the unit's log (ExecReload's stderr) and in its status.
	site.write(t, "bogus_directive on;\n")
	began = time.Now()
	out, err := u.systemctl("reload", name)
	took := time.Since(began)
	if err == nil {
		t.Fatalf("systemctl reload with a broken config succeeded: %s\nlog:\n%s", out, u.UnitLog(t, name))
	}
	t.Logf("figures: systemctl reload (broken config) failed after %s: %v", took.Round(time.Millisecond), err)
	log := u.UnitLog(t, name)
	if !strings.Contains(log, `unknown directive "bogus_directive"`) || !strings.Contains(log, "graceshim: reload: refused: reload refused") {
		t.Errorf("the unit log does not carry nginx -t's message from graceshim reload:\n%s", log)
	}
	if st := u.Show(t, name, "StatusText"); !strings.Contains(st, "reload refused") || !strings.Contains(st, "bogus_directive") {
		t.Errorf("StatusText %q, want the refusal with nginx -t's message", st)
	}
	if st := u.Show(t, name, "ActiveState"); st != "active" {
		t.Errorf("ActiveState=%s after the refused reload, want active", st)
	}
	if got := site.version(t); got != "v2" {
		t.Errorf("version %q after the refused reload, want v2 (the old config serving)", got)
	}
	if code, err := site.Get("/small"); err != nil || code != 200 {
		t.Errorf("nginx does not serve after the refused reload: %d, %v", code, err)
	}
	if got := u.MainPID(t, name); got != mainPID {
		t.Errorf("MainPID went from %d to %d", mainPID, got)
	}
	if got, err := site.MasterPID(); err != nil || got != master {
		t.Errorf("nginx master went from %d to %d (%v)", master, got, err)
	}
	// nginx logs each HUP it gets ("signal 1 (SIGHUP) received"): one,
	// for the good reload.
	if n := site.hups(t); n != 1 {
		t.Errorf("nginx got %d HUPs, want 1: the refused reload must send none", n)
	}

	// graceshim reload run by hand says the same, with its exit code.
	code, stderr := runReload(t, strconv.Itoa(mainPID))
	if code != 6 || !strings.Contains(stderr, `unknown directive "bogus_directive"`) {
		t.Errorf("graceshim reload by hand: exit %d, want 6 with nginx -t's message; stderr:\n%s", code, stderr)
	}

	// Fixed, the reload applies.
	site.setVersion(t, "v3")
	if _, err := u.systemctl("reload", name); err != nil {
		t.Fatalf("reload with the config fixed: %v\nlog:\n%s", err, u.UnitLog(t, name))
	}
	if got := site.version(t); got != "v3" {
		t.Errorf("version %q after the fixed reload, want v3", got)
	}
	if n := site.hups(t); n != 2 {
		t.Errorf("nginx got %d HUPs, want 2", n)
	}
	if got := u.MainPID(t, name); got != mainPID {
		t.Errorf("MainPID went from %d to %d", mainPID, got)
	}
	requireResultAfterStop(t, u, name)
}

// needPresetData skips unless the preset has what the test proves
// (signals/presets.go holds the daemons' facts; a branch may carry the
// supervisor's side before the data).
func needPresetData(t *testing.T, name string, has func(signals.Preset) bool, what string) {
	t.Helper()
	p, err := signals.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	if !has(p) {
		t.Skipf("the %s preset has no %s yet", name, what)
	}
}

// requireResultAfterStop stops the unit and wants Result=success.
func requireResultAfterStop(t *testing.T, u *userSystemd, name string) {
	t.Helper()
	u.Stop(t, name)
	requireResult(t, u, name, "success")
}

// runReload runs graceshim reload with args and returns its exit code and
// stderr.
func runReload(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, needGraceshim(t), append([]string{"reload"}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("graceshim reload %v hung", args)
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), stderr.String()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, stderr.String()
}

// TestE2EReloadNoGraceshim: graceshim reload names what is wrong when the
// pid is no graceshim, with exit 2.
func TestE2EReloadNoGraceshim(t *testing.T) {
	sleep := exec.Command("sleep", "60")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sleep.Process.Kill(); sleep.Wait() }()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{strconv.Itoa(sleep.Process.Pid)}, "(sleep) has no graceshim control socket"},
		{[]string{"4194304"}, "no process 4194304"},
		{[]string{"nginx"}, `bad PID "nginx"`},
		{nil, "want one PID"},
	}
	for _, tt := range tests {
		code, stderr := runReload(t, tt.args...)
		if code != 2 || !strings.Contains(stderr, tt.want) {
			t.Errorf("graceshim reload %v: exit %d, stderr %q; want exit 2 saying %q", tt.args, code, stderr, tt.want)
		}
	}
}

// TestE2EReloadPIDNamespace: graceshim as PID 1 of a pid namespace (a
// container's entrypoint) is reached by graceshim reload from outside it,
// with the pid seen from outside: the control socket is found from that
// pid's sockets, not from a name holding graceshim's own idea of its pid
// (1). A good config applies; a broken one is refused with exit 6.
func TestE2EReloadPIDNamespace(t *testing.T) {
	t.Parallel()
	needPresetData(t, "nginx", func(p signals.Preset) bool { return p.ConfigTest != nil }, "a config test")
	site := newVersionSite(t)
	p := startPID1(t, "--preset", "nginx", "--", "/usr/sbin/nginx", "-c", site.Conf)
	if !waitFor(30*time.Second, 20*time.Millisecond, func() bool {
		code, err := site.Get("/small")
		return err == nil && code == 200
	}) {
		t.Fatalf("nginx under graceshim as PID 1 did not answer:\n%s", p.out)
	}
	site.setVersion(t, "v2")
	if code, stderr := runReload(t, strconv.Itoa(p.shim)); code != 0 {
		t.Fatalf("graceshim reload %d (PID 1 inside): exit %d: %s\n%s", p.shim, code, stderr, p.out)
	}
	if got := site.version(t); got != "v2" {
		t.Errorf("version %q after the reload, want v2", got)
	}
	site.write(t, "bogus_directive on;\n")
	code, stderr := runReload(t, strconv.Itoa(p.shim))
	if code != 6 || !strings.Contains(stderr, `unknown directive "bogus_directive"`) {
		t.Errorf("reload with a broken config: exit %d, want 6 with nginx -t's message; stderr:\n%s", code, stderr)
	}
	if got := site.version(t); got != "v2" {
		t.Errorf("version %q after the refused reload, want v2", got)
	}
	if n := site.hups(t); n != 1 {
		t.Errorf("nginx got %d HUPs, want 1", n)
	}
}

// TestE2EUWSGIConfigTestModes runs the uwsgi preset's config test on the
// real uWSGI with configurations whose app step (--no-server) would act
// on something: an http router whose port the running daemon holds (the
// router binds it before the app loads) and an emperor (which never
// exits). The test must pass them after reading the options, saying the
// app was not loaded, within its bound; and a plain http-socket config
// with a broken app must still fail it.
func TestE2EUWSGIConfigTestModes(t *testing.T) {
	uwsgi := needCmd(t, "uwsgi")
	dir := t.TempDir()
	app := filepath.Join(dir, "app.py")
	if err := os.WriteFile(app, []byte("def application(e, start_response):\n    start_response('200 OK', [])\n    return [b'ok']\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	port := held.Addr().(*net.TCPAddr).Port
	ini := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("[uwsgi]\nplugins = python3,http\nstrict = true\nmaster = true\nchdir = "+dir+"\nwsgi-file = app.py\n"+body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	vassals := filepath.Join(dir, "vassals")
	os.Mkdir(vassals, 0o755)
	p, _ := signals.Lookup("uwsgi")
	for _, tc := range []struct {
		name    string
		argv    []string
		pass    bool
		skipped bool // the app step was left out, and said so
		broken  bool // app.py does not compile
	}{
		{"http router on a held port", []string{uwsgi, "--ini", ini("router.ini", fmt.Sprintf("http = 127.0.0.1:%d\n", port))}, true, true, false},
		{"emperor", []string{uwsgi, "--emperor", vassals}, true, true, false},
		{"http-socket on a held port", []string{uwsgi, "--ini", ini("socket.ini", fmt.Sprintf("http-socket = 127.0.0.1:%d\n", port))}, true, false, false},
		{"http-socket, broken app", []string{uwsgi, "--ini", ini("socket.ini", fmt.Sprintf("http-socket = 127.0.0.1:%d\n", port))}, false, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := "def application(e, start_response):\n    start_response('200 OK', [])\n    return [b'ok']\n"
			if tc.broken {
				src += "this is not python(\n"
			}
			if err := os.WriteFile(app, []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
			test := p.ConfigTest(tc.argv)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, test[0], test[1:]...)
			cmd.WaitDelay = 5 * time.Second
			out, err := cmd.CombinedOutput()
			if ctx.Err() != nil {
				t.Fatalf("the config test did not end within 30s:\n%s", out)
			}
			if (err == nil) != tc.pass {
				t.Errorf("config test: %v, want pass=%v:\n%s", err, tc.pass, out)
			}
			if said := strings.Contains(string(out), "the app is not loaded"); said != tc.skipped {
				t.Errorf("says the app is not loaded: %v, want %v:\n%s", said, tc.skipped, out)
			}
			if loaded := strings.Contains(string(out), "no-server mode requested"); loaded == tc.skipped && !tc.broken {
				t.Errorf("the app step ran: %v, want %v:\n%s", loaded, !tc.skipped, out)
			}
		})
	}
}
