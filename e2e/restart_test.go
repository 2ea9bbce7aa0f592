package e2e

// Restarts that refuse no one: new connections during `systemctl restart`
// and during a stop, a "deploy" pause and a start, under a real systemd
// user manager with real nginx, counted by wrk, with slow downloads in
// flight at the stop. The plain unit is the control: it must show errors.
// graceshim without a socket drains every download but refuses new
// connections while no nginx listens; with a .socket unit, or with the
// listening sockets kept in systemd's fd store across a restart, the
// clients wait in the backlog and the next nginx serves them.

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// restartDownloads is how many slow downloads are in flight at the stop.
const restartDownloads = 4

// deployPause is the "deploy" between a stop and a start.
const deployPause = 3 * time.Second

// restartCase is one way of running nginx.
type restartCase struct {
	name   string
	socket bool // a .socket unit holds the listening socket
	daemon bool // nginx's "daemon on"
	// units returns the service (and .socket, when socket) unit files.
	service func(site *nginxSite) string
}

// restartFigures is what one action under load measured.
type restartFigures struct {
	load       wrkResult // wrk's count: a refused connect is retried at once, each try an error
	clients    arrivals  // new clients arriving at a steady pace, each counted once
	intact     int       // downloads complete and intact
	took       time.Duration
	refusedAt  string // what a connection right after a plain stop met (stop-deploy-start only)
	duringStop string // what a connection during the stop's drain met
}

func (f restartFigures) String() string {
	s := fmt.Sprintf("clients: %s; wrk: %d connection errors (connect %d, read %d, write %d, timeout %d), %d non-2xx of %d requests; %d/%d downloads intact; took %s",
		f.clients, f.load.Connect+f.load.Read+f.load.Write+f.load.Timeout, f.load.Connect, f.load.Read, f.load.Write, f.load.Timeout,
		f.load.Non2xx, f.load.Requests, f.intact, restartDownloads, f.took.Round(100*time.Millisecond))
	if f.refusedAt != "" {
		s += "; a connection during the stop's drain: " + f.duringStop + "; right after the stop: " + f.refusedAt
	}
	return s
}

// socketName is the .socket unit of a service unit name.
func socketName(service string) string {
	return strings.TrimSuffix(service, ".service") + ".socket"
}

// TestRestart measures the four ways through systemctl restart and
// through stop, deployPause, start, and logs the figures. It asserts the
// goal (no error with a socket, none through a restart with the fd store,
// every download intact under graceshim) and that the control shows
// errors, so that the scenario can fail.
func TestRestart(t *testing.T) {
	u := userManager(t)
	bin := needGraceshim(t)
	needCmd(t, "wrk")
	cases := []restartCase{
		{name: "plain", daemon: true, service: func(site *nginxSite) string {
			// In the style of Debian's nginx.service: forking, QUIT with
			// 5 s before TERM (start-stop-daemon --retry QUIT/5).
			return fmt.Sprintf(`[Unit]
Description=plain nginx (control)

[Service]
Type=forking
PIDFile=%[2]s
ExecStart=/usr/sbin/nginx -c %[1]s
ExecStop=-/sbin/start-stop-daemon --quiet --stop --retry QUIT/5 --pidfile %[2]s
TimeoutStopSec=5
KillMode=mixed
`, site.Conf, site.PIDFile)
		}},
		{name: "graceshim", service: func(site *nginxSite) string {
			return shimUnit(bin, nil, site, "60")
		}},
		{name: "graceshim+socket", socket: true, service: func(site *nginxSite) string {
			return shimUnit(bin, nil, site, "60")
		}},
		{name: "graceshim+fdstore", service: func(site *nginxSite) string {
			return addToSection(shimUnit(bin, nil, site, "60"), "Service", "FileDescriptorStoreMax=8")
		}},
	}
	figures := map[string]map[string]restartFigures{}
	for _, c := range cases {
		figures[c.name] = map[string]restartFigures{}
		t.Run(c.name, func(t *testing.T) {
			site := newNginxSite(t, nginxOpts{Rate: "100k", FileSize: 400 * 1024, Daemon: c.daemon})
			name := unitName("restart-" + strings.ReplaceAll(c.name, "+", "-"))
			u.InstallUnit(t, name, c.service(site))
			if c.socket {
				u.InstallUnit(t, socketName(name), fmt.Sprintf(`[Unit]
Description=graceshim end-to-end test socket (nginx on port %d)

[Socket]
ListenStream=127.0.0.1:%d
Backlog=4096
# InstallUnit adds these to a [Service] section otherwise.
StandardOutput=null
StandardError=null
`, site.Port, site.Port))
				u.Start(t, socketName(name))
			}
			u.Start(t, name)
			waitServing(t, u, name, site)

			restart := underLoad(t, u, name, site, func() {
				u.restart(t, name)
			})
			figures[c.name]["restart"] = restart
			t.Logf("figures: %s, systemctl restart: %s", c.name, restart)

			var during, after string
			deploy := underLoad(t, u, name, site, func() {
				during = probeDuringStop(t, u, name, site.Port, c.name == "graceshim+fdstore")
				after = connectOnce(site.Port)
				time.Sleep(deployPause) // the deploy: the scenario, not a synchronisation
				u.Start(t, name)
			})
			deploy.duringStop, deploy.refusedAt = during, after
			figures[c.name]["stop-deploy-start"] = deploy
			t.Logf("figures: %s, stop + %s + start: %s", c.name, deployPause, deploy)
			log := u.UnitLog(t, name)

			switch c.name {
			case "plain":
				if restart.clients.failed() == 0 || deploy.clients.failed() == 0 {
					t.Errorf("the plain unit showed no error (restart: %s; stop-deploy-start: %s): the scenario no longer tells a refused connection from a kept one", restart, deploy)
				}
			case "graceshim":
				requireIntact(t, "restart", restart, log)
				requireIntact(t, "stop-deploy-start", deploy, log)
			case "graceshim+socket":
				requireIntact(t, "restart", restart, log)
				requireIntact(t, "stop-deploy-start", deploy, log)
				requireNoErrors(t, "restart", restart, log)
				requireNoErrors(t, "stop-deploy-start", deploy, log)
				if during != "accepted throughout the stop" {
					t.Errorf("with a socket unit, connections during the stop's drain met %q, want them accepted (queued) throughout", during)
				}
				if !strings.Contains(log, "nginx takes 1 inherited listening sockets through the NGINX environment variable") {
					t.Errorf("graceshim did not say it handed the socket to nginx\nlog:\n%s", log)
				}
			case "graceshim+fdstore":
				requireIntact(t, "restart", restart, log)
				requireIntact(t, "stop-deploy-start", deploy, log)
				requireNoErrors(t, "restart", restart, log)
				// A plain stop releases the store at the graceful
				// signal: the stopping server refuses, so that a load
				// balancer fails over at once (kept, the store would
				// queue clients for the whole drain and then reset them).
				if during != "refused" || after != "refused" {
					t.Errorf("with the fd store, a connection during a plain stop's drain met %q and right after it %q, want both refused\nlog:\n%s", during, after, log)
				}
				requireJobAnswered(t, log, "kept 1 listening sockets in systemd's fd store")
			}
		})
	}
	var table strings.Builder
	table.WriteString("| unit | systemctl restart | stop, 3 s deploy, start |\n|---|---|---|\n")
	for _, c := range cases {
		f := figures[c.name]
		if _, ok := f["restart"]; !ok {
			continue
		}
		fmt.Fprintf(&table, "| %s | %s | %s |\n", c.name, short(f["restart"]), short(f["stop-deploy-start"]))
	}
	t.Logf("figures (connection errors / non-2xx of requests; downloads intact):\n%s", table.String())
}

