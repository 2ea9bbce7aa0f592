package supervisor

import (
	"context"
	"errors"
	"runtime/debug"
	"time"

	"github.com/graceshim/graceshim/supervisor/conns"
)

// Watcher learns a process tree's listening sockets and counts its live
// connections. The supervisor's watch actor is its only user, so an
// implementation needs no locking.
type Watcher interface {
	// Learn remembers the listening endpoints of the master's process
	// tree, adding to those it knows, and returns every endpoint it knows
	// ("tcp4 127.0.0.1:80").
	Learn(master int) ([]string, error)
	// Drain starts counting the connections a drain waits for. It
	// returns errNothingToCount when there is nothing to count by (no
	// listener known): the drain then waits for the tree alone.
	Drain(ctx context.Context, master int) (DrainCounter, error)
}

// DrainCounter follows one drain.
type DrainCounter interface {
	// Next returns the first count at once, then blocks until the count
	// may have changed (a connection closed, a re-count ran) or ctx is
	// done.
	Next(ctx context.Context) (int, error)
	Close()
}

var errNothingToCount = errors.New("nothing to count")

// readyPollFirst and readyPollMax space the watch actor's looks for the
// first listener, until the ready bound: soon after the start (most
// servers listen within milliseconds), then twice as far apart each time,
// up to readyPollMax. A look costs two socket dumps and a /proc reading;
// at a fixed 100 ms a worker daemon that never listens cost about 200
// context switches a second for the whole ready timeout. Outside a drain and once the ready
// bound has passed it has no timer at all: listeners are re-learned when
// something can have changed them (a reload, a new master, the graceful
// signal), and a drain follows the kernel's destroy messages (or polls,
// in package conns, where they are refused). An idle server costs
// graceshim no wake-ups here.
const (
	readyPollFirst = 10 * time.Millisecond
	readyPollMax   = 500 * time.Millisecond
)

// countRetry bounds how soon a drain's count is retried after it failed.
const countRetry = time.Second

// watchCmd is a request of the event loop to the watch actor.
type watchCmd struct {
	main   int           // the master's pid, when it changes (0: unchanged)
	drain  bool          // start counting
	learn  chan []string // learn now and reply (before the graceful signal)
	settle bool          // with learn: then go idle (a reload ended)
	// listeners: count the connections per listener and reply
	// (graceshim status); not during a drain.
	listeners chan<- listenersReply
}

// watchEvent is a report of the watch actor to the event loop.
type watchEvent struct {
	ready   []string // the first listening endpoints were found
	count   int
	counted bool
	err     error
	at      time.Time
	report  *drainReport // what came with the count, from a drainReporter
}

