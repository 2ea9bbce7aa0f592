package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"

	"github.com/graceshim/graceshim/signals"
	"github.com/graceshim/graceshim/supervisor/proctab"
)

// pidFilePoll is how often a pid file is read while waiting for it to name
// the master.
const pidFilePoll = 50 * time.Millisecond

// reloadTimeout bounds the wait for a reload to show (the daemon's READY=1,
// new workers): then it is reported as not confirmed, and READY=1 is sent
// anyway. A variable for the tests.
var reloadTimeout = 10 * time.Second

// ErrBadOption marks an option Run found unusable before starting anything
// (a health address that cannot be listened on).
var ErrBadOption = errors.New("bad option")

// Run starts the command, supervises it until it and every process it left
// behind are gone, and returns its result: nil for a clean exit, an
// *ExitStatus otherwise, or an error naming what could not be done. A
// cancelled ctx asks for a stop, as SIGTERM does.
func Run(ctx context.Context, opts Options) error {
	if len(opts.Argv) == 0 {
		return fmt.Errorf("%w: no command given", ErrSetup)
	}
	opts.setDefaults()
	if !opts.Preset.Runs(opts.Argv[0]) && (opts.Preset.ConfigTest != nil || opts.Preset.ReloadCommand != nil) {
		// A wrapper (an entrypoint script that execs the daemon): the
		// daemon's config test or reload command cannot be derived from
		// its argv, and run on the wrapper it would start a second server.
		opts.Log.Warnf("%s is not %s itself: reloads go without %s's config test or reload command", filepath.Base(opts.Argv[0]), opts.Preset.Name, opts.Preset.Name)
		opts.Preset.ConfigTest, opts.Preset.ReloadCommand = nil, nil
	}
	if err := opts.Map.Check(Catches); err != nil {
		return fmt.Errorf("%w: %v", ErrBadOption, err)
	}
	path, err := exec.LookPath(opts.Argv[0])
	if err != nil {
		return startError(opts.Argv[0], err)
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("%w: cannot become a child subreaper: %v", ErrSetup, err)
	}
	if opts.Watcher == nil {
		opts.Watcher = newConnWatcher(opts.Count, opts.Log)
	}
	var health *healthServer
	if opts.HealthListen != "" {
		if health, err = startHealth(opts.HealthListen); err != nil {
			return err
		}
		defer health.Close()
	}

	// Register before the child starts, so no signal or exit is missed.
	sigs, ignored := catchSignals()
	defer signal.Stop(sigs)
	chld := make(chan os.Signal, 1)
	signal.Notify(chld, syscall.SIGCHLD)
	defer signal.Stop(chld)

	argv := append([]string(nil), opts.Argv...)
	if !strings.Contains(argv[0], "/") {
		// A binary upgrade re-executes argv[0] (nginx, unicorn): it must
		// be a path, not a name looked up in PATH.
		argv[0] = path
	}
	cmd := &exec.Cmd{
		Path:   path,
		Args:   argv,
		Env:    childEnv(opts.Env),
		Stdin:  os.Stdin,
		Stdout: os.Stdout,
		Stderr: os.Stderr,
		// A group of its own, so that a signal to graceshim's group (a
		// shell's job control, a kill -TERM -PGID) reaches graceshim
		// alone and is translated, as systemd's TERM is. On a terminal
		// the group gets the foreground (see the package doc).
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true, Pdeathsig: parentDeathSignal(opts.Preset)},
	}
	term := openTerminal(os.Stdin)
	if term.inForeground() {
		cmd.SysProcAttr.Foreground = true
		cmd.SysProcAttr.Ctty = term.fd
	}
	store := openFDStore(ctx, opts.Preset, opts.Log)
	sockets, err := passSockets(ctx, cmd, opts)
	if err != nil {
		return err
	}
	store.inherit(sockets)
	sockCheck := newSocketCheck(opts, sockets)
	defer sockCheck.Close()
	advice := checkUnit(ctx, opts.Log, filepath.Base(opts.Argv[0]))
	if c := opts.Preset.Caveat; c != nil && opts.Preset.Runs(opts.Argv[0]) {
		// What graceshim cannot fix but must say: shown with the unit's
		// advice, at start and in STATUS while the server runs.
		if caveat := c(opts.Argv, os.ReadFile); caveat != "" {
			advice = strings.TrimPrefix(advice+"; "+caveat, "; ")
		}
	}
	if lim := opts.Preset.ConfigTestLimit; lim != "" && opts.Preset.ConfigTest != nil {
		// Reloads are tested, but not for everything: said once here
		// and in the answer to each reload the test lets through.
		opts.Log.Warnf("%s", lim)
	}
	rel := startRelay(&opts, cmd)
	if rel != nil {
		defer rel.Close()
	}
	// A stop that came while graceshim started is a stop: the command
	// is not started. Other signals wait for the loop, in order.
	stop, pending := stopBeforeStart(sigs, opts)
	if stop != 0 {
		opts.Log.Infof("received %s before %s started: not starting it", signals.Name(stop), opts.Argv[0])
		return &ExitStatus{ws: syscall.WaitStatus(stop)}
	}
	release := make(chan struct{})
	defer close(release)
	if err := startLocked(cmd, release); err != nil {
		return startError(opts.Argv[0], err)
	}
	pid := cmd.Process.Pid
	ignoreTTYStops()
	if cmd.SysProcAttr.Foreground {
		term.child = pid
	}
	for _, s := range sockets {
		// The server holds them now; a copy kept here would keep a
		// listener open after the server closed it on a graceful stop.
		s.file.Close()
	}

	loopCtx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	exits := make(chan exited, 64)
	watchCmds := make(chan watchCmd, 4)
	watchEvents := make(chan watchEvent, 4)
	probeTargets := make(chan string, 1)
	probes := make(chan probeResult, 1)
	if opts.HealthCheck != nil {
		wg.Add(1)
		go func() { defer wg.Done(); probeLoop(loopCtx, opts.HealthCheck, probeTargets, probes) }()
	}
	notes := make(chan childNote, 16)
	if rel != nil {
		wg.Add(1)
		go func() { defer wg.Done(); rel.serve(loopCtx, os.Getpid(), opts.Log, notes) }()
	}
	controls := make(chan controlReq, 4)
	if ln, err := listenControl(); err != nil {
		opts.Log.Warnf("%v: 'graceshim reload' cannot reach this graceshim", err)
	} else {
		wg.Add(1)
		go func() { defer wg.Done(); serveControl(loopCtx, ln, opts.Log, controls) }()
	}
	wg.Add(2)
	go func() { defer wg.Done(); reap(loopCtx, chld, exits) }()
	var readyUntil time.Time // zero: the watch actor does not look for listeners
	// A bare "tcp" health check needs the first listener, whatever READY=1
	// waits for.
	if opts.Ready == ReadyListen || opts.HealthCheck.needsTarget() {
		readyUntil = time.Now().Add(opts.ReadyTimeout)
	}
	go func() {
		defer wg.Done()
		watch(loopCtx, opts.Watcher, pid, readyUntil, watchCmds, watchEvents)
	}()

	l := &loop{
		opts:         opts,
		name:         filepath.Base(opts.Argv[0]),
		main:         pid,
		mainProc:     cmd.Process,
		startedAt:    time.Now(),
		self:         os.Getpid(),
		graceful:     opts.Map.Translate(syscall.SIGTERM),
		fast:         opts.Preset.Fast,
		health:       health,
		term:         term,
		child:        pid,
		exe:          executablePath(path),
		pending:      pending,
		unitAdvice:   advice,
		ignored:      ignored,
		watchCmds:    watchCmds,
		probeTargets: probeTargets,
		bg:           loopCtx,
		notes:        notes,
		rel:          rel,
		controls:     controls,
		checks:       make(chan checkOutput, 1),
		store:        store,
		sockCheck:    sockCheck,
		stop: newStopper(stopConfig{
			DrainDelay:   opts.DrainDelay,
			DrainTimeout: opts.DrainTimeout,
			StallTimeout: opts.StallTimeout,
			KillTimeout:  opts.KillTimeout,
			ExtendEvery:  DefaultExtendEvery,
			ExtendBy:     DefaultExtendBy,
			PreStop:      opts.Preset.PreStop != 0,
			SameSignal:   opts.Map.Translate(syscall.SIGTERM) == opts.Preset.Fast,
			NoGraceful:   opts.Preset.NoGracefulStop,
		}),
	}
	if rel != nil && opts.Preset.NativeNotify {
		l.reexec = l.startWatch()
	}
	err = l.run(ctx, sigs, exits, watchEvents, probes)
	l.abandonReload("graceshim ended: " + l.name + " " + describe(l.lastStatus))
	store.settle()
	return err
}

