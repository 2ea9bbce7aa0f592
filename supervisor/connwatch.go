package supervisor

import (
	"context"
	"errors"
	"os"
	"time"

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
	return &connDrain{w: w, d: d, began: time.Now()}, nil
}

// PerListener counts the connections on each listener known, for
// `graceshim status` while the server serves. It runs only when asked.
func (w *connWatcher) PerListener(ctx context.Context) ([]conns.ListenerCount, error) {
	return w.t.PerEndpoint(ctx)
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
	w       *connWatcher
	d       *conns.Drain
	began   time.Time      // the drain's start: when its connections were first seen
	looked  time.Time      // the last details
	last    *conns.Details // what they said
	pending *drainReport   // for the next event, taken by report
	noMore  bool           // details failed for good: not tried again
}

// detailsEvery spaces the looks at which connections hold a drain: a
// dump of the drain's endpoints with tcp_info (1 ms at 1,000
// connections, 14 ms at 10,000; BenchmarkDetails in package conns). They
// are taken when a count comes (a close, or a drain's reconciling dump,
// at least 5 s apart), so a drain where nothing changes costs no more
// dumps than it did.
const detailsEvery = 5 * time.Second

// detailsKeep is how many connections a look names; the rest are counted.
const detailsKeep = 20

// drainReport is what the drain's follower tells the event loop with a
// count: the count by state, and the connections left as the last look
// saw them, less those closed since.
type drainReport struct {
	counts  conns.Counts
	cut     int // connections freed with data their peer never acknowledged
	began   time.Time
	details *conns.Details // nil before the first look
	fresh   bool           // details is a new look, not the last one pruned
	err     error          // why details could not be had
}

func (c *connDrain) Next(ctx context.Context) (int, error) {
	n, err := c.d.Next(ctx)
	c.w.logSource()
	if err != nil {
		return n.Total(), err
	}
	r := &drainReport{counts: n, began: c.began, cut: c.d.Cut()}
	if now := time.Now(); n.Total() > 0 && !c.noMore && (c.looked.IsZero() || now.Sub(c.looked) >= detailsEvery) {
		c.looked = now
		det, derr := c.d.Details(ctx, detailsKeep)
		switch {
		case derr == nil:
			c.last, r.details, r.fresh = &det, &det, true
		case errors.Is(derr, conns.ErrNoDetails):
			c.noMore = true
			r.err = derr
		case ctx.Err() == nil:
			r.err = derr
		}
	}
	if !r.fresh && c.last != nil {
		det := c.d.Prune(*c.last)
		r.details = &det
	}
	c.pending = r
	return n.Total(), nil
}

// report hands the event loop what came with the last count.
func (c *connDrain) report() *drainReport {
	r := c.pending
	c.pending = nil
	return r
}

func (c *connDrain) Close() { c.d.Close() }
