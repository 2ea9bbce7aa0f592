package supervisor

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/graceshim/graceshim/signals"
	"github.com/graceshim/graceshim/supervisor/conns"
	"github.com/graceshim/graceshim/supervisor/proctab"
)

// A reload never takes a serving daemon down: the preset's config test
// runs first, and a failing one refuses the reload before anything is
// sent (issue 11: a bare USR1 with a broken config makes Apache's parent
// exit; php-fpm, gunicorn, uwsgi and puma re-execute themselves and die
// the same way). Then the reload signal (or the preset's reload command)
// goes out, and the reload ends on what shows it is done: the daemon's
// own READY=1 when it speaks sd_notify (always, once it said RELOADING=1),
// a new worker of the master otherwise, and in both cases only once the
// master takes graceshim's signals again (reexec.go: a master that
// re-executes itself loses a signal sent earlier); or it fails: the
// daemon died, or nothing showed within reloadTimeout. Whoever asked
// (`graceshim reload` over the control socket) hears the outcome.

// configTestTimeout bounds a config test and a reload command.
const configTestTimeout = 60 * time.Second

// reloadRun is a reload under way: its config test runs, or its signal
// was sent and l.reloadUntil bounds the wait for the outcome.
type reloadRun struct {
	by      string              // who asked, for the log
	waiters []chan ControlReply // control clients waiting for the outcome
	testing bool                // the config test runs
	command bool                // the reload is a command (ReloadCommand), running
	limit   string              // what the passed config test could not see (Preset.ConfigTestLimit)
}

// checkResult is the end of a command run for a reload: the config test,
// or the reload command.
type checkResult struct {
	argv   []string
	reload bool // the reload command, not the test
	out    string
	err    error
}

// checkRun is a config test or reload command running as graceshim's
// child. The reaper is the only code that waits for children (a
// cmd.Wait here would race its wait4(-1) and lose the status: measured,
// "waitid: no child processes"), so the result is put together in the
// event loop from the reaped exit and the output read to its end.
type checkRun struct {
	argv   []string
	reload bool
	pid    int
	began  time.Time
	read   *os.File            // the read end of its output pipe
	status *syscall.WaitStatus // its exit, once reaped
	out    *string             // its output, once read to the end
	bound  *time.Timer         // kills it at configTestTimeout
}

// checkOutput is the output of a check, read to its end.
type checkOutput struct {
	pid int
	out string
}

// maxCheckOutput bounds the output kept of a check.
const maxCheckOutput = 64 << 10

// onControl answers a request of the control socket.
func (l *loop) onControl(now time.Time, req controlReq) {
	switch req.cmd {
	case "reload":
		l.requestReload(now, "graceshim reload", req.reply)
	default:
		req.reply <- ControlReply{Message: fmt.Sprintf("unknown request %q", req.cmd)}
	}
}

// reloadSignal is the signal that reloads the daemon: a --map for HUP
// wins over the preset's.
func (l *loop) reloadSignal() syscall.Signal {
	if s, ok := l.opts.Map[syscall.SIGHUP]; ok && s != syscall.SIGHUP {
		return s
	}
	return l.opts.Preset.Reload
}

// requestReload starts a reload asked for by by; reply, when set, gets
// the outcome.
func (l *loop) requestReload(now time.Time, by string, reply chan ControlReply) {
	refuse := func(why string) {
		l.opts.Log.Warnf("reload asked by %s refused: %s", by, why)
		if reply != nil {
			reply <- ControlReply{Message: why}
		}
	}
	switch {
	case l.stop.stopping():
		refuse("a stop is under way")
		return
	case l.upgrade != nil:
		refuse(fmt.Sprintf("a binary upgrade of %s is under way", l.name))
		return
	case l.mainGone || !l.awaitPID.IsZero():
		refuse(fmt.Sprintf("no %s master to reload", l.name))
		return
	case l.reload != nil:
		// One reload at a time; a second asker hears the outcome of the
		// one under way, which loads the configuration as it is now or
		// a moment ago.
		l.opts.Log.Infof("reload asked by %s: a reload is under way, waiting for its outcome", by)
		if reply != nil {
			l.reload.waiters = append(l.reload.waiters, reply)
		}
		return
	}
	if l.opts.Preset.ReloadCommand == nil && l.reloadSignal() == 0 {
		refuse(fmt.Sprintf("%s has no reload (preset %s); use --map HUP:SIGNAL to give it one", l.name, l.opts.Preset.Name))
		return
	}
	l.reload = &reloadRun{by: by}
	if reply != nil {
		l.reload.waiters = append(l.reload.waiters, reply)
	}
	// Run cleared ConfigTest and ReloadCommand when argv[0] is not the
	// daemon itself (Preset.Runs): on a wrapper they would run it again.
	var test []string
	if l.opts.Preset.ConfigTest != nil {
		test = l.sockCheck.testArgv(l.opts.Preset.ConfigTest(l.opts.Argv))
	}
	if len(test) == 0 {
		l.opts.Log.Infof("reload of %s asked by %s; no config test for preset %s", l.name, by, l.opts.Preset.Name)
		l.sendReload(now)
		return
	}
	l.opts.Log.Infof("reload of %s asked by %s: testing the configuration first: %s", l.name, by, strings.Join(test, " "))
	l.reload.testing = true
	l.runCheck(test, false)
}