// startError explains why the command could not be started, keeping the
// cause for the exit code (127 not found, 126 not executable).
func startError(name string, err error) error {
	switch {
	case errors.Is(err, exec.ErrNotFound), errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("command not found: %s: %w", name, exec.ErrNotFound)
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.ENOEXEC), errors.Is(err, syscall.EISDIR):
		return fmt.Errorf("command not executable: %s: %w", name, fs.ErrPermission)
	}
	return fmt.Errorf("%w: cannot start %s: %v", ErrSetup, name, err)
}

// loop is the event loop. Its goroutine owns every field.
type loop struct {
	opts         Options
	name         string      // the command's base name, for messages
	main         int         // the master's pid
	mainProc     *os.Process // the master, signalled through its pidfd: never another process that took its pid
	self         int
	graceful     syscall.Signal
	fast         syscall.Signal
	health       *healthServer
	term         *terminal        // graceshim's controlling terminal, or nil
	child        int              // the process graceshim started
	exe          string           // the master's executable, as /proc/PID/exe shows it
	pending      []syscall.Signal // signals that came before the child started
	ignored      []syscall.Signal // signals left ignored, as the caller ignored them
	unitAdvice   string           // what to change in the unit's settings, "" when nothing
	settle       *settling        // processes a master left behind, watched for a new master
	watchCmds    chan<- watchCmd
	probeTargets chan<- string
	stop         *stopper

	mainGone   bool               // the master exited and no successor was found
	lastStatus syscall.WaitStatus // how the last master ended
	ready      bool
	awaitPID   time.Time // waiting for the pid file to name a new master until then

	// While a daemon's starter runs (starter.go): the stop's signals
	// held until the master is known, the bound of that hold, the pid
	// file's master that got them meanwhile, and whether the hold gave
	// up on the pid file.
	masterHeld      []syscall.Signal
	masterHeldUntil time.Time
	early           int
	starterGaveUp   bool
	upgraded        bool  // a binary upgrade began: the pid file may name a new master beside the one graceshim started
	setupErr        error // a failure of graceshim's own, returned once the tree is gone
	countErr        bool  // a count failure was logged
	notifyErr       bool  // a notify failure was logged

	reloadUntil time.Time    // a reload's signal was sent; it must show by then
	reloadOld   map[int]bool // the master's children when the reload began
	reload      *reloadRun   // a reload under way (its config test, its signal), or nil
	reloadSent  time.Time    // when the reload's signal went out
	reexec      *reexecWatch // a reload's signal went out and the master is not seen past it (reexec.go), or nil
	steady      *sigState    // the master's signal state when it was last seen steady (reexec.go), or nil
	bg          context.Context
	check       *checkRun         // a config test or reload command running, or nil
	checks      chan checkOutput  // their output, read to the end
	controls    <-chan controlReq // requests from the control socket
	notes       <-chan childNote  // the child's sd_notify datagrams (nil without a relay)
	childReady  bool              // the child said READY=1: it speaks sd_notify
	childSpoke  bool              // the child sent something on its notify socket
	listening   []string          // the listeners found while the child had its grace
	graceTimer  *time.Timer       // the child's grace to speak (notifyGrace)
	graceC      <-chan time.Time  // graceTimer's channel while it runs
	childFeeds  bool              // the child feeds the watchdog itself
	childStatus string            // the child's last STATUS=
	rel         *relay            // the child's notify socket, or nil
	seq         reloadSeq         // a reload's evidence on the notify socket (relay.go)
	upgrade     *upgrade          // a binary upgrade under way, or nil
	store       *fdStore          // systemd's fd store for the listening sockets, or nil
	sockCheck   *socketCheck      // the inherited sockets a reload's config must keep, or nil

	startedAt    time.Time          // the command was started
	orphanExited bool               // a process other than the master was reaped
	orphanStatus syscall.WaitStatus // how the last one ended

	healthy     bool // the last health check passed
	probeFailed bool // a failing health check was logged since the last pass

	who    whoWait       // for status, the drain's log lines and /metrics (control_status.go)
	asking *listenersAsk // the count per listener status requests wait for, or nil
}