// watch is the actor that owns the Watcher. It looks for the first
// listener until readyUntil (zero: it does not look), learns again when
// the master changes or when asked, and, once asked to drain, has a
// goroutine of its own follow the count.
func watch(ctx context.Context, w Watcher, main int, readyUntil time.Time, cmds <-chan watchCmd, out chan<- watchEvent) {
	send := func(ev watchEvent) {
		select {
		case out <- ev:
		case <-ctx.Done():
		}
	}
	var following chan struct{} // closed when the drain's follower is done
	defer func() {
		if following != nil {
			<-following
		}
	}()
	waitReady := !readyUntil.IsZero()
	readyEvery := readyPollFirst
	timer := time.NewTimer(0)
	if !waitReady {
		// READY=1 waits for something else (the exec, the daemon's own
		// READY=1, a pid file), which costs this actor nothing: the
		// start is over for it.
		timer.Stop()
		settle()
	}
	defer timer.Stop()
	// A drain whose start failed (descriptors short, a /proc read cut
	// short) is started again countRetry later, here rather than in a
	// goroutine: the Watcher is this actor's alone. Giving up after one
	// failure would leave the rest of the stop uncounted, and the stall
	// timer off with it.
	retry := time.NewTimer(0)
	retry.Stop()
	defer retry.Stop()
	// counting: a follower has the Watcher's drain, which shares the
	// Watcher's state (a conns.Tracker is for one goroutine): the actor
	// leaves the Watcher alone from then on.
	counting := false
	startDrain := func() {
		d, err := w.Drain(ctx, main)
		if err != nil {
			if errors.Is(err, errNothingToCount) {
				following = make(chan struct{})
				close(following)
				return
			}
			send(watchEvent{err: err, at: time.Now()})
			retry.Reset(countRetry)
			return
		}
		following = make(chan struct{})
		counting = true
		go func() {
			defer close(following)
			defer d.Close()
			follow(ctx, d, send)
		}()
	}
	draining := false // asked to drain
	for {
		select {
		case <-ctx.Done():
			return
		case <-retry.C:
			if following == nil {
				startDrain()
			}
			continue
		case c := <-cmds:
			if c.listeners != nil {
				c.listeners <- perListener(ctx, w, counting || draining)
				continue
			}
			switch {
			case c.learn != nil:
				if c.main != 0 {
					main = c.main
				}
				if counting {
					// A reload that ended during the drain: its new
					// listeners are not the drain's business.
					c.learn <- nil
					break
				}
				known, _ := w.Learn(main)
				c.learn <- known
				if c.settle && !waitReady && !draining {
					settle()
				}
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
				waitReady = false
				timer.Stop()
				startDrain()
			}
			continue
		case <-timer.C:
		}
		if !waitReady {
			continue
		}
		known, err := w.Learn(main)
		if err == nil && len(known) > 0 {
			send(watchEvent{ready: known})
			waitReady = false
			settle()
			continue
		}
		if !time.Now().Before(readyUntil) {
			// The event loop sends READY=1 anyway now; a server that
			// never listens (a worker daemon) is not polled for the rest
			// of its life.
			waitReady = false
			settle()
			continue
		}
		timer.Reset(readyEvery)
		readyEvery = min(2*readyEvery, readyPollMax)
	}
}

// settle is called when graceshim goes idle: the server is ready (or the
// ready bound passed), or a reload ended. It hands the memory the work
// before used back to the system (300 polls of /proc leave a few MB of
// heap that the runtime would otherwise return only slowly; measured: 7 MB
// of anonymous memory after 30 s of polling, 2.5 MB without them) and
// unmaps the code start-up touched (dropStartupPages).
func settle() {
	debug.FreeOSMemory()
	_, _ = dropStartupPages() // best effort: only the resident set is at stake
}

// follow reports each count of a drain until ctx is done. A failed count
// is reported as such, never as a count, and retried.
func follow(ctx context.Context, d DrainCounter, send func(watchEvent)) {
	for ctx.Err() == nil {
		n, err := d.Next(ctx)
		if ctx.Err() != nil {
			return
		}
		ev := watchEvent{count: n, counted: err == nil, err: err, at: time.Now()}
		if r, ok := d.(drainReporter); ok {
			ev.report = r.report()
		}
		send(ev)
		if err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(countRetry):
			}
		}
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

// drainReporter is a DrainCounter that has more to say with each count.
type drainReporter interface {
	report() *drainReport
}

// listenerCounter is a Watcher that counts connections per listener.
type listenerCounter interface {
	PerListener(ctx context.Context) ([]conns.ListenerCount, error)
}

// listenersReply answers a watchCmd's listeners request.
type listenersReply struct {
	counts []conns.ListenerCount
	err    error
}

// perListenerTimeout bounds a count per listener asked by a status client.
const perListenerTimeout = 5 * time.Second

// perListener counts w's connections per listener, unless a drain has the
// Watcher (its state is the drain's then).
func perListener(ctx context.Context, w Watcher, draining bool) listenersReply {
	if draining {
		return listenersReply{err: errors.New("a drain is under way")}
	}
	lc, ok := w.(listenerCounter)
	if !ok {
		return listenersReply{err: errors.New("this watcher cannot count per listener")}
	}
	ctx, cancel := context.WithTimeout(ctx, perListenerTimeout)
	defer cancel()
	counts, err := lc.PerListener(ctx)
	return listenersReply{counts: counts, err: err}
}
