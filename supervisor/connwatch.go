package supervisor

import (
	"context"
	"os"

	"github.com/graceshim/graceshim/supervisor/conns"
)

// connWatcher is the Watcher graceshim runs with: a conns.Tracker (netlink
// sock_diag, /proc/net when netlink is refused or fails), following a
// drain by the kernel's destroy messages where it may.
type connWatcher struct {
	t      *conns.Tracker
	mode   conns.Mode
	log    *Logger
	self   int
	source error // the fallback reason last logged
}

func newConnWatcher(mode conns.Mode, log *Logger) *connWatcher {
	return &connWatcher{t: conns.NewTracker(conns.Options{Mode: mode}), mode: mode, log: log, self: os.Getpid()}
}

// tree lists every process below graceshim: the master, its workers, and
// workers an exiting master left to graceshim (a subreaper), which still
// serve the drain's connections. One walk of /proc, done only where the
// pids matter: learning listeners, and once when a drain starts.
func (w *connWatcher) tree() []int {
	pids, err := conns.TreePids(w.self)
	if err != nil || len(pids) == 0 {
		return nil
	}
	return pids[1:] // not graceshim: its own sockets (the health endpoint) are not the server's
}

func (w *connWatcher) Learn(master int) ([]string, error) {
	_, err := w.t.Observe(w.tree())
	eps := w.t.Endpoints()
	out := make([]string, len(eps))
	for i, e := range eps {
		out[i] = e.String()
	}
	return out, err
}

func (w *connWatcher) Drain(ctx context.Context, master int) (DrainCounter, error) {
	if w.mode == conns.ModeListen && len(w.t.Endpoints()) == 0 {
		w.log.Infof("no listening sockets known: the drain waits for the process tree to exit")
		return nil, errNothingToCount
	}
	d, err := w.t.Drain(ctx, w.tree())
	w.logSource()
	if err != nil {
		return nil, err
	}
	switch ok, why := d.Events(); {
	case ok:
		w.log.Debugf("following the drain by the kernel's destroy messages")
	case why != nil:
		w.log.Warnf("counting connections by polling: %v", why)
	default:
		w.log.Debugf("counting unix connections by polling (the kernel announces no closes of unix sockets)")
	}
	return &connDrain{w: w, d: d}, nil
}

// logSource logs, once each time it changes, why the tracker counts
// through /proc/net rather than netlink.
func (w *connWatcher) logSource() {
	name, why := w.t.Source()
	if why != nil && why != w.source {
		w.source = why
		w.log.Warnf("counting connections through %s: %v", name, why)
	}
}

type connDrain struct {
	w *connWatcher
	d *conns.Drain
}

func (c *connDrain) Next(ctx context.Context) (int, error) {
	n, err := c.d.Next(ctx)
	c.w.logSource()
	return n.Total(), err
}

func (c *connDrain) Close() { c.d.Close() }