func (l *loop) run(ctx context.Context, sigs <-chan os.Signal, exits <-chan exited, events <-chan watchEvent, probes <-chan probeResult) error {
	log := l.opts.Log
	log.Infof("started %s (pid %d), preset %s, TERM becomes %s", strings.Join(l.opts.Argv, " "), l.main, l.opts.Preset.Name, signals.Name(l.graceful))
	l.logStart()
	if l.unitAdvice != "" {
		log.Warnf("%s", l.unitAdvice)
	}
	if l.opts.Ready == ReadyExec && l.opts.HealthCheck == nil {
		l.markReady("running: %s (pid %d)", l.name, l.main)
	}
	for _, sig := range l.pending {
		l.onSignal(time.Now(), sig)
	}
	readyTimer := time.NewTimer(l.opts.ReadyTimeout)
	defer readyTimer.Stop()
	stopTimer := time.NewTimer(time.Hour)
	defer stopTimer.Stop()
	// pidPoll runs only while a pid file, a reload or an upgrade is being
	// waited for; an idle server costs the loop no wake-ups.
	pidPoll := time.NewTicker(pidFilePoll)
	pidPoll.Stop()
	defer pidPoll.Stop()
	polling := false
	// The watchdog (WatchdogSec=) is fed at half its interval, as
	// sd_watchdog_enabled(3) advises, and only when WATCHDOG_PID is unset
	// or ours.
	var watchdog <-chan time.Time
	if every, err := daemon.SdWatchdogEnabled(false); err != nil {
		log.Warnf("ignoring the systemd watchdog: %v", err)
	} else if every > 0 {
		t := time.NewTicker(every / 2)
		defer t.Stop()
		watchdog = t.C
		log.Infof("feeding the systemd watchdog every %s%s", every/2, map[bool]string{true: " while the health check passes", false: ""}[l.opts.HealthCheck != nil])
	}
	done := ctx.Done()

	for {
		// Each event is stamped when it is taken, not when the loop
		// began to wait.
		select {
		case sig := <-sigs:
			now := time.Now()
			l.onSignal(now, sig.(syscall.Signal))
		case e := <-exits:
			now := time.Now()
			if e.status.Stopped() {
				if e.pid == l.main {
					l.onMasterStopped(e)
				}
				break
			}
			if e.pid != 0 && e.pid == l.child {
				// The terminal goes back to graceshim with the process
				// it was handed to (see the package doc).
				l.term.takeBack()
			}
			if l.onExit(now, e) {
				return l.finish(now)
			}
		case ev := <-events:
			now := time.Now()
			l.onWatch(now, ev)
		case <-readyTimer.C:
			if !l.ready && l.opts.HealthCheck != nil {
				// READY=1 means the server serves: without a passing
				// check, systemd's own start timeout decides.
				log.Warnf("health check %s has not passed in %s; READY=1 waits for it", l.opts.HealthCheck, l.opts.ReadyTimeout)
			} else if !l.ready && (l.opts.Ready == ReadyNotify || l.childSpoke) {
				log.Warnf("%s did not send READY=1 within %s (started without its sd_notify option? --notify=off guesses readiness from listening sockets); telling systemd READY=1 anyway", l.name, l.opts.ReadyTimeout)
				l.markReady("running: %s (pid %d), no READY=1 from it", l.name, l.main)
			} else if !l.ready {
				log.Warnf("no listening socket seen in %s; telling systemd READY=1 anyway", l.opts.ReadyTimeout)
				l.markReady("running: %s (pid %d), no listening socket seen", l.name, l.main)
			}
		case <-pidPoll.C:
			now := time.Now()
			if !l.awaitPID.IsZero() {
				l.pollPIDFile(now)
			}
			if !l.reloadUntil.IsZero() {
				l.pollReload(now)
			}
			if l.upgrade != nil {
				l.pollUpgrade(now)
			}
			if l.settle != nil {
				l.pollSettle(now)
			}
			if l.reexec != nil && l.reexec.start {
				l.pollStart(now)
			}
			if len(l.masterHeld) > 0 {
				l.pollStarter(now)
			}
		case <-stopTimer.C:
			now := time.Now()
			l.do(now, l.stop.tick(now))
		case r := <-probes:
			l.onProbe(r)
		case <-l.graceC:
			l.onNotifyGrace()
		case n := <-l.notes:
			l.onChildNote(time.Now(), n)
		case req := <-l.controls:
			l.onControlRequest(time.Now(), req)
		case o := <-l.checks:
			l.onCheckOutput(o)
		case <-watchdog:
			// Once the child feeds the watchdog itself, its pings are
			// relayed and graceshim sends none while it serves: a hung
			// daemon must starve it. During a stop graceshim feeds it.
			if (l.opts.HealthCheck == nil || l.healthy || l.stop.stopping()) && (!l.childFeeds || l.stop.stopping()) {
				l.notify("WATCHDOG=1")
			}
		case <-done:
			now := time.Now()
			done = nil
			log.Infof("stop asked by the caller")
			l.do(now, l.stop.begin(now))
		}
		if want := !l.awaitPID.IsZero() || !l.reloadUntil.IsZero() || l.upgrade != nil || l.settle != nil || (l.reexec != nil && l.reexec.start) || (len(l.masterHeld) > 0 && l.starterRuns()); want != polling {
			polling = want
			if polling {
				pidPoll.Reset(pidFilePoll)
			} else {
				pidPoll.Stop()
			}
		}
		if next := l.stop.next(); !next.IsZero() {
			resetTimer(stopTimer, time.Until(next))
		}
		l.publishMetrics(time.Now())
	}
}