func short(f restartFigures) string {
	return fmt.Sprintf("clients %d/%d failed (%d refused); wrk %d errors, %d non-2xx of %d; %d/%d downloads",
		f.clients.failed(), f.clients.total, f.clients.refused, f.load.errors()-f.load.Non2xx, f.load.Non2xx, f.load.Requests, f.intact, restartDownloads)
}

// underLoad runs wrk against /small and puts restartDownloads slow
// downloads in flight, runs action, then waits until nginx serves again
// and lets wrk see it before stopping it.
func underLoad(t *testing.T, u *userSystemd, name string, site *nginxSite, action func()) restartFigures {
	t.Helper()
	small := fmt.Sprintf("http://127.0.0.1:%d/small", site.Port)
	// A queued client waits for the old nginx's drain and the new start:
	// startWrk's timeout (wrkTimeout) covers that wait.
	w := startWrk(t, small)
	d := startDownloads(t, site.URL, restartDownloads)
	clients := startArrivals(fmt.Sprintf("127.0.0.1:%d", site.Port))
	began := time.Now()
	action()
	took := time.Since(began)
	waitServing(t, u, name, site)
	// The load goes on a moment after the server is back, so that a late
	// failure would show.
	time.Sleep(500 * time.Millisecond)
	arrived := clients.Stop()
	load := w.Stop(t)
	return restartFigures{load: load, clients: arrived, intact: d.Completed(site.FileSize, site.SHA256), took: took}
}

// arrivals counts how new clients fared: one arrives every arrivalEvery,
// connects and GETs /small with a generous timeout (a queued client waits
// for the old server's drain and the next start).
type arrivals struct {
	total, ok, refused, other, non2xx int
	firstErr                          string
}

func (a arrivals) failed() int { return a.refused + a.other + a.non2xx }

func (a arrivals) String() string {
	s := fmt.Sprintf("%d/%d failed (%d refused, %d other errors, %d non-2xx)", a.failed(), a.total, a.refused, a.other, a.non2xx)
	if a.firstErr != "" {
		s += " first: " + a.firstErr
	}
	return s
}

const (
	arrivalEvery   = 20 * time.Millisecond
	arrivalTimeout = 30 * time.Second
	maxArrivals    = 5000 // bounds the count whatever happens
)

// arrivalRun is a stream of clients under way; Stop ends it.
type arrivalRun struct {
	begun atomic.Int64 // clients that have begun
	stop  func() arrivals
}

// Begun is how many clients have begun so far.
func (r *arrivalRun) Begun() int { return int(r.begun.Load()) }

// Stop stops new arrivals, waits for those under way (each bounded by
// arrivalTimeout) and counts.
func (r *arrivalRun) Stop() arrivals { return r.stop() }

// waitBegun waits until n more clients than before have begun: the
// clients a test needs to arrive in a window it holds open.
func (r *arrivalRun) waitBegun(t *testing.T, before, n int) {
	t.Helper()
	if !waitFor(30*time.Second, 10*time.Millisecond, func() bool { return r.Begun() >= before+n }) {
		t.Fatalf("only %d of %d clients began within 30s", r.Begun()-before, n)
	}
}

// startArrivals starts the clients.
func startArrivals(addr string) *arrivalRun {
	var (
		r       = &arrivalRun{}
		mu      sync.Mutex
		a       arrivals
		wg      sync.WaitGroup
		quit    = make(chan struct{})
		stopped = make(chan struct{})
	)
	client := &httpClient{timeout: arrivalTimeout}
	go func() {
		defer close(stopped)
		tick := time.NewTicker(arrivalEvery)
		defer tick.Stop()
		for n := 0; n < maxArrivals; n++ {
			select {
			case <-quit:
				return
			case <-tick.C:
			}
			wg.Add(1)
			r.begun.Add(1)
			go func() {
				defer wg.Done()
				code, err := client.status(addr, "/small")
				mu.Lock()
				defer mu.Unlock()
				a.total++
				switch {
				case errors.Is(err, syscall.ECONNREFUSED):
					a.refused++
				case err != nil:
					a.other++
				case code < 200 || code > 299:
					a.non2xx++
				default:
					a.ok++
				}
				if err != nil && a.firstErr == "" {
					a.firstErr = err.Error()
				}
			}()
		}
	}()
	var once sync.Once
	r.stop = func() arrivals {
		once.Do(func() {
			close(quit)
			<-stopped
			wg.Wait()
		})
		mu.Lock()
		defer mu.Unlock()
		return a
	}
	return r
}

// startGate holds a unit's starts in ExecStartPre= while the test keeps
// it closed. systemd runs ExecStartPre= only once the previous main
// process is gone (a restart is a stop, then a start), so while the gate
// holds a start no server runs, for as long as the test needs: clients
// that arrive then (gatedArrivals) come while nothing serves, however
// slow the machine. Sleeping in ExecStartPre= instead gave a window of
// a fixed length, and the clients a count that timing decided.
type startGate struct{ dir string }

// gateArrivals is how many clients arrive while a closed gate holds a
// start.
const gateArrivals = 10

// newStartGate makes a gate, open.
func newStartGate(t *testing.T) *startGate {
	t.Helper()
	g := &startGate{dir: t.TempDir()}
	// The wait is bounded (a hang guard: 60 s) so that a test that
	// died with the gate closed leaves no start held for good.
	writeFile(t, g.script(), `#!/bin/sh
d=$(dirname "$0")
touch "$d/held"
i=0
while [ ! -e "$d/open" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
rm -f "$d/held"
`)
	g.open(t)
	return g
}

func (g *startGate) script() string { return filepath.Join(g.dir, "gate.sh") }

// execStartPre is the unit line that makes each start pass the gate.
func (g *startGate) execStartPre() string {
	return fmt.Sprintf("ExecStartPre=/bin/sh %q", g.script())
}

func (g *startGate) open(t *testing.T) { t.Helper(); writeFile(t, filepath.Join(g.dir, "open"), "") }

func (g *startGate) close(t *testing.T) {
	t.Helper()
	if err := os.Remove(filepath.Join(g.dir, "open")); err != nil {
		t.Fatal(err)
	}
}

// waitHeld waits until the gate holds a start (no server runs now).
func (g *startGate) waitHeld(t *testing.T, u *userSystemd, name string) {
	t.Helper()
	if !waitFor(60*time.Second, 10*time.Millisecond, func() bool {
		_, err := os.Stat(filepath.Join(g.dir, "held"))
		return err == nil
	}) {
		t.Fatalf("no start of %s reached ExecStartPre= within 60s\n%s\nlog:\n%s", name, u.Status(t, name), u.UnitLog(t, name))
	}
}

