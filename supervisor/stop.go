package supervisor

import (
	"fmt"
	"time"
)

// phase is where a stop is.
type phase int

const (
	phaseRunning  phase = iota // no stop asked for
	phaseDelay                 // stop asked; the child still serves (drain delay)
	phaseGraceful              // graceful signal sent; connections drain
	phaseFast                  // fast signal sent; SIGKILL follows KillTimeout later
	phaseKilled                // SIGKILL sent to every descendant
)

func (p phase) String() string {
	return [...]string{"running", "delaying", "draining", "fast-stopping", "killed"}[p]
}

// actKind is something the stop state machine asks the supervisor to do.
type actKind int

const (
	actStopping actKind = iota // tell systemd STOPPING=1
	actPreStop                 // send the preset's pre-stop signal
	actGraceful                // send the graceful signal
	actFast                    // send the fast signal
	actKill                    // SIGKILL every descendant
	actStatus                  // tell systemd STATUS=text
	actExtend                  // tell systemd EXTEND_TIMEOUT_USEC=d
	actLog                     // log text at info level
)

type action struct {
	kind actKind
	text string
	d    time.Duration
}

// stopConfig are the bounds of a stop.
type stopConfig struct {
	DrainDelay   time.Duration
	DrainTimeout time.Duration // <= 0: no bound
	StallTimeout time.Duration // <= 0: off
	KillTimeout  time.Duration
	ExtendEvery  time.Duration
	ExtendBy     time.Duration
	PreStop      bool // the preset has a pre-stop signal
	// SameSignal: the graceful and the fast signal are the same (TERM
	// for the generic preset). Sending it again adds nothing, so a drain
	// escalates straight to SIGKILL: the drain timeout is the stop's
	// bound, as docker stop's timeout is.
	SameSignal bool
	// NoGraceful: the daemon has no graceful stop (memcached): the log
	// and STATUS say "stop signal" and "stopping", never "graceful" or
	// "draining".
	NoGraceful bool
}

// killSweepEvery is how often SIGKILL is sent again to what is left of
// the tree after the kill.
const killSweepEvery = time.Second

// stopper is the stop state machine. It is pure: the event loop feeds it
// what happened and when, and carries out the actions it returns. It never
// ends a stop itself; the stop ends when the reaper sees the last process
// of the tree go.
type stopper struct {
	cfg   stopConfig
	phase phase

	began      time.Time // the stop was asked for
	gracefulAt time.Time // the graceful signal was sent
	fastAt     time.Time
	nextExtend time.Time
	nextKill   time.Time // the next SIGKILL sweep, once killed
	reason     string    // why the stop escalated, "" when it did not

	// Drain progress, from the connection counts.
	counted    bool        // at least one count arrived since the graceful signal
	conns      int         // connections left at the last count
	countAt    time.Time   // when the last count was taken
	closed     int         // connections seen to close since the graceful signal
	cut        int         // of those, closed with data the peer never acknowledged
	lastCloses []closeMark // the closes seen in the last countSettle
	progressAt time.Time
	blind      bool                       // the last count failed: no stall can be seen until one succeeds
	status     string                     // the last STATUS text sent
	who        func(now time.Time) string // which connections hold the drain, short; nil when unknown; set with each count (control_status.go)
}

func newStopper(cfg stopConfig) *stopper {
	return &stopper{cfg: cfg}
}

func (s *stopper) stopping() bool { return s.phase != phaseRunning }

// begin starts a stop at now. It returns nil when a stop is already under
// way: the caller escalates instead.
func (s *stopper) begin(now time.Time) []action {
	if s.phase != phaseRunning {
		return nil
	}
	acts := s.start(now)
	if s.cfg.DrainDelay > 0 {
		s.phase = phaseDelay
		acts = append(acts, action{kind: actLog, text: fmt.Sprintf("stop asked: serving %s more before the %s (drain delay)", s.cfg.DrainDelay, s.signalWord())})
		acts = append(acts, s.tick(now)...)
		return acts
	}
	return append(acts, s.graceful(now)...)
}