func (l *loop) markReady(format string, a ...any) {
	if l.ready {
		return
	}
	l.ready = true
	l.who.readyAt = time.Now()
	l.health.setReady()
	l.notify("READY=1\nSTATUS=" + fmt.Sprintf(format, a...))
	l.store.keep(l.self)
}

func (l *loop) notify(state string) {
	state = l.withUnitAdvice(state)
	if err := l.opts.Notifier.Notify(state); err != nil && !l.notifyErr {
		l.notifyErr = true
		l.opts.Log.Warnf("cannot notify systemd: %v", err)
	}
}

// onSignal handles a signal sent to graceshim. The stop signals (those
// that translate to the graceful or the fast signal) drive the stop state
// machine; the rest are passed on to the master, translated.
func (l *loop) onSignal(now time.Time, sig syscall.Signal) {
	switch {
	case sig == syscall.SIGPIPE:
		// graceshim's own write to a closed pipe (it now fails with
		// EPIPE), or one sent with kill: never the server's business.
		// Not logged: the log may be the closed pipe.
		return
	case sig == syscall.SIGWINCH && l.term.resized():
		l.opts.Log.Debugf("terminal window resized: not a command")
		return
	case sig == syscall.SIGCONT && l.onContinue():
		return
	}
	to := l.opts.Map.Translate(sig)
	switch {
	case to == l.graceful && !l.stop.stopping():
		if l.opts.Preset.NoGracefulStop {
			l.opts.Log.Infof("received %s: stopping %s with %s (%s has no graceful stop: its connections close at once)", signals.Name(sig), l.name, signals.Name(to), l.name)
		} else {
			l.opts.Log.Infof("received %s: stopping %s gracefully with %s", signals.Name(sig), l.name, signals.Name(to))
		}
		l.do(now, l.stop.begin(now))
	case sig == l.graceful && l.stop.phase == phaseDelay:
		// The graceful signal itself, sent to graceshim during the drain
		// delay, asks for the graceful stop now, not for a harder one.
		l.opts.Log.Infof("received %s during the drain delay: sending it now", signals.Name(sig))
		l.do(now, l.stop.gracefulNow(now))
	case to == l.graceful || to == l.fast:
		l.do(now, l.stop.escalate(now, "received "+signals.Name(sig)))
	case sig == syscall.SIGHUP && !l.stop.stopping() && (to != 0 && to == l.reloadSignal() || l.opts.Preset.ReloadCommand != nil):
		// systemd's and a user's HUP is a reload, tested first, whether
		// the preset's signal, the one --map gives, or a command (caddy).
		l.beginReload(now)
	case to == l.opts.Preset.Upgrade && to != 0 && !l.stop.stopping():
		l.beginUpgrade(now)
	case to != 0 && to == l.reloadSignal() && !l.stop.stopping() && l.reload == nil && l.upgrade == nil && !l.mainGone && l.awaitPID.IsZero():
		// The daemon's own reload signal sent to graceshim (Debian's
		// haproxy.service: ExecReload=/bin/kill -USR2 $MAINPID): passed
		// on as it is, with no config test, and followed as a reload, so
		// that a stop right after it waits for a master that executes
		// itself again (reexec.go; measured with HAProxy 2.6: a TERM
		// within 5 ms of a bare USR2 lost its soft stop).
		l.opts.Log.Infof("received %s: %s's reload signal, passed on as it is and followed as a reload", signals.Name(sig), l.name)
		l.reload = &reloadRun{by: signals.Name(sig)}
		l.sendReload(now)
	default:
		// The signal first, the log line after it: a write to the
		// journal's stream is not on the signal's way (issue 14: relay
		// latency).
		l.signalMaster(to)
		if sig == syscall.SIGCONT {
			// systemd sends CONT right after TERM on every stop.
			l.opts.Log.Debugf("passed CONT to %s (pid %d)", l.name, l.main)
		} else {
			l.opts.Log.Infof("passed %s to %s (pid %d) as %s", signals.Name(sig), l.name, l.main, signals.Name(to))
		}
	}
}