// gatedArrivals holds the next start of the unit at the gate (closed
// before, open again after), waits until gateArrivals clients began
// while it held, and lets the start go on. action is what stops the
// server (a restart, or a kill that Restart= follows); it runs in its
// own goroutine, and gatedArrivals returns once it has, failing the test
// if it failed.
func gatedArrivals(t *testing.T, u *userSystemd, name string, g *startGate, clients *arrivalRun, action func() error) {
	t.Helper()
	g.close(t)
	done := make(chan error, 1)
	go func() { done <- action() }()
	g.waitHeld(t, u, name)
	clients.waitBegun(t, clients.Begun(), gateArrivals)
	g.open(t)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%v\n%s\nlog:\n%s", err, u.Status(t, name), u.UnitLog(t, name))
		}
	case <-time.After(2 * systemctlTimeout):
		t.Fatalf("%s: no end of the action within %s", name, 2*systemctlTimeout)
	}
}

// restartAction is systemctl restart of the unit as an action for
// gatedArrivals, holding the reload lock shared as u.restart does.
func restartAction(u *userSystemd, name string) func() error {
	return func() error {
		unlock, err := lockReload(syscall.LOCK_SH)
		if err != nil {
			return err
		}
		defer unlock()
		_, err = u.systemctl("restart", name)
		return err
	}
}

// probeDuringStop runs systemctl stop and, once the unit is stopping
// (and, when released is set, graceshim said it released the fd store),
// connects again and again until a connection is refused or the stop
// ends. It returns "refused" when one was refused while the unit was still
// stopping (the drain of the downloads in flight), else what the last
// connection met and "throughout the stop". Whether a stopping server
// refuses is the question: nginx closes its listeners a moment after its
// QUIT, so a single early try would race it.
func probeDuringStop(t *testing.T, u *userSystemd, name string, port int, released bool) string {
	t.Helper()
	stopped := make(chan error, 1)
	go func() { _, err := u.stop(name); stopped <- err }()
	stopping := func() bool {
		out, _ := u.systemctl("show", "-p", "ActiveState", "--value", name)
		return strings.TrimSpace(out) == "deactivating"
	}
	ok := waitFor(30*time.Second, 10*time.Millisecond, func() bool {
		if released {
			return strings.Contains(u.UnitLog(t, name), "the listening sockets leave systemd's fd store")
		}
		return stopping()
	})
	got := "(the stop never showed)"
	var stopErr error
	done := false
	if ok {
	probe:
		for {
			select {
			case stopErr = <-stopped:
				done = true
				got += " throughout the stop"
				break probe
			default:
			}
			got = connectOnce(port)
			if got == "refused" {
				if !stopping() {
					got += " (only once the stop had ended)"
				}
				break
			}
			time.Sleep(10 * time.Millisecond) // a pace for the tries, not a synchronisation
		}
	}
	if !done {
		stopErr = <-stopped
	}
	if stopErr != nil {
		t.Fatalf("%v\nlog:\n%s", stopErr, u.UnitLog(t, name))
	}
	return got
}

// connectOnce says what one connection to the port meets: "accepted",
// "refused", or the error.
func connectOnce(port int) string {
	// A generous bound: a refusal is immediate, and a dial that times
	// out on a loaded machine must not read as anything else by chance.
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 10*time.Second)
	switch {
	case err == nil:
		c.Close()
		return "accepted"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	}
	return err.Error()
}

func requireIntact(t *testing.T, what string, f restartFigures, log string) {
	t.Helper()
	if f.intact != restartDownloads {
		t.Errorf("%s: %d/%d downloads intact, want all\nlog:\n%s", what, f.intact, restartDownloads, log)
	}
}

func requireNoErrors(t *testing.T, what string, f restartFigures, log string) {
	t.Helper()
	if f.load.errors() != 0 || f.clients.failed() != 0 {
		t.Errorf("%s: %s, want no error\nwrk:\n%s\nlog:\n%s", what, f, f.load.Output, log)
	}
}

