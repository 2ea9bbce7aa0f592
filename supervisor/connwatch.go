package supervisor

import (
	"context"

	"github.com/graceshim/graceshim/supervisor/conns"
)

// connWatcher is the Watcher graceshim runs with: a conns.Tracker (netlink
// sock_diag, /proc/net when netlink is refused).
type connWatcher struct {
	t      *conns.Tracker
	log    *Logger
	logged bool // the backend in use was logged
}

func newConnWatcher(mode conns.Mode, log *Logger) *connWatcher {
	return &connWatcher{t: conns.NewTracker(conns.Options{Mode: mode}), log: log}
}

func (w *connWatcher) Learn(pids []int) ([]string, error) {
	_, err := w.t.Observe(pids)
	eps := w.t.Endpoints()
	out := make([]string, len(eps))
	for i, e := range eps {
		out[i] = e.String()
	}
	return out, err
}

func (w *connWatcher) Count(ctx context.Context, pids []int) (int, error) {
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
