package supervisor

import (
	"fmt"
	"strings"
	"time"

	"github.com/graceshim/graceshim/supervisor/conns"
)

// Who a stop waits for. During a drain the follower looks at the
// connections left every few seconds (connwatch.go); the event loop logs
// them, puts the oldest in STATUS= (systemctl status shows one line of
// it, so that one alone), keeps the last look for `graceshim status`, and
// publishes the figures for the health endpoint's /metrics.

// How many connections each place names; the rest are "and N more".
const (
	logKeep    = 5
	statusKeep = 1
)

// whoWait is what the event loop knows of the connections and of its own
// state for status and metrics. The loop's goroutine owns it.
type whoWait struct {
	readyAt    time.Time      // READY=1 was sent
	counts     conns.Counts   // the drain's last count, by state
	counted    bool           // a drain count came
	details    *conns.Details // the drain's last look at its connections
	drainBegan time.Time      // the drain's connections were first seen
	detailsErr bool           // a failure to look was logged
}

// onDrainReport takes what came with a drain's count.
func (l *loop) onDrainReport(now time.Time, r *drainReport) {
	l.who.counts, l.who.counted, l.who.drainBegan = r.counts, true, r.began
	if r.err != nil && !l.who.detailsErr {
		l.who.detailsErr = true
		l.opts.Log.Warnf("cannot name the connections left: %v", r.err)
	}
	if r.details == nil {
		return
	}
	l.who.details = r.details
	if line := holdersText(r.details, r.began, r.details.At, logKeep, false); line != "" && r.fresh {
		l.opts.Log.Infof("waiting for %s", line)
	}
	// Shown with the count that came with it (onWatch observes it next),
	// and with each STATUS= until the next look: how long the connections
	// have been open is known at any time; their bytes and idle time are
	// as the look found them.
	l.stop.who = nil
	if holdersText(r.details, r.began, r.details.At, statusKeep, true) != "" {
		det, began := r.details, r.began
		l.stop.who = func(now time.Time) string {
			return "waiting for " + holdersText(det, began, now, statusKeep, true)
		}
	}
}

// holdersText names up to keep of det's connections, oldest first, then
// "and N more", as of now (how long they have been open; det.At for the
// look's own time); short is the form for STATUS=.
func holdersText(det *conns.Details, began, now time.Time, keep int, short bool) string {
	left := det.TCP + det.Unix
	if left == 0 {
		return ""
	}
	var parts []string
	for i, c := range det.Conns {
		if i == keep {
			break
		}
		parts = append(parts, connText(c, max(now.Sub(began), det.At.Sub(began)), short))
	}
	text := strings.Join(parts, ", ")
	if more := det.TCP - len(parts); more > 0 {
		if text == "" {
			text = fmt.Sprintf("%d TCP %s", more, plural(more, "connection", "connections"))
		} else {
			text += fmt.Sprintf(" and %d more", more)
		}
	}
	if det.Unix > 0 {
		u := fmt.Sprintf("%d unix %s", det.Unix, plural(det.Unix, "connection", "connections"))
		if !short && len(det.UnixPaths) > 0 {
			u += " on " + strings.Join(det.UnixPaths, ", ")
		}
		text = strings.TrimPrefix(text+", "+u, ", ")
	}
	return text
}

// connText describes one connection: the peer, how long it has been
// open at least (it was first seen when the drain began: graceshim does
// not watch connections while the server serves, and the kernel keeps
// no start time), bytes each way and the time since the last data.
func connText(c conns.Conn, open time.Duration, short bool) string {
	var b strings.Builder
	b.WriteString(c.Peer.String())
	if short {
		fmt.Fprintf(&b, " (%s", ShortDuration(open))
		if i := c.Info; i != nil {
			if i.HaveBytes {
				fmt.Fprintf(&b, ", %s/%s", SizeText(i.BytesAcked), SizeText(i.BytesReceived))
			}
			fmt.Fprintf(&b, ", idle %s", ShortDuration(i.Idle()))
		}
		b.WriteString(")")
		return b.String()
	}
	fmt.Fprintf(&b, " (%s, open >=%s", c.State, ShortDuration(open))
	if i := c.Info; i != nil {
		if i.HaveBytes {
			fmt.Fprintf(&b, ", sent %s, received %s", SizeText(i.BytesAcked), SizeText(i.BytesReceived))
		}
		fmt.Fprintf(&b, ", last data sent %s ago, received %s ago", ShortDuration(i.LastDataSent), ShortDuration(i.LastDataRecv))
	}
	b.WriteString(")")
	return b.String()
}

