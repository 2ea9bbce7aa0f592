package supervisor

import (
	"context"

	"github.com/graceshim/graceshim/supervisor/conns"
)

// connWatcher is the Watcher graceshim runs with: a conns.Tracker (netlink
// sock_diag, /proc/net when netlink is refused).
type connWatcher struct {
	t      *conns.Tracker
	mode   conns.Mode
	log    *Logger
	logged bool // the backend in use was logged
}

func newConnWatcher(mode conns.Mode, log *Logger) *connWatcher {
	return &connWatcher{t: conns.NewTracker(conns.Options{Mode: mode}), mode: mode, log: log}
}

// tree lists the master and its descendants: one walk of /proc, done only
// where the pids matter (learning listeners, counting with ModeAll), not on
// every count of a drain.
func tree(master int) []int {
	pids, err := conns.TreePids(master)
	if err != nil {
		return []int{master}
	}
	return pids
}

func (w *connWatcher) Learn(master int) ([]string, error) {
	_, err := w.t.Observe(tree(master))
	eps := w.t.Endpoints()
	out := make([]string, len(eps))
	for i, e := range eps {
		out[i] = e.String()
	}
	return out, err
}

func (w *connWatcher) Count(ctx context.Context, master int) (int, error) {
	var pids []int // ModeListen counts by the remembered endpoints alone
	if w.mode == conns.ModeAll {
		pids = tree(master)
	}
	c, err := w.t.Count(ctx, pids)
	if !w.logged {
		w.logged = true
		if name, why := w.t.Source(); why != nil {
			w.log.Warnf("counting connections through %s: %v", name, why)
		} else {
			w.log.Debugf("counting connections through %s", name)
		}
	}
	return c.Total(), err
}