// start records that a stop began at now and tells systemd so.
func (s *stopper) start(now time.Time) []action {
	s.began = now
	s.nextExtend = now
	return []action{{kind: actStopping}}
}

// gracefulNow skips the rest of a drain delay: the graceful signal reached
// graceshim directly.
func (s *stopper) gracefulNow(now time.Time) []action {
	if s.phase != phaseDelay {
		return nil
	}
	return s.graceful(now)
}

func (s *stopper) graceful(now time.Time) []action {
	s.phase = phaseGraceful
	s.gracefulAt = now
	s.progressAt = now
	var acts []action
	if s.cfg.PreStop {
		acts = append(acts, action{kind: actPreStop})
	}
	acts = append(acts, action{kind: actGraceful})
	return append(acts, s.tick(now)...)
}

// escalate moves the stop one step harder at now: to the fast signal from
// a delay or a drain, to SIGKILL from a fast stop.
func (s *stopper) escalate(now time.Time, reason string) []action {
	switch s.phase {
	case phaseRunning:
		s.reason = reason
		return append(s.start(now), s.fast(now)...)
	case phaseDelay, phaseGraceful:
		s.reason = reason
		if s.cfg.SameSignal && s.phase == phaseGraceful {
			return s.kill(now)
		}
		return s.fast(now)
	case phaseFast:
		s.reason = reason
		return s.kill(now)
	}
	return nil
}

func (s *stopper) fast(now time.Time) []action {
	s.phase = phaseFast
	s.fastAt = now
	acts := []action{
		{kind: actLog, text: fmt.Sprintf("escalating: %s; fast signal sent, SIGKILL in %s", s.reason, s.cfg.KillTimeout)},
		{kind: actFast},
	}
	return append(acts, s.tick(now)...)
}

func (s *stopper) kill(now time.Time) []action {
	s.phase = phaseKilled
	s.nextKill = now.Add(killSweepEvery)
	acts := []action{
		{kind: actLog, text: fmt.Sprintf("escalating: %s; SIGKILL sent to every process of the tree", s.reason)},
		{kind: actKill},
	}
	return append(acts, s.setStatus(now)...)
}

// observe records a connection count taken at now.
func (s *stopper) observe(now time.Time, n int) []action {
	if s.phase != phaseGraceful && s.phase != phaseFast {
		return nil
	}
	switch {
	case !s.counted:
		s.counted = true
		s.progressAt = now
	case n < s.conns:
		s.closed += s.conns - n
		s.progressAt = now
		s.lastCloses = append(s.lastCloses, closeMark{at: now, n: s.conns - n})
		for len(s.lastCloses) > 0 && now.Sub(s.lastCloses[0].at) >= countSettle {
			s.lastCloses = s.lastCloses[1:]
		}
	case n > s.conns:
		// New connections during a drain (the server still accepts, or
		// a count is noisy) are progress of a kind: the server is alive.
		s.progressAt = now
	}
	if s.blind {
		// Counting again after failures: the stall timer starts over.
		s.blind = false
		s.progressAt = now
	}
	s.conns = n
	s.countAt = now
	return s.tick(now)
}

// countFailed records that a count failed at now. The last count is no
// evidence of a stall any more: escalating on it would cut connections
// that may be closing as they should. The stall timer waits for the next
// count that succeeds; the drain timeout still bounds the drain.
func (s *stopper) countFailed(now time.Time) []action {
	if s.phase != phaseGraceful && s.phase != phaseFast {
		return nil
	}
	s.blind = true
	return s.tick(now)
}

