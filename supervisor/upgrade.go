package supervisor

import (
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/graceshim/graceshim/signals"
	"github.com/graceshim/graceshim/supervisor/proctab"
)

// Timing of a binary upgrade.
const (
	// upgradeSettle is how long the new master must stay up, with the old
	// workers stopped, before the old master is told to go. Until then a
	// failing new master is rolled back.
	upgradeSettle = time.Second
)

// upgrade is a binary upgrade under way: the dance nginx documents
// (and unicorn shares). USR2 makes the old master start a new master from
// the binary now on disk, as its child; WINCH stops the old workers
// gracefully; once the new master has kept running, the preset's graceful
// signal (QUIT; TERM for gunicorn) makes the old master exit, and the new master is reparented to graceshim, the
// subreaper, which follows it. graceshim stays the unit's main process
// throughout, so systemd never loses the service.
//
// nginx ignores USR2 and WINCH with "daemon off" under a parent (its
// source: ngx_process.c), so an upgrade needs "daemon on".
type upgrade struct {
	old      int          // the master being replaced
	oldProc  *os.Process  // its handle: signalled through its pidfd, never by a pid another process may have got
	before   map[int]bool // its children when the upgrade began (workers)
	next     int          // the new master, once seen
	until    time.Time    // give up waiting for the new master then
	winched  time.Time    // WINCH sent to the old master
	quitSent bool
}

// beginUpgrade starts a binary upgrade of the master.
func (l *loop) beginUpgrade(now time.Time) {
	if l.upgrade != nil {
		l.opts.Log.Warnf("upgrade already under way (old master %d); ignoring %s", l.upgrade.old, signals.Name(l.opts.Preset.Upgrade))
		return
	}
	u := &upgrade{old: l.main, oldProc: l.mainProc, before: map[int]bool{}, until: now.Add(l.opts.ReadyTimeout)}
	if table, err := proctab.Read(); err == nil {
		for _, pid := range proctab.Children(table, l.main) {
			u.before[pid] = true
		}
	}
	l.upgrade = u
	l.upgraded = true
	l.opts.Log.Infof("upgrading %s: %s to master pid %d", l.name, signals.Name(l.opts.Preset.Upgrade), l.main)
	if l.sockCheck.nginx() {
		l.opts.Log.Warnf("%s runs on inherited sockets (NGINX=): it did not daemonize and ignores %s; restart it instead, its socket keeps clients waiting", l.name, signals.Name(l.opts.Preset.Upgrade))
	}
	if l.ready {
		// READY=1 ends it: never to a service still starting (issue 10).
		l.notify(daemon.SdNotifyReloading + "\n" + daemon.SdNotifyMonotonicUsec() + "STATUS=upgrading: waiting for the new " + l.name + " master")
	}
	l.signalMaster(l.opts.Preset.Upgrade)
}

// pollUpgrade moves an upgrade on: it finds the new master, stops the old
// workers, checks the new master stays up, tells the old master to go, and
// rolls back when the new master fails before that.
func (l *loop) pollUpgrade(now time.Time) {
	u := l.upgrade
	table, err := proctab.Read()
	if err != nil {
		return
	}
	switch {
	case u.next == 0:
		// The new master is a child of the old one that has children of
		// its own (its workers), or the pid file's new pid.
		for _, pid := range proctab.Children(table, u.old) {
			if u.before[pid] || len(proctab.Children(table, pid)) == 0 {
				continue
			}
			u.next = pid
		}
		if u.next == 0 {
			if now.After(u.until) {
				l.failUpgrade(fmt.Sprintf("no new master within %s (nginx needs 'daemon on' for a binary upgrade, and ignores it on inherited sockets)", l.opts.ReadyTimeout), false)
			}
			return
		}
		l.opts.Log.Infof("upgrade: new %s master pid %d is up; stopping the old workers with WINCH", l.name, u.next)
		l.notify(fmt.Sprintf("STATUS=upgrading: new master pid %d up, old workers draining", u.next))
		u.signalOld(syscall.SIGWINCH)
		u.winched = now
	case !proctab.Has(table, u.next) && !u.quitSent:
		l.failUpgrade(fmt.Sprintf("the new master pid %d exited", u.next), true)
	case !u.quitSent && now.Sub(u.winched) >= upgradeSettle:
		l.opts.Log.Infof("upgrade: new master pid %d kept running for %s; old master %d drains and exits with %s", u.next, upgradeSettle, u.old, signals.Name(l.opts.Preset.Graceful))
		// The old master's graceful stop: QUIT for nginx and unicorn, TERM
		// for gunicorn, whose QUIT is a fast stop.
		u.signalOld(l.opts.Preset.Graceful)
		u.quitSent = true
		// The service is whole again: the new master serves. The old one
		// drains in the background and is followed away when it exits.
		l.readyAgain(fmt.Sprintf("running: %s, new master pid %d; old master %d draining", l.name, u.next, u.old))
	}
}

// failUpgrade gives up an upgrade. When the old workers were already
// stopped, HUP makes the old master start new ones from its own binary
// (nginx: "restarts worker processes without re-reading the
// configuration"). The new master is gone already: it is not signalled,
// its pid may be another process's by now.
func (l *loop) failUpgrade(why string, rollback bool) {
	u := l.upgrade
	l.upgrade = nil
	l.opts.Log.Errorf("upgrade of %s failed: %s; the old master pid %d keeps serving", l.name, why, u.old)
	if rollback {
		u.signalOld(syscall.SIGHUP)
	}
	l.readyAgain(fmt.Sprintf("running: %s (pid %d), upgrade failed: %s", l.name, u.old, why))
}

// signalOld signals the old master through the handle taken on it (the
// loop's, a pidfd where the kernel has them): once it has exited and been
// reaped, the signal fails rather than reach whoever got the pid next.
func (u *upgrade) signalOld(sig syscall.Signal) {
	if u.oldProc == nil {
		return
	}
	_ = u.oldProc.Signal(sig)
}