// TestRestartBadSockets: sockets that do not fit the daemon are a clear
// one-line error and exit status 7 before anything starts (no daemon
// left running, nothing bound), and a reload whose config no longer fits
// the sockets is refused while the server serves on.
func TestRestartBadSockets(t *testing.T) {
	u := userManager(t)
	bin := needGraceshim(t)
	socketUnit := socketUnitFor
	service := func(exec string) string { return socketService(bin, exec) }
	// refused starts the socket and the service, which must fail with
	// graceshim's exit status 7 and a log line containing want.
	refused := func(t *testing.T, name string, port int, exec, want string) {
		t.Helper()
		u.InstallUnit(t, name, service(exec))
		u.InstallUnit(t, socketName(name), socketUnit(port))
		u.Start(t, socketName(name))
		if _, err := u.systemctl("start", name); err == nil {
			t.Fatalf("the service started, want it refused\nlog:\n%s", u.UnitLog(t, name))
		}
		log := u.UnitLog(t, name)
		if got := u.Show(t, name, "ExecMainStatus"); got != "7" {
			t.Errorf("ExecMainStatus=%s, want 7\nlog:\n%s", got, log)
		}
		var line string
		for _, l := range strings.Split(log, "\n") {
			if strings.Contains(l, want) {
				line = l
			}
		}
		if line == "" {
			t.Errorf("no log line says %q\nlog:\n%s", want, log)
		} else if !strings.HasPrefix(line, "graceshim: inherited sockets do not fit the server: ") {
			t.Errorf("the error line is %q, want it to begin with graceshim's error", line)
		}
		if got := u.Show(t, name, "MainPID"); got != "0" {
			t.Errorf("MainPID=%s after the refused start, want none", got)
		}
	}

	t.Run("nginx listening elsewhere", func(t *testing.T) {
		site := newNginxSite(t, nginxOpts{})
		port := freePort(t)
		name := unitName("badsock-nginx")
		refused(t, name, port, "/usr/sbin/nginx -c "+site.Conf,
			fmt.Sprintf("the inherited socket 127.0.0.1:%d (fd 3) is on no listen directive of nginx's (it listens on 127.0.0.1:%d)", port, site.Port))
		if out, err := exec.Command("pgrep", "-f", site.Conf).Output(); err == nil {
			t.Errorf("an nginx of the refused config runs: pids %s", out)
		}
		if got := connectOnce(site.Port); got != "refused" {
			t.Errorf("nginx's own port %d: %s, want refused (nothing started)", site.Port, got)
		}
	})

	t.Run("haproxy without fd@", func(t *testing.T) {
		needCmd(t, "haproxy")
		port := freePort(t)
		cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
		if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend web
    bind 127.0.0.1:%d
    http-request return status 200
`, port)), 0o644); err != nil {
			t.Fatal(err)
		}
		refused(t, unitName("badsock-haproxy"), port, "/usr/sbin/haproxy -Ws -f "+cfg,
			fmt.Sprintf(`the inherited socket 127.0.0.1:%d (fd 3) is bound nowhere in haproxy's config: add "bind fd@3"`, port))
	})

	t.Run("memcached cannot take sockets", func(t *testing.T) {
		memcached := needCmd(t, "memcached")
		port := freePort(t)
		refused(t, unitName("badsock-memcached"), port, fmt.Sprintf("%s -u root -l 127.0.0.1 -p %d -U 0", memcached, port),
			"memcached cannot take the 1 listening sockets systemd passed")
	})

	t.Run("reload to a config listening elsewhere", func(t *testing.T) {
		site := newNginxSite(t, nginxOpts{})
		name := unitName("badsock-reload")
		u.InstallUnit(t, name, service("/usr/sbin/nginx -c "+site.Conf))
		u.InstallUnit(t, socketName(name), socketUnit(site.Port))
		u.Start(t, socketName(name))
		u.Start(t, name)
		waitServing(t, u, name, site)
		pid := u.MainPID(t, name)
		conf, err := os.ReadFile(site.Conf)
		if err != nil {
			t.Fatal(err)
		}
		other := freePort(t)
		bad := strings.Replace(string(conf), fmt.Sprintf("listen 127.0.0.1:%d;", site.Port), fmt.Sprintf("listen 127.0.0.1:%d;", other), 1)
		if bad == string(conf) {
			t.Fatalf("no listen directive to change in\n%s", conf)
		}
		if err := os.WriteFile(site.Conf, []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := u.systemctl("reload", name); err != nil {
			t.Fatal(err)
		}
		want := "reload of nginx refused: config test /usr/sbin/nginx -T -q -c " + site.Conf + " failed (its config does not fit the inherited sockets)"
		if !waitFor(30*time.Second, 20*time.Millisecond, func() bool { return strings.Contains(u.UnitLog(t, name), want) }) {
			t.Fatalf("graceshim did not refuse the reload (%q)\nlog:\n%s", want, u.UnitLog(t, name))
		}
		if code, err := site.Get("/small"); err != nil || code != 200 {
			t.Errorf("after the refused reload nginx answers %d, %v; want 200", code, err)
		}
		if got := connectOnce(other); got != "refused" {
			t.Errorf("the new config's port %d: %s, want refused (the config was not loaded)", other, got)
		}
		if got := u.MainPID(t, name); got != pid {
			t.Errorf("MainPID %d after the refused reload, want %d", got, pid)
		}
		if got := u.Show(t, name, "ActiveState"); got != "active" {
			t.Errorf("ActiveState=%s after the refused reload, want active", got)
		}
	})
}

// socketUnitFor is a .socket unit listening on 127.0.0.1:port.
func socketUnitFor(port int) string {
	return fmt.Sprintf(`[Unit]
Description=graceshim end-to-end test socket (port %d)

[Socket]
ListenStream=127.0.0.1:%d
# InstallUnit adds these to a [Service] section otherwise.
StandardOutput=null
StandardError=null
`, port, port)
}

// socketService runs exec under graceshim, with a reload that is HUP.
func socketService(bin, exec string) string {
	return fmt.Sprintf(`[Unit]
Description=graceshim end-to-end test (inherited sockets)

[Service]
Type=notify
NotifyAccess=main
KillMode=mixed
TimeoutStartSec=60
TimeoutStopSec=60
ExecStart=%s -- %s
ExecReload=/bin/kill -HUP $MAINPID
`, bin, exec)
}

// TestRestartSocketDaemons: nginx (NGINX=3;), HAProxy (bind fd@3) and
// gunicorn (LISTEN_FDS) started by systemd with a .socket unit under
// graceshim serve on the socket, keep it through a reload, and a restart
// under a steady stream of new clients refuses none.
func TestRestartSocketDaemons(t *testing.T) {
	u := userManager(t)
	bin := needGraceshim(t)
	cases := []struct {
		name  string
		cmd   string
		setup func(t *testing.T, dir string, port int) string // writes the config for port, returns the command line
		says  string                                          // graceshim's word that the daemon took the socket
	}{
		{name: "nginx", cmd: "nginx", says: "nginx takes 1 inherited listening sockets through the NGINX environment variable",
			setup: func(t *testing.T, dir string, port int) string {
				site := newNginxSite(t, nginxOpts{})
				conf, err := os.ReadFile(site.Conf)
				if err != nil {
					t.Fatal(err)
				}
				writeFile(t, site.Conf, strings.Replace(string(conf), fmt.Sprintf("listen 127.0.0.1:%d;", site.Port), fmt.Sprintf("listen 127.0.0.1:%d;", port), 1))
				writeFile(t, filepath.Join(site.Dir, "www", "index.html"), "ok\n")
				return "/usr/sbin/nginx -c " + site.Conf
			}},
		{name: "haproxy", cmd: "haproxy", says: "haproxy takes 1 inherited listening sockets through bind fd@N in its config",
			setup: func(t *testing.T, dir string, port int) string {
				cfg := filepath.Join(dir, "haproxy.cfg")
				// HAProxy 2.6 answers by itself: http-request return
				// (configuration.html 4.2).
				writeFile(t, cfg, `defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend web
    bind fd@3
    http-request return status 200 content-type text/plain string ok
`)
				return "/usr/sbin/haproxy -Ws -f " + cfg
			}},
		{name: "gunicorn", cmd: "gunicorn", says: "gunicorn takes 1 inherited listening sockets through LISTEN_FDS",
			setup: func(t *testing.T, dir string, port int) string {
				writeFile(t, filepath.Join(dir, "app.py"), `def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok\n"]
`)
				// --bind names another port: gunicorn serves the
				// inherited socket and ignores it (gunicorn/arbiter.py).
				return fmt.Sprintf("/usr/bin/gunicorn --chdir %s --workers 2 --bind 127.0.0.1:1 app:app", dir)
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			needCmd(t, c.cmd)
			port := freePort(t)
			name := unitName("sockdaemon-" + c.name)
			// Clients arrive while no daemon runs at all: the gate
			// holds the restart's start.
			gate := newStartGate(t)
			u.InstallUnit(t, name, addToSection(socketService(bin, c.setup(t, t.TempDir(), port)), "Service", gate.execStartPre()))
			u.InstallUnit(t, socketName(name), socketUnitFor(port))
			u.Start(t, socketName(name))
			u.Start(t, name)
			addr := fmt.Sprintf("127.0.0.1:%d", port)
			get := func() (int, error) { return (&httpClient{timeout: 10 * time.Second}).status(addr, "/") }
			if code, err := get(); err != nil || code != 200 {
				t.Fatalf("%s does not answer on the socket: %d, %v\nlog:\n%s", c.name, code, err, u.UnitLog(t, name))
			}
			if _, err := u.systemctl("reload", name); err != nil {
				t.Fatal(err)
			}
			if !waitFor(30*time.Second, 20*time.Millisecond, func() bool { return strings.Contains(u.UnitLog(t, name), c.name+" reloaded") }) {
				t.Fatalf("the reload did not show\nlog:\n%s", u.UnitLog(t, name))
			}
			if code, err := get(); err != nil || code != 200 {
				t.Fatalf("%s does not answer after the reload: %d, %v\nlog:\n%s", c.name, code, err, u.UnitLog(t, name))
			}
			clients := startArrivals(addr)
			gatedArrivals(t, u, name, gate, clients, restartAction(u, name))
			if !waitFor(30*time.Second, 20*time.Millisecond, func() bool { code, err := get(); return err == nil && code == 200 }) {
				t.Fatalf("%s does not answer after the restart\nlog:\n%s", c.name, u.UnitLog(t, name))
			}
			got := clients.Stop()
			log := u.UnitLog(t, name)
			t.Logf("figures: %s with a .socket unit, systemctl restart: clients %s", c.name, got)
			if got.failed() != 0 || got.total < gateArrivals {
				t.Errorf("restart: clients %s, want none failed of at least %d (arrived while no daemon ran)\nlog:\n%s", got, gateArrivals, log)
			}
			if strings.Count(log, c.says) < 2 {
				t.Errorf("graceshim did not say %q at both starts\nlog:\n%s", c.says, log)
			}
		})
	}
}

// TestRestartFDStore follows systemd's own count of the fd store
// (NFileDescriptorStore) through what changes nginx's listeners: the
// first start stores its socket, a reload that adds a listen stores that
// one too and a reload that drops one takes it out, a restart keeps them
// (the port a reload added refuses no one), a reload after a restart
// drops one of the sockets nginx inherited, and a plain stop empties the
// store.
func TestRestartFDStore(t *testing.T) {
	// With "daemon on" the first nginx daemonizes and graceshim takes
	// the sockets of the master it adopted; nginx on inherited sockets
	// does not daemonize.
	for _, daemon := range []bool{false, true} {
		t.Run(map[bool]string{false: "daemon off", true: "daemon on"}[daemon], func(t *testing.T) { testFDStore(t, daemon) })
	}
}

func testFDStore(t *testing.T, daemon bool) {
	u := userManager(t)
	bin := needGraceshim(t)
	site := newNginxSite(t, nginxOpts{Daemon: daemon})
	name := unitName(map[bool]string{false: "fdstore", true: "fdstore-daemon"}[daemon])
	// The gate holds the first restart's start, so that clients arrive
	// while no nginx runs.
	gate := newStartGate(t)
	u.InstallUnit(t, name, addToSection(socketService(bin, "/usr/sbin/nginx -c "+site.Conf), "Service", "FileDescriptorStoreMax=8\n"+gate.execStartPre()))
	u.Start(t, name)
	waitServing(t, u, name, site)
	stored := func(want string) {
		t.Helper()
		waitFDStore(t, u, name, want)
	}
	stored("1")
	conf, err := os.ReadFile(site.Conf)
	if err != nil {
		t.Fatal(err)
	}
	first := fmt.Sprintf("listen 127.0.0.1:%d;", site.Port)
	other := freePort(t)
	second := fmt.Sprintf("listen 127.0.0.1:%d;", other)
	reload := func(content string) {
		t.Helper()
		writeFile(t, site.Conf, content)
		before := strings.Count(u.UnitLog(t, name), "nginx reloaded")
		if _, err := u.systemctl("reload", name); err != nil {
			t.Fatal(err)
		}
		if !waitFor(30*time.Second, 20*time.Millisecond, func() bool { return strings.Count(u.UnitLog(t, name), "nginx reloaded") > before }) {
			t.Fatalf("the reload did not show\nlog:\n%s", u.UnitLog(t, name))
		}
	}
	reload(strings.Replace(string(conf), first, first+"\n        "+second, 1))
	stored("2")
	reload(strings.Replace(string(conf), first, second, 1))
	stored("1")
	addr := fmt.Sprintf("127.0.0.1:%d", other)
	clients := startArrivals(addr)
	gatedArrivals(t, u, name, gate, clients, restartAction(u, name))
	if !waitFor(30*time.Second, 20*time.Millisecond, func() bool {
		code, err := (&httpClient{timeout: 5 * time.Second}).status(addr, "/small")
		return err == nil && code == 200
	}) {
		t.Fatalf("nginx does not answer on %s after the restart\nlog:\n%s", addr, u.UnitLog(t, name))
	}
	got := clients.Stop()
	t.Logf("figures: the fd store, a port a reload added, systemctl restart: clients %s", got)
	if got.failed() != 0 || got.total < gateArrivals {
		t.Errorf("restart: clients %s, want none failed of at least %d (arrived while no nginx ran)\nlog:\n%s", got, gateArrivals, u.UnitLog(t, name))
	}
	stored("1")
	// After a restart nginx holds the stored sockets as inherited ones: a
	// reload that drops one of them is let through, and the dropped port
	// leaves the store, so it refuses (kept, it would queue clients for
	// nothing).
	reload(strings.Replace(string(conf), first, first+"\n        "+second, 1))
	stored("2")
	u.restart(t, name)
	waitServing(t, u, name, site)
	stored("2")
	reload(strings.Replace(string(conf), first, second, 1))
	stored("1")
	if c := connectOnce(site.Port); c != "refused" {
		t.Errorf("after a reload dropped the listen on %d (restarted with it), a connection met %q, want refused\nlog:\n%s", site.Port, c, u.UnitLog(t, name))
	}
	u.Stop(t, name)
	stored("0")
	// The store empties at the end of any stop; whether a plain stop
	// released it at the graceful signal (a client refused during the
	// drain) is TestRestart's graceshim+fdstore case. Here: systemd was
	// asked for the job each time, and answered.
	requireJobAnswered(t, u.UnitLog(t, name))
}

// requireJobAnswered checks graceshim's log of a unit with the fd store,
// restarted and then stopped: graceshim asked systemd for the unit's job
// at each stop and got an answer (a restart, then a plain stop), never
// "cannot tell". The log must say the lines in also too.
func requireJobAnswered(t *testing.T, log string, also ...string) {
	t.Helper()
	for _, want := range append(also, "the job is a restart", "the job is a stop, not a restart") {
		if !strings.Contains(log, want) {
			t.Errorf("the log does not say %q\nlog:\n%s", want, log)
		}
	}
	if strings.Contains(log, "cannot tell a restart from a stop") {
		t.Errorf("graceshim could not ask systemd for the unit's job\nlog:\n%s", log)
	}
}

// waitFDStore waits until systemd counts want sockets in the unit's fd
// store (NFileDescriptorStore), and fails the test when it does not
// within 10 s.
func waitFDStore(t *testing.T, u *userSystemd, name, want string) {
	t.Helper()
	var got string
	if !waitFor(10*time.Second, 20*time.Millisecond, func() bool { got = u.Show(t, name, "NFileDescriptorStore"); return got == want }) {
		t.Fatalf("NFileDescriptorStore=%s, want %s\nlog:\n%s", got, want, u.UnitLog(t, name))
	}
}

// TestRestartFDStoreUnixListen: nginx with a "listen unix:PATH" beside
// its TCP listen, under graceshim with FileDescriptorStoreMax=. nginx
// deletes the file of a unix socket it bound itself when it exits
// (src/core/ngx_connection.c ngx_close_listening_sockets), so a stored
// unix socket would reach the next nginx with no path: graceshim keeps
// only the TCP socket, and after systemctl restart (twice: the second
// restart is the one a stored socket would break for good) the unix
// path serves again.
func TestRestartFDStoreUnixListen(t *testing.T) {
	u := userManager(t)
	bin := needGraceshim(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "site.sock")
	site := newNginxSite(t, nginxOpts{ExtraHTTP: fmt.Sprintf("server { listen unix:%s; location / { return 200 \"ux\\n\"; } }", sock)})
	name := unitName("fdstore-unix")
	u.InstallUnit(t, name, addToSection(socketService(bin, "/usr/sbin/nginx -c "+site.Conf), "Service", "FileDescriptorStoreMax=8"))
	u.Start(t, name)
	defer u.Stop(t, name)
	waitServing(t, u, name, site)
	get := func() error { return getUnix(sock) }
	const kept = "stays out of systemd's fd store"
	if !waitFor(10*time.Second, 50*time.Millisecond, func() bool {
		return get() == nil && u.Show(t, name, "NFileDescriptorStore") == "1" && strings.Contains(u.UnitLog(t, name), kept)
	}) {
		t.Fatalf("before the restart: %v, NFileDescriptorStore=%s (want 1: the TCP socket only)\nlog:\n%s", get(), u.Show(t, name, "NFileDescriptorStore"), u.UnitLog(t, name))
	}
	for i := 1; i <= 2; i++ {
		u.restart(t, name)
		waitServing(t, u, name, site)
		if !waitFor(10*time.Second, 50*time.Millisecond, func() bool { return get() == nil }) {
			t.Fatalf("after systemctl restart %d, the unix listener %s: %v\nlog:\n%s", i, sock, get(), u.UnitLog(t, name))
		}
		// What graceshim stores it sends in a datagram systemd reads
		// when it gets to it: wait for the count. (After a restart the
		// new graceshim may see nginx ready on the inherited TCP socket
		// before nginx binds the unix one, and then says nothing of it:
		// measured here under load.)
		waitFDStore(t, u, name, "1") // the TCP socket
	}
}

// TestRestartSocketNginxConfigShapes: nginx configs graceshim must read
// as nginx does before it hands nginx a .socket unit's socket: the
// listen in a snippet included inside the server block (nginx -T dumps
// the snippet as a file of its own), and an apostrophe inside a word
// (return 200 don't-panic;), which opens no quote. Either misread made
// graceshim refuse to start nginx (exit 7).
func TestRestartSocketNginxConfigShapes(t *testing.T) {
	u := userManager(t)
	bin := needGraceshim(t)
	site := newNginxSite(t, nginxOpts{})
	conf, err := os.ReadFile(site.Conf)
	if err != nil {
		t.Fatal(err)
	}
	listen := fmt.Sprintf("listen 127.0.0.1:%d;", site.Port)
	if !strings.Contains(string(conf), listen) {
		t.Fatalf("no %q in the site's config", listen)
	}
	// A relative include starts from the directory of the main file.
	if err := os.MkdirAll(filepath.Join(filepath.Dir(site.Conf), "snippets"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(filepath.Dir(site.Conf), "snippets", "listen.conf"), listen+"\n")
	writeFile(t, site.Conf, strings.Replace(string(conf), listen, "include snippets/listen.conf;\n        location = /word { return 200 don't-panic; }", 1))
	name := unitName("sock-nginx-shapes")
	u.InstallUnit(t, name, socketService(bin, "/usr/sbin/nginx -c "+site.Conf))
	u.InstallUnit(t, socketName(name), socketUnitFor(site.Port))
	u.Start(t, socketName(name))
	defer u.Stop(t, socketName(name))
	u.Start(t, name)
	defer u.Stop(t, name)
	addr := fmt.Sprintf("127.0.0.1:%d", site.Port)
	for i := 0; i < 2; i++ {
		if code, err := (&httpClient{timeout: 10 * time.Second}).status(addr, "/word"); err != nil || code != 200 {
			t.Fatalf("nginx does not answer on the socket (start %d): %d, %v\nlog:\n%s", i+1, code, err, u.UnitLog(t, name))
		}
		if i == 0 {
			u.restart(t, name)
		}
	}
	log := u.UnitLog(t, name)
	if says := "nginx takes 1 inherited listening sockets through the NGINX environment variable"; strings.Count(log, says) < 2 {
		t.Errorf("graceshim did not say %q at both starts\nlog:\n%s", says, log)
	}
	if strings.Contains(log, "is not among the inherited sockets") {
		t.Errorf("graceshim missed the listen in the snippet\nlog:\n%s", log)
	}
}

// TestRestartSocketNotForGraceshim: a socket unit whose service runs
// graceshim from a shell that forks it (sh -c 'graceshim ...; ...'):
// systemd set LISTEN_PID to the shell's pid, so the socket is not
// graceshim's to take. graceshim says so, naming the cause, and the
// socket does not leak into nginx (it would hold the port inside nginx,
// which then fails to bind it or never learns of it).
func TestRestartSocketNotForGraceshim(t *testing.T) {
	u := userManager(t)
	bin := needGraceshim(t)
	site := newNginxSite(t, nginxOpts{})
	other := freePort(t)
	name := unitName("sock-forked")
	u.InstallUnit(t, name, fmt.Sprintf(`[Unit]
Description=graceshim end-to-end test (a shell forks graceshim)

[Service]
Type=simple
KillMode=mixed
TimeoutStopSec=30
ExecStart=/bin/sh -c '%s -- /usr/sbin/nginx -c %s; exit $?'
`, bin, site.Conf))
	u.InstallUnit(t, socketName(name), socketUnitFor(other))
	u.Start(t, socketName(name))
	defer u.Stop(t, socketName(name))
	u.Start(t, name)
	defer u.Stop(t, name)
	waitServing(t, u, name, site)
	const says = "is not graceshim's pid"
	if !waitFor(10*time.Second, 20*time.Millisecond, func() bool { return strings.Contains(u.UnitLog(t, name), says) }) {
		t.Fatalf("graceshim did not say the sockets were not its own (%q)\nlog:\n%s", says, u.UnitLog(t, name))
	}
	if log := u.UnitLog(t, name); !strings.Contains(log, "ExecStart= must exec graceshim") {
		t.Errorf("the warning does not name the fix\nlog:\n%s", log)
	}
	// The shell (the unit's main process) got the socket at fd 3.
	sock, err := os.Readlink(fmt.Sprintf("/proc/%s/fd/3", u.Show(t, name, "MainPID")))
	if err != nil || !strings.HasPrefix(sock, "socket:[") {
		t.Fatalf("the unit's main process has no socket at fd 3: %q, %v", sock, err)
	}
	master, err := site.MasterPID()
	if err != nil {
		t.Fatal(err)
	}
	dir := fmt.Sprintf("/proc/%d/fd", master)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if link, _ := os.Readlink(filepath.Join(dir, e.Name())); link == sock {
			t.Errorf("nginx (pid %d) holds the socket unit's %s at fd %s", master, sock, e.Name())
		}
	}
}

// TestRestartFDStoreFull: FileDescriptorStoreMax=1 with two listens.
// graceshim stores the first (fd order, the order of the listen
// directives) and says the other is left out; a reload that drops the
// stored listen takes it out of the store (the dropped port refuses,
// rather than queueing clients for nothing) and stores the other one,
// which a restart then keeps refusing no one.
func TestRestartFDStoreFull(t *testing.T) {
	u := userManager(t)
	bin := needGraceshim(t)
	site := newNginxSite(t, nginxOpts{})
	conf, err := os.ReadFile(site.Conf)
	if err != nil {
		t.Fatal(err)
	}
	first := fmt.Sprintf("listen 127.0.0.1:%d;", site.Port)
	other := freePort(t)
	second := fmt.Sprintf("listen 127.0.0.1:%d;", other)
	writeFile(t, site.Conf, strings.Replace(string(conf), first, first+"\n        "+second, 1))
	name := unitName("fdstore-full")
	gate := newStartGate(t)
	u.InstallUnit(t, name, addToSection(socketService(bin, "/usr/sbin/nginx -c "+site.Conf), "Service", "FileDescriptorStoreMax=1\n"+gate.execStartPre()))
	u.Start(t, name)
	defer u.Stop(t, name)
	waitServing(t, u, name, site)
	const full = "systemd's fd store is full (FileDescriptorStoreMax=1): 1 listening sockets left out: 127.0.0.1:"
	if !waitFor(10*time.Second, 20*time.Millisecond, func() bool { return strings.Contains(u.UnitLog(t, name), full) }) {
		t.Fatalf("graceshim did not say the store is full (%q)\nlog:\n%s", full, u.UnitLog(t, name))
	}
	waitFDStore(t, u, name, "1") // what fits
	writeFile(t, site.Conf, strings.Replace(string(conf), first, second, 1))
	before := strings.Count(u.UnitLog(t, name), "nginx reloaded")
	if _, err := u.systemctl("reload", name); err != nil {
		t.Fatal(err)
	}
	if !waitFor(30*time.Second, 20*time.Millisecond, func() bool {
		log := u.UnitLog(t, name)
		return strings.Count(log, "nginx reloaded") > before && strings.Contains(log, "a listening socket the server closed left systemd's fd store") && strings.Count(log, "kept 1 listening sockets") >= 2
	}) {
		t.Fatalf("after the reload, the dropped socket did not leave the store and the other was not kept\nlog:\n%s", u.UnitLog(t, name))
	}
	if c := connectOnce(site.Port); c != "refused" {
		t.Errorf("after the reload dropped the stored listen on %d, a connection met %q, want refused", site.Port, c)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", other)
	clients := startArrivals(addr)
	gatedArrivals(t, u, name, gate, clients, restartAction(u, name))
	if !waitFor(30*time.Second, 20*time.Millisecond, func() bool {
		code, err := (&httpClient{timeout: 5 * time.Second}).status(addr, "/small")
		return err == nil && code == 200
	}) {
		t.Fatalf("nginx does not answer on %s after the restart\nlog:\n%s", addr, u.UnitLog(t, name))
	}
	got := clients.Stop()
	t.Logf("figures: FileDescriptorStoreMax=1, the socket stored after a reload, systemctl restart: clients %s", got)
	if got.failed() != 0 || got.total < gateArrivals {
		t.Errorf("restart: clients %s, want none failed of at least %d (arrived while no nginx ran)\nlog:\n%s", got, gateArrivals, u.UnitLog(t, name))
	}
}

// TestRestartSocketUnixListen: a .socket unit with a unix ListenStream=
// and nginx's "listen unix:PATH". Unlike a socket nginx bound itself
// (TestRestartFDStoreUnixListen), nginx leaves the file of an inherited
// unix socket alone while the parent it started with lives
// (ngx_close_listening_sockets: "!ls[i].inherited || ngx_getppid() !=
// ngx_parent"), and systemd owns the path: it still serves after two
// restarts.
func TestRestartSocketUnixListen(t *testing.T) {
	u := userManager(t)
	bin := needGraceshim(t)
	sock := filepath.Join(t.TempDir(), "site.sock")
	site := newNginxSite(t, nginxOpts{ExtraHTTP: fmt.Sprintf("server { listen unix:%s; location / { return 200 \"ux\\n\"; } }", sock)})
	name := unitName("sock-unix")
	u.InstallUnit(t, name, socketService(bin, "/usr/sbin/nginx -c "+site.Conf))
	u.InstallUnit(t, socketName(name), fmt.Sprintf(`[Unit]
Description=graceshim end-to-end test socket (unix)

[Socket]
ListenStream=%s
StandardOutput=null
StandardError=null
`, sock))
	u.Start(t, socketName(name))
	defer u.Stop(t, socketName(name))
	u.Start(t, name)
	defer u.Stop(t, name)
	waitServing(t, u, name, site)
	get := func() error { return getUnix(sock) }
	for i := 0; i <= 2; i++ {
		if i > 0 {
			u.restart(t, name)
			waitServing(t, u, name, site)
		}
		if err := get(); err != nil {
			t.Fatalf("after %d restarts, the socket unit's %s: %v\nlog:\n%s", i, sock, err, u.UnitLog(t, name))
		}
	}
	if log := u.UnitLog(t, name); strings.Count(log, "nginx takes 1 inherited listening sockets") < 3 {
		t.Errorf("graceshim did not hand nginx the unix socket at each start\nlog:\n%s", log)
	}
}

// getUnix asks nginx for / over the unix socket at path and wants a 200,
// within a few seconds.
func getUnix(path string) error {
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET / HTTP/1.0\r\nHost: x\r\n\r\n")
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.Contains(line, " 200 ") {
		return fmt.Errorf("answer %q", line)
	}
	return nil
}

// TestRestartFDStoreOtherDaemon: systemd's fd store outlives a
// daemon-reload and a restart, so when a unit that ran nginx under
// graceshim with FileDescriptorStoreMax= is changed to run another
// daemon, the sockets graceshim stored for nginx reach the new
// graceshim as LISTEN_FDS. They are graceshim's own, not a .socket
// unit's: a daemon that binds its own sockets (postgres's preset) must
// still start, one that takes LISTEN_FDS (the generic preset) must not
// be handed nginx's old port, and the port must leave the store and
// refuse rather than queue clients for nobody.
func TestRestartFDStoreOtherDaemon(t *testing.T) {
	for _, preset := range []string{"postgres", "generic"} {
		t.Run(preset, func(t *testing.T) { testFDStoreOtherDaemon(t, preset) })
	}
}

func testFDStoreOtherDaemon(t *testing.T, preset string) {
	u := userManager(t)
	bin := needGraceshim(t)
	site := newNginxSite(t, nginxOpts{})
	name := unitName("fdstore-other-" + preset)
	u.InstallUnit(t, name, addToSection(socketService(bin, "/usr/sbin/nginx -c "+site.Conf), "Service", "FileDescriptorStoreMax=8"))
	u.Start(t, name)
	waitServing(t, u, name, site)
	waitFDStore(t, u, name, "1")
	// The unit now runs another daemon; what it was given is written
	// where the test reads it.
	seen := filepath.Join(t.TempDir(), "listen_fds")
	// $$: systemd would expand $LISTEN_FDS in ExecStart= itself.
	daemon := fmt.Sprintf(`/bin/sh -c 'echo "LISTEN_FDS=$$LISTEN_FDS" >%s; exec sleep 600'`, seen)
	unit := strings.Replace(socketService(bin, daemon), "ExecStart="+bin+" --", "ExecStart="+bin+" --preset "+preset+" --ready exec --", 1)
	u.InstallUnit(t, name, addToSection(unit, "Service", "FileDescriptorStoreMax=8"))
	u.restart(t, name)
	var got []byte
	if !waitFor(10*time.Second, 20*time.Millisecond, func() bool {
		var err error
		got, err = os.ReadFile(seen)
		return err == nil && strings.HasSuffix(string(got), "\n")
	}) {
		t.Fatalf("the new daemon did not start\n%s\nlog:\n%s", u.Status(t, name), u.UnitLog(t, name))
	}
	if strings.TrimSpace(string(got)) != "LISTEN_FDS=" {
		t.Errorf("the new daemon was given %q, want no LISTEN_FDS: nginx's stored socket is not its\nlog:\n%s", strings.TrimSpace(string(got)), u.UnitLog(t, name))
	}
	if !waitFor(10*time.Second, 20*time.Millisecond, func() bool { return u.Show(t, name, "NFileDescriptorStore") == "0" }) {
		t.Errorf("NFileDescriptorStore=%s, want 0: nginx's socket stays stored\nlog:\n%s", u.Show(t, name, "NFileDescriptorStore"), u.UnitLog(t, name))
	}
	if c := connectOnce(site.Port); c != "refused" {
		t.Errorf("a connection to nginx's old port %d met %q, want refused\nlog:\n%s", site.Port, c, u.UnitLog(t, name))
	}
}

// TestRestartFDStoreAfterCrash: nginx's master killed (SIGKILL, as the
// OOM killer does) under a unit with Restart=on-failure: graceshim
// ends with the kill's status, systemd starts it again, and the stored
// socket, which outlives the automatic restart, keeps the clients that
// come meanwhile waiting for the next nginx instead of refusing them.
//
// Without Restart= the unit goes down and systemd closes the stored
// socket itself: the port refuses.
func TestRestartFDStoreAfterCrash(t *testing.T) {
	for _, restart := range []bool{true, false} {
		t.Run(map[bool]string{true: "Restart=on-failure", false: "no Restart="}[restart], func(t *testing.T) { testFDStoreAfterCrash(t, restart) })
	}
}

func testFDStoreAfterCrash(t *testing.T, restart bool) {
	u := userManager(t)
	bin := needGraceshim(t)
	site := newNginxSite(t, nginxOpts{})
	name := unitName(map[bool]string{true: "fdstore-crash", false: "fdstore-crash-norestart"}[restart])
	gate := newStartGate(t)
	extra := "FileDescriptorStoreMax=8\n" + gate.execStartPre()
	if restart {
		extra += "\nRestart=on-failure\nRestartSec=1"
	}
	u.InstallUnit(t, name, addToSection(socketService(bin, "/usr/sbin/nginx -c "+site.Conf), "Service", extra))
	u.Start(t, name)
	waitServing(t, u, name, site)
	waitFDStore(t, u, name, "1")
	shim := u.MainPID(t, name)
	// Any of graceshim's threads may have started it.
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", shim))
	var b []byte
	for _, task := range tasks {
		kids, _ := os.ReadFile(task)
		b = append(b, kids...)
	}
	var master int
	if _, err := fmt.Sscan(string(b), &master); err != nil {
		t.Fatalf("no child of graceshim %d: %q", shim, b)
	}
	if !restart {
		if err := syscall.Kill(master, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if !waitFor(30*time.Second, 20*time.Millisecond, func() bool { return u.Show(t, name, "ActiveState") == "failed" }) {
			t.Fatalf("the unit is not down\n%s\nlog:\n%s", u.Status(t, name), u.UnitLog(t, name))
		}
		// systemd frees a dead unit's resources, the fd store among
		// them, from a queue of its own (unit_submit_to_release_resources_queue,
		// src/core/unit.c): wait for the count rather than read it once.
		waitFDStore(t, u, name, "0")
		if c := connectOnce(site.Port); c != "refused" {
			t.Errorf("a connection with the unit down met %q, want refused\nlog:\n%s", c, u.UnitLog(t, name))
		}
		return
	}
	addr := fmt.Sprintf("127.0.0.1:%d", site.Port)
	clients := startArrivals(addr)
	// The gate holds the automatic restart's start: clients arrive
	// while no nginx runs.
	gatedArrivals(t, u, name, gate, clients, func() error { return syscall.Kill(master, syscall.SIGKILL) })
	if !waitFor(30*time.Second, 20*time.Millisecond, func() bool {
		pid := u.MainPID(t, name)
		return pid != 0 && pid != shim && strings.Count(u.UnitLog(t, name), "using inherited sockets") > 0
	}) {
		t.Fatalf("no new graceshim on the stored socket\n%s\nlog:\n%s", u.Status(t, name), u.UnitLog(t, name))
	}
	waitServing(t, u, name, site)
	got := clients.Stop()
	t.Logf("figures: the fd store, nginx's master killed, Restart=on-failure after 1s: clients %s", got)
	if got.failed() != 0 || got.total < gateArrivals {
		t.Errorf("clients %s, want none failed of at least %d (arrived while no nginx ran)\nlog:\n%s", got, gateArrivals, u.UnitLog(t, name))
	}
	waitFDStore(t, u, name, "1")
}

// TestRestartFDStoreSignalledRestart: a unit with Restart=always whose
// graceshim is sent TERM directly (systemctl kill, a kill by hand) stops
// with no job of systemd's and is started again by Restart=: a restart,
// so the stored socket stays and the clients that come meanwhile wait
// for the next nginx. (systemctl stop is a stop, which releases them:
// TestRestart's fd store case.)
func TestRestartFDStoreSignalledRestart(t *testing.T) {
	u := userManager(t)
	bin := needGraceshim(t)
	site := newNginxSite(t, nginxOpts{})
	name := unitName("fdstore-signalled")
	gate := newStartGate(t)
	u.InstallUnit(t, name, addToSection(socketService(bin, "/usr/sbin/nginx -c "+site.Conf), "Service", "FileDescriptorStoreMax=8\nRestart=always\nRestartSec=1\n"+gate.execStartPre()))
	u.Start(t, name)
	waitServing(t, u, name, site)
	waitFDStore(t, u, name, "1")
	shim := u.MainPID(t, name)
	addr := fmt.Sprintf("127.0.0.1:%d", site.Port)
	clients := startArrivals(addr)
	// The gate holds the automatic restart's start: clients arrive
	// while no nginx runs.
	gatedArrivals(t, u, name, gate, clients, func() error {
		_, err := u.systemctl("kill", "--kill-who=main", "--signal=TERM", name)
		return err
	})
	if !waitFor(30*time.Second, 20*time.Millisecond, func() bool {
		pid := u.MainPID(t, name)
		return pid != 0 && pid != shim && u.Show(t, name, "ActiveState") == "active"
	}) {
		t.Fatalf("no new graceshim\n%s\nlog:\n%s", u.Status(t, name), u.UnitLog(t, name))
	}
	waitServing(t, u, name, site)
	got := clients.Stop()
	t.Logf("figures: the fd store, TERM to graceshim with Restart=always after 1s: clients %s", got)
	if got.failed() != 0 || got.total < gateArrivals {
		t.Errorf("clients %s, want none failed of at least %d (arrived while no nginx ran)\nlog:\n%s", got, gateArrivals, u.UnitLog(t, name))
	}
}