// tick runs the deadlines that are due at now.
func (s *stopper) tick(now time.Time) []action {
	var acts []action
	switch s.phase {
	case phaseRunning:
		return nil
	case phaseKilled:
		// A process forked while the tree was being killed escapes one
		// sweep; sweep again until the tree is gone. No extensions:
		// systemd's own timeout is the backstop now.
		if !now.Before(s.nextKill) {
			s.nextKill = now.Add(killSweepEvery)
			return []action{{kind: actKill}}
		}
		return nil
	case phaseDelay:
		if !now.Before(s.began.Add(s.cfg.DrainDelay)) {
			return s.graceful(now)
		}
	case phaseGraceful:
		if s.cfg.DrainTimeout > 0 && !now.Before(s.gracefulAt.Add(s.cfg.DrainTimeout)) {
			return s.escalate(now, fmt.Sprintf("drain timeout %s reached", s.cfg.DrainTimeout))
		}
		if s.stalled(now) {
			return s.escalate(now, fmt.Sprintf("stalled: no connection closed for %s, %d left", s.cfg.StallTimeout, s.conns))
		}
	case phaseFast:
		if !now.Before(s.fastAt.Add(s.cfg.KillTimeout)) {
			return s.escalate(now, fmt.Sprintf("still running %s after the fast signal", s.cfg.KillTimeout))
		}
	}
	if !now.Before(s.nextExtend) {
		acts = append(acts, action{kind: actExtend, d: s.cfg.ExtendBy})
		s.nextExtend = now.Add(s.cfg.ExtendEvery)
	}
	return append(acts, s.setStatus(now)...)
}

func (s *stopper) stalled(now time.Time) bool {
	return s.cfg.StallTimeout > 0 && s.counted && !s.blind && s.conns > 0 && !now.Before(s.progressAt.Add(s.cfg.StallTimeout))
}

// setStatus returns a STATUS action when the text changed.
func (s *stopper) setStatus(now time.Time) []action {
	t := s.statusText(now)
	if t == s.status {
		return nil
	}
	s.status = t
	return []action{{kind: actStatus, text: t}}
}

func (s *stopper) statusText(now time.Time) string {
	elapsed := now.Sub(s.began).Truncate(time.Second)
	switch s.phase {
	case phaseDelay:
		return fmt.Sprintf("stopping: still serving for load balancers, %s in %s", s.signalWord(), s.began.Add(s.cfg.DrainDelay).Sub(now).Round(time.Second))
	case phaseGraceful:
		what := "draining"
		if s.cfg.NoGraceful {
			what = "stopping (no graceful stop)"
		}
		if !s.counted {
			return fmt.Sprintf("%s: waiting for the server to exit, %s elapsed", what, elapsed)
		}
		if s.conns == 0 {
			return fmt.Sprintf("%s: no connections left (%d closed), waiting for the server to exit, %s elapsed", what, s.closed, elapsed)
		}
		return fmt.Sprintf("%s: %d %s left (%d closed), %s elapsed%s", what, s.conns, plural(s.conns, "connection", "connections"), s.closed, elapsed, s.whoText(now))
	case phaseFast:
		return fmt.Sprintf("fast stop: %s; %d %s left, %s elapsed%s", s.reason, s.conns, plural(s.conns, "connection", "connections"), elapsed, s.whoText(now))
	case phaseKilled:
		return fmt.Sprintf("killed: %s, %s elapsed", s.reason, elapsed)
	}
	return ""
}

func (s *stopper) whoText(now time.Time) string {
	if s.who == nil || s.conns == 0 {
		return ""
	}
	return "; " + s.who(now)
}

// next returns when tick must run next, or the zero time when nothing is
// due.
func (s *stopper) next() time.Time {
	var t time.Time
	earliest := func(c time.Time) {
		if t.IsZero() || c.Before(t) {
			t = c
		}
	}
	switch s.phase {
	case phaseRunning:
		return time.Time{}
	case phaseKilled:
		return s.nextKill
	case phaseDelay:
		earliest(s.began.Add(s.cfg.DrainDelay))
	case phaseGraceful:
		if s.cfg.DrainTimeout > 0 {
			earliest(s.gracefulAt.Add(s.cfg.DrainTimeout))
		}
		if s.cfg.StallTimeout > 0 && s.counted && !s.blind && s.conns > 0 {
			earliest(s.progressAt.Add(s.cfg.StallTimeout))
		}
	case phaseFast:
		earliest(s.fastAt.Add(s.cfg.KillTimeout))
	}
	earliest(s.nextExtend)
	return t
}