// runCheck starts argv as graceshim's child; checkExited and
// onCheckOutput see it to its end.
func (l *loop) runCheck(argv []string, reload bool) {
	fail := func(err error) {
		l.onCheck(time.Now(), checkResult{argv: argv, reload: reload, err: err})
	}
	r, w, err := os.Pipe()
	if err != nil {
		fail(err)
		return
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = childEnv(l.opts.Env)
	if !reload {
		cmd.ExtraFiles = l.sockCheck.testFiles() // the sockets haproxy's fd@N binds name
	}
	// Files, not writers: exec starts no copying goroutine that only
	// Wait would end.
	cmd.Stdout, cmd.Stderr = w, w
	// Its own group: a terminal's Ctrl-C is graceshim's to handle, and
	// the bound kills whatever it started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		fail(err)
		return
	}
	pid := cmd.Process.Pid
	_ = cmd.Process.Release() // the reaper waits for it
	l.check = &checkRun{
		argv: argv, reload: reload, pid: pid, began: time.Now(), read: r,
		bound: time.AfterFunc(configTestTimeout, func() { _ = syscall.Kill(-pid, syscall.SIGKILL) }),
	}
	go func() {
		var out []byte
		buf := make([]byte, 4096)
		for {
			n, err := r.Read(buf)
			if len(out) < maxCheckOutput {
				out = append(out, buf[:min(n, maxCheckOutput-len(out))]...)
			}
			if err != nil {
				break
			}
		}
		r.Close()
		select {
		case l.checks <- checkOutput{pid: pid, out: strings.TrimSpace(string(out))}:
		case <-l.bg.Done():
		}
	}()
}

// checkExited takes the reaped exit of a running check; it reports false
// for any other process.
func (l *loop) checkExited(e exited) bool {
	c := l.check
	if c == nil || e.pid == 0 || e.pid != c.pid {
		return false
	}
	c.bound.Stop()
	ws := e.status
	c.status = &ws
	if c.out == nil {
		// Something it started may hold its output open: read for a
		// moment more, then give up on the rest.
		time.AfterFunc(2*time.Second, func() { c.read.Close() })
	}
	l.finishCheck()
	return true
}

// onCheckOutput takes the output of a running check.
func (l *loop) onCheckOutput(o checkOutput) {
	if c := l.check; c != nil && c.pid == o.pid {
		c.out = &o.out
		l.finishCheck()
	}
}

// finishCheck hands a check that exited and whose output was read on.
func (l *loop) finishCheck() {
	c := l.check
	if c.status == nil || c.out == nil {
		return
	}
	l.check = nil
	var err error
	switch ws := *c.status; {
	case ws.Signaled() && ws.Signal() == syscall.SIGKILL && time.Since(c.began) >= configTestTimeout:
		err = fmt.Errorf("no result within %s", configTestTimeout)
	case !ws.Exited() || ws.ExitStatus() != 0:
		err = errors.New(describe(ws))
	}
	l.onCheck(time.Now(), checkResult{argv: c.argv, reload: c.reload, out: *c.out, err: err})
}

// onCheck acts on a finished config test or reload command.
func (l *loop) onCheck(now time.Time, r checkResult) {
	run := l.reload
	if run == nil || (!run.testing && !run.command) {
		return // the reload was abandoned (a stop began) meanwhile
	}
	cmdline := strings.Join(r.argv, " ")
	if !r.reload {
		run.testing = false
		if r.err != nil {
			l.refuseReload(cmdline, r)
			return
		}
		if why := l.sockCheck.refuse(l.bg, r.out, len(r.out) >= maxCheckOutput, l.opts.Log); why != "" {
			r.err = errors.New("its config does not fit the inherited sockets")
			r.out = why
			l.refuseReload(cmdline, r)
			return
		}
		l.opts.Log.Infof("config test %s passed", cmdline)
		if lim := l.opts.Preset.ConfigTestLimit; lim != "" {
			l.opts.Log.Warnf("%s", lim)
			run.limit = lim
		}
		l.sendReload(now)
		return
	}
	run.command = false
	if r.err != nil {
		l.failReload(fmt.Sprintf("reload command %s failed (%v): %s", cmdline, r.err, firstLine(r.out)), r.out)
		return
	}
	l.endReload("reloaded by " + cmdline)
}