// beginReload handles the HUP that asks for a reload: the config test
// first, then the reload signal sig (see requestReload). A reload asked
// for by a signal has no one to answer: its outcome goes to the log and
// STATUS.
func (l *loop) beginReload(now time.Time) {
	l.opts.Log.Infof("received HUP: reloading %s (pid %d)", l.name, l.main)
	l.requestReload(now, "HUP", nil)
}

// pollReload checks whether a reload whose signal was sent is done: the
// master died (failed), a new worker came and no old one accepts (done; a
// daemon that speaks sd_notify may end it first with its READY=1, in
// onChildNote), or the bound passed (not confirmed: failed).
func (l *loop) pollReload(now time.Time) {
	if l.mainGone {
		l.failReload(fmt.Sprintf("%s (pid %d) %s during the reload", l.name, l.main, describe(l.lastStatus)), "")
		return
	}
	if l.reload != nil && l.reload.command {
		return // the reload command's end decides
	}
	if w := l.reexec; w != nil && w.done != "" {
		// Shown done; the master was not taking its signals yet.
		if ok, _ := l.masterTakes(); ok {
			l.endReload(w.done)
			return
		}
	} else if l.reloadOld != nil && !l.seq.reloading {
		// A daemon that said RELOADING=1 owes READY=1 (sd_notify(3)):
		// that, not its new workers, ends the reload. HAProxy's new
		// worker runs about 20 ms before its master is done
		// re-executing itself (reexec.go).
		// Done once a new worker runs and no old one accepts any more,
		// whether or not the daemon speaks sd_notify (gunicorn says
		// READY=1 only when it boots, not after a HUP: gunicorn/arbiter.py):
		// nginx starts the new workers, then tells the old ones to close
		// their listening sockets and drain; until then a request may
		// still meet the old configuration.
		if table, err := proctab.Read(); err == nil {
			next := 0
			for _, pid := range proctab.Children(table, l.main) {
				if !l.reloadOld[pid] && next == 0 {
					next = pid
				}
			}
			if next != 0 {
				listening := listeningInodes()
				old := false
				for pid := range l.reloadOld {
					if proctab.Has(table, pid) && holdsListener(pid, listening) {
						old = true
						break
					}
				}
				if !old {
					l.reloadShown(fmt.Sprintf("reloaded: new worker pid %d", next))
					if l.reloadUntil.IsZero() {
						return
					}
				}
			}
		}
	}
	if !now.Before(l.reloadUntil) {
		what := fmt.Sprintf("no new worker of %s within %s of the reload signal", l.name, reloadTimeout)
		_, why := l.masterTakes()
		switch {
		case l.reexec != nil && l.reexec.done != "" && why != "":
			what = fmt.Sprintf("%s, but %s (pid %d) did not take its signals again within %s (%s)", l.reexec.done, l.name, l.main, reloadTimeout, why)
		case l.reloadOld == nil:
			what = fmt.Sprintf("no READY=1 from %s within %s of the reload", l.name, reloadTimeout)
		case l.childReady:
			what = fmt.Sprintf("no READY=1 nor new worker from %s within %s of the reload", l.name, reloadTimeout)
		}
		l.failReload(what+": not confirmed", "")
	}
}

// endReload ends a reload that was done: READY=1 (only when the service
// had been ready), STATUS, and the answer to whoever asked.
func (l *loop) endReload(what string) {
	l.reloadUntil = time.Time{}
	l.opts.Log.Infof("%s %s", l.name, what)
	if !l.stop.stopping() {
		l.readyAgain(fmt.Sprintf("running: %s (pid %d), %s", l.name, l.main, what))
		// New listeners may have come with the new configuration; then
		// graceshim is idle again.
		l.watchCmds <- watchCmd{learn: make(chan []string, 1), settle: true}
		l.store.keep(l.self)
	}
	l.answerReload(ControlReply{OK: true, Message: fmt.Sprintf("%s (pid %d) %s", l.name, l.main, what)})
	if l.reexec != nil && !l.reexec.start {
		l.noteSteady() // it takes its signals again (masterTakes)
	}
	l.endReexec()
}