// ShortDuration rounds a duration for people: tenths of a second under
// ten seconds, whole seconds under an hour. graceshim status prints with
// it too.
func ShortDuration(d time.Duration) string {
	switch {
	case d < 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	}
	return d.Round(time.Minute).String()
}

// SizeText writes a byte count with a binary unit ("1.5MiB").
func SizeText(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// Status is graceshim's answer to a status request (`graceshim status`).
type Status struct {
	// Command is the server's name; PID its master's pid, Shim
	// graceshim's own.
	Command string `json:"command"`
	PID     int    `json:"pid"`
	Shim    int    `json:"graceshim_pid"`
	// State is starting, serving, reloading, upgrading, stopping (the
	// drain delay: still serving), draining, fast-stopping or killed.
	State string `json:"state"`
	// Since is when the state began; zero when not known.
	Since time.Time `json:"since,omitzero"`
	// Listeners are the connections per listener (not during a stop).
	Listeners []ListenerStatus `json:"listeners,omitempty"`
	// ListenersError says why Listeners could not be counted.
	ListenersError string `json:"listeners_error,omitempty"`
	// Drain is the drain under way.
	Drain *DrainStatus `json:"drain,omitempty"`
}

// ListenerStatus is one listener's count.
type ListenerStatus struct {
	Listener    string `json:"listener"`
	Connections int    `json:"connections"`
}

// DrainStatus is a drain under way.
type DrainStatus struct {
	// Began is when the graceful signal was sent.
	Began time.Time `json:"began"`
	// Left is the last count, Closed how many closed since Began.
	Left   int  `json:"left"`
	Closed int  `json:"closed"`
	Counts bool `json:"counted"` // false: not counted (yet)
	// Escalated says why the stop escalated, "" when it did not.
	Escalated string `json:"escalated,omitempty"`
	// DetailsAt is when the connections below were looked at.
	DetailsAt time.Time `json:"details_at,omitzero"`
	// Connections are the oldest ones left, More those not listed.
	Connections []ConnStatus `json:"connections,omitempty"`
	More        int          `json:"more"`
	// Unix are the unix connections left, on UnixPaths.
	Unix      int      `json:"unix"`
	UnixPaths []string `json:"unix_paths,omitempty"`
}

// ConnStatus is one connection a drain waits for.
type ConnStatus struct {
	Peer  string `json:"peer"`
	Local string `json:"local"`
	State string `json:"state"`
	// OpenSeconds is how long it has been open at least: it was first
	// seen when the drain began.
	OpenSeconds float64 `json:"open_seconds"`
	// Sent (acknowledged by the peer) and Received are nil when the
	// kernel does not count them (before Linux 4.1).
	Sent     *uint64 `json:"sent_bytes,omitempty"`
	Received *uint64 `json:"received_bytes,omitempty"`
	// Times since data last went out and came in; nil without tcp_info.
	LastSentSeconds *float64 `json:"last_data_sent_seconds,omitempty"`
	LastRecvSeconds *float64 `json:"last_data_received_seconds,omitempty"`
}

// stateName is the state Status reports.
func (l *loop) stateName() (string, time.Time) {
	s := l.stop
	switch s.phase {
	case phaseDelay:
		return "stopping", s.began
	case phaseGraceful:
		return "draining", s.gracefulAt
	case phaseFast:
		return "fast-stopping", s.fastAt
	case phaseKilled:
		return "killed", time.Time{}
	}
	switch {
	case l.upgrade != nil:
		return "upgrading", time.Time{}
	case l.reload != nil:
		if l.reloadUntil.IsZero() {
			return "reloading", time.Time{} // its config test runs
		}
		return "reloading", l.reloadSent
	case !l.ready:
		return "starting", l.startedAt
	}
	return "serving", l.who.readyAt
}

// status puts together what the loop knows for a status request.
func (l *loop) status() Status {
	st := Status{Command: l.name, PID: l.main, Shim: l.self}
	st.State, st.Since = l.stateName()
	s := l.stop
	if s.phase == phaseRunning || s.phase == phaseDelay {
		return st
	}
	d := &DrainStatus{Began: s.gracefulAt, Left: s.conns, Closed: s.closed, Counts: s.counted, Escalated: s.reason}
	if det := l.who.details; det != nil {
		d.DetailsAt = det.At
		for _, c := range det.Conns {
			cs := ConnStatus{Peer: c.Peer.String(), Local: c.Local.String(), State: c.State, OpenSeconds: det.At.Sub(l.who.drainBegan).Seconds()}
			if i := c.Info; i != nil {
				if i.HaveBytes {
					sent, recv := i.BytesAcked, i.BytesReceived
					cs.Sent, cs.Received = &sent, &recv
				}
				ls, lr := i.LastDataSent.Seconds(), i.LastDataRecv.Seconds()
				cs.LastSentSeconds, cs.LastRecvSeconds = &ls, &lr
			}
			d.Connections = append(d.Connections, cs)
		}
		d.More = det.TCP - len(det.Conns)
		d.Unix, d.UnixPaths = det.Unix, det.UnixPaths
	}
	st.Drain = d
	return st
}

// onControlRequest answers a status request itself and passes the rest
// to onControl; the outcome of a reload is counted for /metrics.
func (l *loop) onControlRequest(now time.Time, req controlReq) {
	switch req.cmd {
	case "status":
		l.answerStatus(req)
		return
	case "reload":
		if l.health != nil {
			inner, outer := make(chan ControlReply, 1), req.reply
			req.reply = inner
			go func() {
				r := <-inner // every reload request is answered (answerReload, abandonReload)
				l.health.countReload(r.OK)
				outer <- r
			}()
		}
	}
	l.onControl(now, req)
}

// answerStatus replies to a status request. While the server serves, the
// watch actor counts the connections per listener first; the answer then
// comes from a goroutine of its own, so that the loop never waits for it.
//
// One count at a time: requests that come while one is under way share
// it (listenersAsk). Each request used to queue a count of its own on
// watchCmds, which the loop also sends its own commands on, blocking:
// with the actor slow to count (a huge table, a stalled /proc read), a
// handful of status clients filled the queue and the loop stopped at its
// next command, the graceful signal's (measured: with a count held, 8
// clients at once, SIGTERM never reached the server;
// TestStatusFloodDoesNotHoldTheStop).
func (l *loop) answerStatus(req controlReq) {
	st := l.status()
	if l.stop.phase >= phaseGraceful {
		// The watch actor has handed the Watcher to the drain.
		req.reply <- ControlReply{OK: true, Message: st.State, Status: &st}
		return
	}
	ask := l.asking
	if ask == nil || ask.finished() {
		ask = &listenersAsk{done: make(chan struct{})}
		ch := make(chan listenersReply, 1) // buffered: the actor never blocks on a client gone
		// The listeners are learned first: the watch actor learns them
		// on its own only while READY=1 waits for one (--ready=listen),
		// so with exec, notify or a pid file it knew none, and status
		// listed no listener at all (TestStatusListenersReadyExec); a
		// reload may have added some since. Commands are taken in order.
		select {
		case l.watchCmds <- watchCmd{learn: make(chan []string, 1)}:
		default: // the queue is full: the count goes by what is known
		}
		select {
		case l.watchCmds <- watchCmd{listeners: ch}:
		default:
			st.ListenersError = "the connection watcher is busy; ask again"
			req.reply <- ControlReply{OK: true, Message: st.State, Status: &st}
			return
		}
		l.asking = ask
		go func() {
			ask.r = <-ch // the actor answers every listeners command
			close(ask.done)
		}()
	}
	bg := l.bg
	go func() {
		select {
		case <-ask.done:
			if ask.r.err != nil {
				st.ListenersError = ask.r.err.Error()
			}
			for _, c := range ask.r.counts {
				st.Listeners = append(st.Listeners, ListenerStatus{Listener: c.Endpoint.String(), Connections: c.Conns})
			}
		case <-bg.Done():
			st.ListenersError = "graceshim is ending"
		}
		req.reply <- ControlReply{OK: true, Message: st.State, Status: &st}
	}()
}

// listenersAsk is one count per listener asked of the watch actor, which
// the status requests that come while it runs share. r is written once,
// before done closes.
type listenersAsk struct {
	done chan struct{}
	r    listenersReply
}

func (a *listenersAsk) finished() bool {
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

// publishMetrics hands the health endpoint the figures of /metrics.
func (l *loop) publishMetrics(now time.Time) {
	if l.health == nil {
		return
	}
	s := l.stop
	m := metricsSnap{stopping: s.stopping(), drainBegan: s.gracefulAt, closed: s.closed, reason: s.reason}
	m.state, _ = l.stateName()
	if s.phase == phaseFast || s.phase == phaseKilled {
		m.escalations = 1
	}
	if s.phase == phaseKilled && !s.fastAt.IsZero() {
		m.escalations = 2
	}
	if l.who.counted && s.phase >= phaseGraceful {
		m.counted, m.counts = true, l.who.counts
		if det := l.who.details; det != nil && s.conns > 0 {
			m.oldest = det.Conns[:min(len(det.Conns), metricsKeep)]
		}
	}
	l.health.publish(m)
}