// refuseReload ends a reload whose config test failed: nothing was sent,
// the daemon serves on with the configuration it has.
func (l *loop) refuseReload(cmdline string, r checkResult) {
	why := oneLine(fmt.Sprintf("config test %s failed (%v): %s", cmdline, r.err, firstLine(r.out)))
	l.opts.Log.Errorf("reload of %s refused: %s; nothing was sent, %s keeps its running configuration", l.name, why, l.name)
	if r.out != "" {
		l.opts.Log.Errorf("config test output: %s", strings.ReplaceAll(r.out, "\n", " | "))
	}
	if l.ready && !l.stop.stopping() {
		l.notify(fmt.Sprintf("STATUS=running: %s (pid %d), reload refused: %s", l.name, l.main, why))
	}
	l.answerReload(ControlReply{Message: "reload refused, the running configuration is kept: " + why, Output: r.out})
}

// sendReload tells systemd RELOADING=1 (with MONOTONIC_USEC, which systemd
// 253+ requires) and sends the reload: the signal, or the reload command.
// It ends on the daemon's READY=1 when it speaks sd_notify, or once a new
// child of the master runs and no old one accepts (nginx starts new
// workers and lets the old ones drain). A master without children that
// does not speak sd_notify reloads in place and nothing shows when it is
// done: the reload ends at once.
func (l *loop) sendReload(now time.Time) {
	if w := l.reexec; w != nil && w.start {
		// A reload asked while the daemon's start is watched (startWatch):
		// its signal must not be held in the start's watch, which the
		// reload's own watch replaces. A master that takes its signals
		// already ends that watch now; one still executing itself gets
		// the reload once it does, or at the watch's bound (pollStart).
		if ok, why := l.masterTakes(); !ok && l.opts.Preset.ReloadCommand == nil {
			l.opts.Log.Infof("reload of %s waits until %s (pid %d), starting, takes its signals: %s", l.name, l.name, l.main, why)
			w.reloadDue = true
			return
		}
		l.noteSteady()
		l.endReexec()
	}
	l.reloadOld = map[int]bool{}
	if table, err := proctab.Read(); err == nil {
		for _, pid := range proctab.Children(table, l.main) {
			l.reloadOld[pid] = true
		}
	}
	l.markReload()
	l.reloadSent = time.Now()
	if l.ready {
		// Only a service that was ready is told it reloads: READY=1 ends
		// the reload, and must not end a start-up early (issue 10).
		l.notify(daemon.SdNotifyReloading + "\n" + daemon.SdNotifyMonotonicUsec() + "STATUS=reloading: " + l.name)
	}
	if rc := l.opts.Preset.ReloadCommand; rc != nil {
		if argv := rc(l.opts.Argv); len(argv) > 0 {
			l.opts.Log.Infof("reloading %s (pid %d) with %s", l.name, l.main, strings.Join(argv, " "))
			l.reload.command = true
			l.reloadUntil = now.Add(configTestTimeout)
			l.runCheck(argv, true)
			return
		}
	}
	sig := l.reloadSignal()
	l.opts.Log.Infof("reloading %s (pid %d) with %s", l.name, l.main, signals.Name(sig))
	w := l.newReexec()
	l.signalMaster(sig)
	l.reexec = w
	l.reloadUntil = now.Add(reloadTimeout)
	if !l.childReady && len(l.reloadOld) == 0 {
		l.reloadShown("reloaded: signal sent; it has no workers whose renewal would confirm it")
	}
}

// childReloads starts a reload the daemon announced itself (RELOADING=1,
// queued at at).
func (l *loop) childReloads(now, at time.Time) {
	l.opts.Log.Infof("%s says it is reloading", l.name)
	l.reload = &reloadRun{by: l.name}
	l.reloadSent = at
	// Its own RELOADING=1 starts it: what follows is after it.
	l.seq = reloadSeq{past: true, reloading: true, heartbeats: l.seq.heartbeats, announces: l.seq.announces, last: l.seq.last}
	if l.ready {
		l.notify(daemon.SdNotifyReloading + "\n" + daemon.SdNotifyMonotonicUsec() + "STATUS=reloading: " + l.name)
	}
	l.reloadOld = nil
	l.reloadUntil = now.Add(reloadTimeout)
	// Its master may be re-executing itself (HAProxy's USR2 sent by
	// hand or by its master CLI): the stop's signals wait for its
	// READY=1 too, and for its master to take them as it did when last
	// seen steady (noteSteady). Its state now is no baseline: HAProxy
	// has blocked USR1 before it says RELOADING=1. Never seen steady, it
	// is taken to catch its graceful signal and not block it, as
	// startWatch assumes of a daemon that speaks sd_notify.
	w := &reexecWatch{
		known:  true,
		before: sigState{caught: sigBit(l.graceful)},
		sigs:   []syscall.Signal{l.graceful},
	}
	if l.steady != nil {
		w.before, w.sigs = *l.steady, l.watchedSignals()
	}
	if old := l.reexec; old != nil {
		w.held = old.held // a stop's signal held at its start still goes out
	}
	l.reexec = w
}