// onExit handles a reaped process; it reports true when the supervision is
// over: the master is gone and nothing is left.
func (l *loop) onExit(now time.Time, e exited) bool {
	log := l.opts.Log
	if l.checkExited(e) {
		return false
	}
	if e.pid == 0 {
		if l.settle != nil {
			// What the master left behind is gone too.
			gone := l.settle.gone
			l.settle = nil
			l.masterLost(now, gone)
		}
		if !l.awaitPID.IsZero() {
			// The daemon died before its pid file named it: nothing is
			// left to follow. Its own status is the result.
			l.awaitPID = time.Time{}
			l.mainGone = true
			if l.orphanExited && l.orphanStatus != 0 {
				// The daemon's own failure is the better answer.
				l.lastStatus = l.orphanStatus
				log.Errorf("%s exited before its pid file %s named it: %s", l.name, l.opts.PIDFile, describe(l.lastStatus))
			} else {
				l.setupErr = fmt.Errorf("%w: pid file %s did not name a live process of %s: nothing is left running", ErrSetup, l.opts.PIDFile, l.name)
			}
		}
		return l.mainGone
	}
	if e.pid != l.main {
		log.Debugf("reaped pid %d (%s)", e.pid, describe(e.status))
		l.orphanExited, l.orphanStatus = true, e.status
		if e.pid == l.early && l.stop.stopping() && !l.awaitPID.IsZero() {
			// The master the pid file named while its starter ran got
			// the stop's signal and is gone, and the starter too: the
			// stop is done with it (starter.go).
			l.awaitPID = time.Time{}
			l.lastStatus = e.status
			return l.masterLost(now, e)
		}
		return false
	}
	l.lastStatus = e.status
	clean := e.status.Exited() && e.status.ExitStatus() == 0
	// A daemonizing server's first process exits 0 once its master runs;
	// an upgraded master exits 0 once its successor runs. Either way the
	// new master is one of our children now (we are a subreaper), or the
	// pid file names it.
	if clean && !l.stop.stopping() {
		if next := l.successor(now); next > 0 {
			l.follow(next, fmt.Sprintf("pid %d %s", e.pid, describe(e.status)))
			return false
		}
		if l.opts.PIDFile != "" {
			l.awaitPID = now.Add(l.opts.ReadyTimeout)
			return false
		}
		if l.settleMaster(now, e) {
			return false
		}
	}
	if clean && l.stop.stopping() && e.pid == l.child && (len(l.masterHeld) > 0 || l.early != 0) {
		// A stop came while the daemon's starter ran, and the start
		// succeeded: its master gets the stop's signals (starter.go).
		// Not when the process graceshim started got them itself (it
		// was the server): its exit ends the stop.
		if next := l.successor(now); next > 0 {
			l.follow(next, fmt.Sprintf("pid %d %s", e.pid, describe(e.status)))
			return false
		}
		if l.early == 0 || syscall.Kill(l.early, 0) == nil {
			l.awaitPID = now.Add(l.opts.ReadyTimeout)
			return false
		}
		// The master the pid file named already went.
	}
	return l.masterLost(now, e)
}

// masterLost handles the end of the master e, with no successor to
// follow.
func (l *loop) masterLost(now time.Time, e exited) bool {
	log := l.opts.Log
	if l.upgrade != nil {
		// The old master went, and no new one is there to follow: the
		// service is down. Exit non-zero so that Restart= brings it back.
		l.setupErr = fmt.Errorf("%w: upgrade of %s failed: old master %d exited and no new master is running", ErrSetup, l.name, e.pid)
		l.opts.Log.Errorf("upgrade of %s failed: old master %d exited and no new master is running", l.name, e.pid)
		l.upgrade = nil
	}
	l.mainGone = true
	// Signals held for a master that never came: the stop goes to every
	// process left (resignal).
	l.masterHeld = nil
	if l.stop.stopping() {
		log.Infof("%s (pid %d) %s", l.name, e.pid, describe(e.status))
		// Whatever it left behind gets the stop's signal too: a master
		// that exits without its workers, or one that had not yet handed
		// over to the daemonized master when the stop signal came.
		l.resignal()
		return false
	}
	log.Infof("%s (pid %d) %s on its own", l.name, e.pid, describe(e.status))
	if table, err := proctab.Read(); err == nil && len(proctab.Children(table, l.self)) > 0 {
		l.do(now, l.stop.escalate(now, "the master exited, leaving processes behind"))
	}
	return false
}

// successor finds the master that replaced the one that exited: the new
// master an upgrade found; with a pid file, the pid it names (a direct
// child: the reaper sees only those exit); else the one process left
// behind that looks like a master (master.go).
func (l *loop) successor(now time.Time) int {
	table, err := proctab.Read()
	if err != nil {
		return 0
	}
	kids := proctab.Children(table, l.self)
	if u := l.upgrade; u != nil && u.next != 0 && slices.Contains(kids, u.next) {
		// The new master the upgrade found, not another child (the old
		// master's workers are reparented to graceshim too).
		return u.next
	}
	if l.opts.PIDFile != "" {
		pid, err := readPIDFile(l.opts.PIDFile)
		if err != nil || pid == l.main {
			return 0
		}
		if slices.Contains(kids, pid) {
			return pid
		}
		return 0
	}
	// Without a pid file: a process left behind that looks like a master
	// (master.go has the rule).
	found, why := 0, ""
	for _, k := range kids {
		if sign := masterSign(table, k, l.exe); sign != "" {
			if found != 0 {
				l.opts.Log.Warnf("more than one process left behind by %s looks like a master; following pid %d", l.name, found)
				break
			}
			found, why = k, sign
		}
	}
	if found == 0 {
		return 0
	}
	l.opts.Log.Debugf("pid %d looks like a master: %s", found, why)
	return found
}

