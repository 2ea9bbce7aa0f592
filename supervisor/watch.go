package supervisor

import (
	"context"
	"time"
)

// Watcher learns a process tree's listening sockets and counts its live
// connections. The supervisor's watch actor is its only user, so an
// implementation needs no locking.
type Watcher interface {
	// Learn remembers the listening endpoints of the master's process
	// tree, adding to those it knows, and returns every endpoint it knows
	// ("tcp4 127.0.0.1:80").
	Learn(master int) ([]string, error)
	// Count returns the live connections that a drain waits for.
	Count(ctx context.Context, master int) (int, error)
}

// Poll intervals of the watch actor. Outside a drain and once the ready
// bound has passed it has no timer at all: listeners are re-learned when
// something can have changed them (a reload, a new master, the graceful
// signal), so an idle server costs graceshim no wake-ups here.
const (
	readyPollEvery   = 100 * time.Millisecond // looking for the first listener, until the ready bound
	drainPollFirst   = 20 * time.Millisecond  // first count after the graceful signal
	drainPollMax     = 250 * time.Millisecond // counts back off to this
	drainPollCostMul = 5                      // never spend more than 1/5 of the time counting
)

// watchCmd is a request of the event loop to the watch actor.
type watchCmd struct {
	main  int           // the master's pid, when it changes (0: unchanged)
	drain bool          // start counting
	learn chan []string // learn now and reply (before the graceful signal)
}

// watchEvent is a report of the watch actor to the event loop.
type watchEvent struct {
	ready     []string // the first listening endpoints were found
	count     int
	counted   bool
	err       error
	at        time.Time
	pollTaken time.Duration
}

// watch is the actor that owns the Watcher. It looks for the first
// listener until readyUntil (zero: it does not look), learns again when
// the master changes or when asked, and counts on a backoff schedule once
// asked to drain.
func watch(ctx context.Context, w Watcher, main int, readyUntil time.Time, cmds <-chan watchCmd, out chan<- watchEvent) {
	send := func(ev watchEvent) {
		select {
		case out <- ev:
		case <-ctx.Done():
		}
	}
	draining := false
	waitReady := !readyUntil.IsZero()
	interval := readyPollEvery
	timer := time.NewTimer(0)
	if !waitReady {
		timer.Stop()
	}
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case c := <-cmds:
			switch {
			case c.learn != nil:
				if c.main != 0 {
					main = c.main
				}
				known, _ := w.Learn(main)
				c.learn <- known
			case c.main != 0 && c.main != main:
				// A new master (daemonized, upgraded) may listen on
				// sockets the old one did not.
				main = c.main
				if !draining && !waitReady {
					_, _ = w.Learn(main)
				}
			}
			if c.drain && !draining {
				draining = true
				interval = drainPollFirst
				resetTimer(timer, interval)
			}
			continue
		case <-timer.C:
		}
		switch {
		case draining:
			start := time.Now()
			n, err := w.Count(ctx, main)
			took := time.Since(start)
			send(watchEvent{count: n, counted: err == nil, err: err, at: time.Now(), pollTaken: took})
			interval = min(interval*2, drainPollMax)
			interval = max(interval, took*drainPollCostMul)
		case waitReady:
			known, err := w.Learn(main)
			if err == nil && len(known) > 0 {
				send(watchEvent{ready: known})
				waitReady = false
				continue
			}
			if !time.Now().Before(readyUntil) {
				// The event loop sends READY=1 anyway now; a server
				// that never listens (a worker daemon) is not polled
				// for the rest of its life.
				waitReady = false
				continue
			}
		default:
			continue
		}
		resetTimer(timer, interval)
	}
}

func resetTimer(t *time.Timer, d time.Duration) {
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	t.Reset(d)
}