// failReload ends a reload that did not happen as it should. The service
// is told READY=1 again when it was ready (it still serves, or its exit
// is handled as any exit), with STATUS saying what went wrong.
func (l *loop) failReload(why, out string) {
	why = oneLine(why)
	l.reloadUntil = time.Time{}
	l.opts.Log.Errorf("reload of %s failed: %s", l.name, why)
	if !l.mainGone && !l.stop.stopping() {
		l.readyAgain(fmt.Sprintf("running: %s (pid %d), reload failed: %s", l.name, l.main, why))
	}
	l.answerReload(ControlReply{Message: "reload failed: " + why, Output: out})
	l.endReexec()
}

// abandonReload gives up a reload under way without telling systemd
// anything (a stop began, or graceshim ends).
func (l *loop) abandonReload(why string) {
	l.reloadUntil = time.Time{}
	if l.reexec != nil && !l.reexec.start {
		l.reexec = nil // nothing held is sent any more
	}
	if l.reload != nil {
		l.opts.Log.Warnf("reload of %s abandoned: %s", l.name, why)
		l.answerReload(ControlReply{Message: "reload abandoned: " + why})
	}
}

// answerReload tells every waiter the outcome and ends the reload.
func (l *loop) answerReload(r ControlReply) {
	if l.reload == nil {
		return
	}
	if r.OK && l.reload.limit != "" {
		// The test passed, yet it is not the whole story: say so to
		// whoever asked (Preset.ConfigTestLimit).
		r.Message += "; note: " + l.reload.limit
	}
	for _, w := range l.reload.waiters {
		w <- r
	}
	l.reload = nil
}

// readyAgain ends a reload or an upgrade towards systemd: READY=1 with
// the status, but only when the service had been ready; a service still
// starting gets the status alone, and its READY=1 comes when it is ready
// (issue 10).
func (l *loop) readyAgain(status string) {
	if l.ready {
		l.notify("READY=1\nSTATUS=" + status)
		return
	}
	l.notify("STATUS=" + status)
}

// firstLine is the line of a check's output that says what is wrong, for
// one-line messages: the first that looks like an error (nginx -t puts
// "[emerg] ..." first and "test failed" after it; haproxy -c puts its
// version [NOTICE]s before the [ALERT]s), else the first non-empty one.
func firstLine(s string) string {
	first := ""
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if first == "" {
			first = line
		}
		if errorLine.MatchString(line) {
			return line
		}
	}
	if first == "" {
		return "(no output)"
	}
	return first
}

// errorLine matches the words daemons' config checks mark errors with.
var errorLine = regexp.MustCompile(`(?i)\b(emerg|alert|crit|error|fatal|invalid|unknown|syntax)\b`)

// oneLine makes s fit one sd_notify assignment, which a newline would end.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// listeningInodes returns the inodes of the listening TCP and unix stream
// sockets of graceshim's network namespace, the daemon's: one sock_diag
// dump of listening sockets only (conns.ListeningInodes), never the whole
// /proc/net/tcp, which takes about 300 ms at 50,000 connections and would
// hold up the event loop. Nil when they cannot be listed.
func listeningInodes() map[uint64]bool {
	set, err := conns.ListeningInodes()
	if err != nil {
		return nil
	}
	return set
}

// holdsListener reports whether pid has one of the listening sockets open:
// an old worker that still accepts connections with the old configuration.
// It stops at the first one.
func holdsListener(pid int, listening map[uint64]bool) bool {
	if len(listening) == 0 {
		return false
	}
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false // gone
	}
	for _, e := range ents {
		link, err := os.Readlink(dir + "/" + e.Name())
		if err != nil {
			continue
		}
		ino, ok := strings.CutPrefix(link, "socket:[")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSuffix(ino, "]"), 10, 64); err == nil && listening[n] {
			return true
		}
	}
	return false
}