func (l *loop) follow(pid int, why string) {
	l.opts.Log.Infof("following %s master pid %d (%s)", l.name, pid, why)
	l.main = pid
	l.setMainProc(pid)
	if exe := executable(pid); exe != "" {
		l.exe = exe
	}
	l.awaitPID = time.Time{}
	l.watchCmds <- watchCmd{main: pid}
	if l.stop.stopping() && !l.releaseHeld() && pid != l.early {
		// The stop began while the master was unknown (the pid file not
		// written yet): it gets the stop's signal now. Not again when
		// the pid file named it while its starter ran (starter.go).
		l.resignal()
	}
	if u := l.upgrade; u != nil {
		l.upgrade = nil
		if pid != u.next {
			l.opts.Log.Warnf("upgrade: expected the new master %d, followed %d", u.next, pid)
		}
		l.opts.Log.Infof("upgrade of %s done: old master %d exited", l.name, u.old)
		l.notify(fmt.Sprintf("STATUS=running: %s (pid %d), upgraded", l.name, pid))
	}
}

// resignal sends the signal of the stop's current phase again: to every
// process left once the master is gone.
func (l *loop) resignal() {
	switch l.stop.phase {
	case phaseGraceful:
		l.signalMaster(l.graceful)
	case phaseFast:
		l.signalMaster(l.fast)
	case phaseKilled:
		l.killTree()
	}
}

func (l *loop) pollPIDFile(now time.Time) {
	if next := l.successor(now); next > 0 {
		l.follow(next, "named by "+l.opts.PIDFile)
		return
	}
	if now.Before(l.awaitPID) {
		return
	}
	l.awaitPID = time.Time{}
	l.mainGone = true
	l.masterHeld = nil
	l.setupErr = fmt.Errorf("%w: pid file %s did not name a live process of %s within %s", ErrSetup, l.opts.PIDFile, l.name, l.opts.ReadyTimeout)
	l.do(now, l.stop.escalate(now, "no master to supervise"))
	// Nothing may be left to reap at all; look once more.
	if table, err := proctab.Read(); err == nil && len(proctab.Children(table, l.self)) == 0 {
		syscall.Kill(l.self, syscall.SIGCHLD)
	}
}

func (l *loop) onWatch(now time.Time, ev watchEvent) {
	if ev.report != nil {
		l.stop.cut = ev.report.cut
		l.onDrainReport(now, ev.report)
	}
	switch {
	case ev.ready != nil && l.stop.stopping():
		// A listener found late, when a stop has begun: not ready.
	case ev.ready != nil:
		l.opts.Log.Infof("%s is listening on %s", l.name, strings.Join(ev.ready, ", "))
		if l.opts.HealthCheck != nil {
			// READY=1 waits for the health check; a bare "tcp" check
			// connects to this socket.
			select {
			case l.probeTargets <- ev.ready[0]:
			default:
			}
			return
		}
		if l.deferToChild(now, ev.ready) {
			return
		}
		l.markReady("running: %s (pid %d), listening on %s", l.name, l.main, strings.Join(ev.ready, ", "))
	case ev.err != nil:
		if !l.countErr {
			l.countErr = true
			l.opts.Log.Warnf("cannot count connections: %v; the drain waits for the process tree", ev.err)
		}
		// A failed count is no evidence of a stall.
		l.do(now, l.stop.countFailed(ev.at))
	case ev.counted:
		l.opts.Log.Debugf("%d connections", ev.count)
		l.do(now, l.stop.observe(ev.at, ev.count))
	}
}

// onProbe records a health check of the child.
func (l *loop) onProbe(r probeResult) {
	switch {
	case r.err == nil && !l.healthy:
		l.healthy = true
		l.probeFailed = false
		l.health.setUnhealthy(false)
		l.opts.Log.Infof("health check %s passes", l.opts.HealthCheck)
		if l.ready && !l.stop.stopping() {
			l.notify(fmt.Sprintf("STATUS=running: %s (pid %d), healthy", l.name, l.main))
		}
		l.markReady("running: %s (pid %d), health check %s passes", l.name, l.main, l.opts.HealthCheck)
	case r.err != nil && (l.healthy || !l.probeFailed):
		l.healthy = false
		l.probeFailed = true
		l.health.setUnhealthy(true)
		l.opts.Log.Warnf("health check %s fails: %v", l.opts.HealthCheck, r.err)
		if l.ready && !l.stop.stopping() {
			l.notify(fmt.Sprintf("STATUS=running: %s (pid %d), unhealthy: %v", l.name, l.main, r.err))
		}
	}
}