// summary is the one line logged when the stop ends at now, exit saying
// how the last process ended. Connections still open at the last count
// were not seen to drain, but a count trails the closes it reports: the
// kernel announces a freed socket from a workqueue some milliseconds
// later (package conns), and a polling count is up to a poll old. So
// when the count was still changing within countSettle of the end, the
// line says how many were open at the last count and claims nothing
// about them: in an nginx stop whose 20 downloads all completed, the last
// count, a few milliseconds before the exit, still showed 9; in one where
// nginx's worker_shutdown_timeout cut 16 downloads, the count fell just
// as fast while nginx closed them. The counts cannot tell the two apart.
// Only a count that had stood still for countSettle is evidence that the
// server (or the SIGKILL) closed them as it exited.
func (s *stopper) summary(now time.Time, exit string) string {
	took := now.Sub(s.began).Round(time.Millisecond)
	how := "no escalation"
	if s.reason != "" {
		how = "escalated: " + s.reason
	}
	conns := "connections not counted"
	if s.counted {
		conns = fmt.Sprintf("%d %s closed while draining", s.closed, plural(s.closed, "connection", "connections"))
		if s.cut > 0 {
			conns += fmt.Sprintf(" (%d cut short: freed with data the client had not received)", s.cut)
		}
		ago := now.Sub(s.countAt).Round(time.Millisecond)
		still := now.Sub(s.progressAt)
		switch {
		case s.conns == 0:
			// The last closes may be the server's own as it exited (a
			// shutdown timeout): a burst just before the end says so as
			// much as a finish.
			last := 0
			for _, c := range s.lastCloses {
				if now.Sub(c.at) < countSettle {
					last += c.n
				}
			}
			// Said only of a burst that is most of the drain: the last
			// close or two of an ordinary drain come just before the
			// exit too.
			switch {
			case last < 2 || 2*last < s.closed:
			case last < s.closed:
				conns += fmt.Sprintf(", %d of them in the last %s before the end: finished, or cut by the server as it exited", last, countSettle)
			default:
				conns += fmt.Sprintf(", all in the last %s before the end: finished, or cut by the server as it exited", countSettle)
			}
		case still < countSettle:
			conns += fmt.Sprintf(", %d open at the last count %s before the end, the count still changing (it trails the closes by a few ms): finished, or cut by the server as it exited", s.conns, ago)
		case s.phase == phaseKilled:
			conns += fmt.Sprintf(", %d still open at the last count %s before the end, unchanged for %s: cut by the SIGKILL", s.conns, ago, still.Round(time.Millisecond))
		default:
			conns += fmt.Sprintf(", %d still open at the last count %s before the end, unchanged for %s: the server closed them itself (finished, or cut by its own shutdown timeout)", s.conns, ago, still.Round(time.Millisecond))
		}
	}
	return fmt.Sprintf("stop took %s (%s); %s; %s", took, how, conns, exit)
}

// closeMark is a count that fell by n at.
type closeMark struct {
	at time.Time
	n  int
}

// countSettle is how long a count must have stood still before the end
// for summary to take the connections it shows for closed by the server
// as it exited rather than for closes the count had not caught up with:
// well past a destroy message's delay (milliseconds), a drain's batch
// window (100 ms) and its slowest regular poll (250 ms; package conns).
const countSettle = time.Second

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// signalWord names the signal a stop begins with, for the log and STATUS.
func (s *stopper) signalWord() string {
	if s.cfg.NoGraceful {
		return "stop signal"
	}
	return "graceful signal"
}