// do carries out the stop state machine's actions.
func (l *loop) do(now time.Time, acts []action) {
	for _, a := range acts {
		switch a.kind {
		case actStopping:
			l.health.setStopping()
			l.notify("STOPPING=1")
			// Beside the stop, not before its signal (see release);
			// not cancelled with the loop: settle waits for it. Not when
			// the master went on its own (a crash): no stop was asked,
			// Restart= may start the unit again on the stored sockets,
			// and otherwise systemd closes them once the unit is down.
			if !l.mainGone {
				l.store.release(context.WithoutCancel(l.bg))
			}
			// A stop supersedes a reload or an upgrade under way: no
			// READY=1 for them, and no more signals to their processes.
			// Except a reload whose signal went out: the master may be
			// re-executing itself and would lose the stop's signal, so
			// the reload is followed to its end, within its bound, and
			// the stop's signals wait for it (reexec.go).
			if l.reexec != nil && !l.reloadUntil.IsZero() {
				l.opts.Log.Infof("stop during the reload of %s: its signals wait until the reload is confirmed (within %s)", l.name, l.reloadUntil.Sub(now).Round(time.Millisecond))
			} else {
				l.abandonReload("a stop began")
			}
			if l.upgrade != nil {
				l.opts.Log.Warnf("stop during the upgrade of %s: the upgrade is abandoned", l.name)
				l.upgrade = nil
			}
		case actPreStop:
			l.signalMaster(l.opts.Preset.PreStop)
			l.signalMaster(syscall.SIGCONT)
		case actGraceful:
			l.sendGraceful()
			// A master stopped with TSTP could not handle it otherwise
			// (systemd sends CONT after its kill signal for that reason).
			l.signalMaster(syscall.SIGCONT)
		case actFast:
			l.signalMaster(l.fast)
			l.signalMaster(syscall.SIGCONT)
		case actKill:
			l.killTree()
		case actStatus:
			l.opts.Log.Debugf("status: %s", a.text)
			l.notify("STATUS=" + a.text)
		case actExtend:
			l.notify(fmt.Sprintf("EXTEND_TIMEOUT_USEC=%d", a.d.Microseconds()))
		case actLog:
			l.opts.Log.Infof("%s", a.text)
		}
	}
}

// sendGraceful learns the listening sockets once more (the server closes
// them on its graceful signal), then sends the signal and starts counting.
func (l *loop) sendGraceful() {
	reply := make(chan []string, 1) // buffered: a late reply never blocks the watch actor
	l.watchCmds <- watchCmd{learn: reply}
	var known []string
	late := false
	select {
	case known = <-reply:
	case <-time.After(time.Second):
		late = true
	}
	l.signalMaster(l.graceful)
	switch {
	case late:
		l.opts.Log.Infof("listening sockets not learned within 1s of the graceful signal: counting starts once they are")
	case len(known) > 0:
		l.opts.Log.Infof("draining connections on %s", strings.Join(known, ", "))
	}
	// Always: the watch actor learns first (commands are taken in order),
	// however long that takes, and decides itself whether there is
	// anything to count.
	l.watchCmds <- watchCmd{drain: true}
}

// signalMaster sends sig to the master, or to every process left when
// there is no master any more.
func (l *loop) signalMaster(sig syscall.Signal) {
	if l.holdSignal(sig) {
		return
	}
	if !l.awaitPID.IsZero() {
		// The pid file does not name the master yet: the processes there
		// are may be starting, without their handlers (a Go or nginx
		// process killed by a QUIT it cannot handle yet). A stop's signal
		// is sent once the master is known (follow), or to every process
		// if it never is (pollPIDFile).
		if l.stop.stopping() && l.stopSignal(sig) {
			l.holdForMaster(sig, "the pid file "+l.opts.PIDFile+" does not name the master yet")
		} else {
			l.opts.Log.Infof("%s held: the pid file %s does not name the master yet", signals.Name(sig), l.opts.PIDFile)
		}
		return
	}
	if l.starterRuns() && l.signalPastStarter(sig) {
		return
	}
	if l.mainGone {
		for _, pid := range l.tree() {
			_ = syscall.Kill(pid, sig)
		}
		return
	}
	l.opts.Log.Debugf("sending %s to %d", signals.Name(sig), l.main)
	var err error
	if l.opts.Preset.Group {
		err = syscall.Kill(-l.main, sig)
	} else {
		// The reaper may have reaped the master a moment ago, its exit
		// not yet handled here; the pidfd makes that an ESRCH rather
		// than a signal to whoever got the pid next.
		err = l.mainProc.Signal(sig)
	}
	if err != nil && !errors.Is(err, syscall.ESRCH) && !errors.Is(err, os.ErrProcessDone) {
		l.opts.Log.Warnf("cannot send %s to %s (pid %d): %v", signals.Name(sig), l.name, l.main, err)
	}
}

// setMainProc takes a handle (a pidfd, where the kernel has them) on a
// newly followed master, found alive a moment ago.
func (l *loop) setMainProc(pid int) {
	if l.mainProc != nil {
		_ = l.mainProc.Release()
	}
	// On Unix FindProcess never fails; without pidfd support it keeps
	// the bare pid.
	l.mainProc, _ = os.FindProcess(pid)
}

// tree lists every process below graceshim.
func (l *loop) tree() []int {
	table, err := proctab.Read()
	if err != nil {
		return nil
	}
	return proctab.Descendants(table, l.self)[1:]
}

// killTree sends SIGKILL to every process below graceshim, the final step
// (the daemon's process groups and sessions may differ, so the tree is
// walked rather than a group signalled).
func (l *loop) killTree() {
	for _, pid := range l.tree() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

func (l *loop) finish(now time.Time) error {
	l.term.takeBack()
	exit := describe(l.lastStatus)
	if l.stop.stopping() {
		l.opts.Log.Infof("%s", l.stop.summary(now, l.name+" "+exit))
		l.notify("STATUS=stopped: " + l.name + " " + exit)
	}
	if l.setupErr != nil {
		return l.setupErr
	}
	return resultOf(l.lastStatus)
}
