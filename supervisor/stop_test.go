package supervisor

import (
	"strings"
	"testing"
	"time"
)

// kinds lists the kinds of acts, for compact comparisons.
func kinds(acts []action) []actKind {
	var out []actKind
	for _, a := range acts {
		out = append(out, a.kind)
	}
	return out
}

func has(acts []action, k actKind) bool {
	for _, a := range acts {
		if a.kind == k {
			return true
		}
	}
	return false
}

func statusOf(acts []action) string {
	for _, a := range acts {
		if a.kind == actStatus {
			return a.text
		}
	}
	return ""
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func cfg() stopConfig {
	return stopConfig{
		DrainTimeout: 60 * time.Second,
		StallTimeout: 10 * time.Second,
		KillTimeout:  5 * time.Second,
		ExtendEvery:  time.Second,
		ExtendBy:     5 * time.Second,
	}
}

// run feeds the stopper a script: counts at given offsets, ticking every
// 100ms in between, and returns every action with its time.
type timed struct {
	at time.Duration
	a  action
}

func drive(s *stopper, until time.Duration, counts map[time.Duration]int) []timed {
	var out []timed
	for at := time.Duration(0); at <= until; at += 100 * time.Millisecond {
		now := t0.Add(at)
		var acts []action
		if n, ok := counts[at]; ok {
			acts = s.observe(now, n)
		} else if next := s.next(); !next.IsZero() && !now.Before(next) {
			acts = s.tick(now)
		}
		for _, a := range acts {
			out = append(out, timed{at, a})
		}
	}
	return out
}

func firstAt(ts []timed, k actKind) (time.Duration, bool) {
	for _, t := range ts {
		if t.a.kind == k {
			return t.at, true
		}
	}
	return 0, false
}

func TestStopBegin(t *testing.T) {
	s := newStopper(cfg())
	acts := s.begin(t0)
	want := []actKind{actStopping, actGraceful, actExtend, actStatus}
	if got := kinds(acts); !equalKinds(got, want) {
		t.Fatalf("begin: got %v, want %v", got, want)
	}
	if s.begin(t0.Add(time.Second)) != nil {
		t.Error("a second begin did something; it must leave escalation to the caller")
	}
}

func TestStopPreStop(t *testing.T) {
	c := cfg()
	c.PreStop = true
	acts := newStopper(c).begin(t0)
	want := []actKind{actStopping, actPreStop, actGraceful, actExtend, actStatus}
	if got := kinds(acts); !equalKinds(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestStopExtendsWhileDraining(t *testing.T) {
	s := newStopper(cfg())
	s.begin(t0)
	// 3 connections that close one by one, the last at 4s.
	ts := drive(s, 8*time.Second, map[time.Duration]int{
		100 * time.Millisecond: 3, 2 * time.Second: 2, 3 * time.Second: 1, 4 * time.Second: 0,
	})
	var extends []time.Duration
	for _, x := range ts {
		if x.a.kind == actExtend {
			extends = append(extends, x.at)
			if x.a.d != 5*time.Second {
				t.Errorf("extension by %s, want 5s", x.a.d)
			}
		}
		if x.a.kind == actFast || x.a.kind == actKill {
			t.Errorf("escalated at %s while connections closed steadily", x.at)
		}
	}
	// One extension a second, never a gap longer than ExtendEvery plus a tick.
	if len(extends) < 7 {
		t.Fatalf("%d extensions in 8s, want one a second: %v", len(extends), extends)
	}
	for i := 1; i < len(extends); i++ {
		if gap := extends[i] - extends[i-1]; gap > 1100*time.Millisecond {
			t.Errorf("gap of %s between extensions at %s", gap, extends[i])
		}
	}
}

func TestStopStatusText(t *testing.T) {
	s := newStopper(cfg())
	s.begin(t0)
	st := statusOf(s.observe(t0.Add(time.Second), 40))
	if want := "draining: 40 connections left (0 closed), 1s elapsed"; st != want {
		t.Errorf("status %q, want %q", st, want)
	}
	st = statusOf(s.observe(t0.Add(12*time.Second+300*time.Millisecond), 37))
	if want := "draining: 37 connections left (3 closed), 12s elapsed"; st != want {
		t.Errorf("status %q, want %q", st, want)
	}
	st = statusOf(s.observe(t0.Add(13*time.Second), 1))
	if want := "draining: 1 connection left (39 closed), 13s elapsed"; st != want {
		t.Errorf("status %q, want %q", st, want)
	}
	if acts := s.observe(t0.Add(13*time.Second+100*time.Millisecond), 1); statusOf(acts) != "" {
		t.Errorf("status re-sent unchanged: %q", statusOf(acts))
	}
}

func TestStopStallEscalatesInOrder(t *testing.T) {
	c := cfg()
	c.StallTimeout = 3 * time.Second
	c.KillTimeout = 2 * time.Second
	s := newStopper(c)
	s.begin(t0)
	// One connection that never closes.
	ts := drive(s, 10*time.Second, map[time.Duration]int{100 * time.Millisecond: 1})
	fast, ok := firstAt(ts, actFast)
	if !ok {
		t.Fatal("no fast signal after the stall timeout")
	}
	if fast != 3100*time.Millisecond {
		t.Errorf("fast signal at %s, want 3.1s (stall timeout after the first count)", fast)
	}
	kill, ok := firstAt(ts, actKill)
	if !ok {
		t.Fatal("no SIGKILL after the kill timeout")
	}
	if kill != fast+2*time.Second {
		t.Errorf("SIGKILL at %s, want %s", kill, fast+2*time.Second)
	}
	// No extension after the kill: systemd's own timeout is the backstop.
	for _, x := range ts {
		if x.a.kind == actExtend && x.at > kill {
			t.Errorf("extension at %s after SIGKILL at %s", x.at, kill)
		}
	}
	if !strings.Contains(s.reason, "still running") || s.phase != phaseKilled {
		t.Errorf("phase %s reason %q", s.phase, s.reason)
	}
}

func TestStopStallNeedsConnections(t *testing.T) {
	c := cfg()
	c.StallTimeout = 2 * time.Second
	s := newStopper(c)
	s.begin(t0)
	// No connections left, the process lingers: not a stall.
	ts := drive(s, 10*time.Second, map[time.Duration]int{100 * time.Millisecond: 0})
	if at, ok := firstAt(ts, actFast); ok {
		t.Errorf("escalated at %s with no connections left", at)
	}
}

func TestStopDrainTimeout(t *testing.T) {
	c := cfg()
	c.DrainTimeout = 4 * time.Second
	c.StallTimeout = 0
	s := newStopper(c)
	s.begin(t0)
	counts := map[time.Duration]int{}
	for i := 1; i <= 80; i++ { // always progressing, never done
		counts[time.Duration(i)*100*time.Millisecond] = 1000 - i
	}
	ts := drive(s, 6*time.Second, counts)
	fast, ok := firstAt(ts, actFast)
	if !ok || fast != 4*time.Second {
		t.Fatalf("fast at %s (%v), want at the 4s drain timeout", fast, ok)
	}
	if !strings.Contains(s.reason, "drain timeout") {
		t.Errorf("reason %q", s.reason)
	}
}

func TestStopSecondSignalEscalates(t *testing.T) {
	s := newStopper(cfg())
	s.begin(t0)
	if acts := s.escalate(t0.Add(time.Second), "received TERM"); !has(acts, actFast) {
		t.Fatalf("second TERM: %v, want the fast signal", kinds(acts))
	}
	if acts := s.escalate(t0.Add(2*time.Second), "received TERM"); !has(acts, actKill) {
		t.Fatalf("third TERM: %v, want SIGKILL", kinds(acts))
	}
	if acts := s.escalate(t0.Add(3*time.Second), "received TERM"); len(acts) != 0 {
		t.Fatalf("after SIGKILL: %v, want nothing", kinds(acts))
	}
}

func TestStopDrainDelay(t *testing.T) {
	c := cfg()
	c.DrainDelay = 3 * time.Second
	s := newStopper(c)
	acts := s.begin(t0)
	if has(acts, actGraceful) {
		t.Fatal("graceful signal sent before the drain delay")
	}
	if !has(acts, actStopping) || !has(acts, actExtend) {
		t.Fatalf("begin with delay: %v, want STOPPING=1 and an extension", kinds(acts))
	}
	ts := drive(s, 4*time.Second, nil)
	at, ok := firstAt(ts, actGraceful)
	if !ok || at != 3*time.Second {
		t.Fatalf("graceful at %s (%v), want 3s", at, ok)
	}
	// A second TERM during the delay goes straight to the fast signal.
	s2 := newStopper(c)
	s2.begin(t0)
	if acts := s2.escalate(t0.Add(time.Second), "received TERM"); !has(acts, actFast) {
		t.Fatalf("TERM during delay: %v", kinds(acts))
	}
}

func TestStopNoBound(t *testing.T) {
	c := cfg()
	c.DrainTimeout = -1
	c.StallTimeout = 0
	s := newStopper(c)
	s.begin(t0)
	ts := drive(s, 20*time.Second, map[time.Duration]int{100 * time.Millisecond: 5})
	if at, ok := firstAt(ts, actFast); ok {
		t.Fatalf("escalated at %s without a bound", at)
	}
}

func TestStopSummary(t *testing.T) {
	s := newStopper(cfg())
	s.begin(t0)
	s.observe(t0.Add(time.Second), 40)
	s.observe(t0.Add(3*time.Second), 10)
	s.observe(t0.Add(5*time.Second), 0)
	got := s.summary(t0.Add(5200*time.Millisecond), "nginx exited with status 0")
	want := "stop took 5.2s (no escalation); 40 connections closed while draining; nginx exited with status 0"
	if got != want {
		t.Errorf("summary\n got %q\nwant %q", got, want)
	}
	// A burst of closes just before the exit, most of the drain, may be
	// the server's own, cut as it exited (a shutdown timeout): the
	// summary says they may be. A few last closes are an ordinary end.
	s = newStopper(cfg())
	s.begin(t0)
	s.observe(t0.Add(time.Second), 40)
	s.observe(t0.Add(3*time.Second), 30)
	s.observe(t0.Add(5*time.Second), 0)
	got = s.summary(t0.Add(5200*time.Millisecond), "nginx exited with status 0")
	want = "stop took 5.2s (no escalation); 40 connections closed while draining, 30 of them in the last 1s before the end: finished, or cut by the server as it exited; nginx exited with status 0"
	if got != want {
		t.Errorf("summary\n got %q\nwant %q", got, want)
	}
	s.cut = 10
	if got := s.summary(t0.Add(5200*time.Millisecond), "x"); !strings.Contains(got, "40 connections closed while draining (10 cut short: freed with data the client had not received), 30 of them") {
		t.Errorf("summary with cut connections: %q", got)
	}
	// A server that exits holding connections the count saw stand still
	// closed them itself (finished or cut them), as nginx's
	// worker_shutdown_timeout does (e2e TestE2ERunWorkerShutdownTimeout).
	s = newStopper(cfg())
	s.begin(t0)
	s.observe(t0.Add(time.Second), 12)
	got = s.summary(t0.Add(4*time.Second), "nginx exited with status 0")
	if !strings.Contains(got, "12 still open at the last count 3s before the end, unchanged for 3s: the server closed them itself") {
		t.Errorf("summary does not report the connections the server closed: %q", got)
	}
}

// TestStopSummaryCountTrails: the count was still falling when the
// server exited (the last close announced a few ms after the exit): the
// summary says how many were open at the last count, and does not claim
// the server closed or cut them.
func TestStopSummaryCountTrails(t *testing.T) {
	s := newStopper(cfg())
	s.begin(t0)
	s.observe(t0.Add(100*time.Millisecond), 20)
	s.observe(t0.Add(2*time.Second), 15)
	s.observe(t0.Add(3*time.Second), 9)
	got := s.summary(t0.Add(3005*time.Millisecond), "nginx exited with status 0")
	want := "stop took 3.005s (no escalation); 11 connections closed while draining, 9 open at the last count 5ms before the end, the count still changing (it trails the closes by a few ms): finished, or cut by the server as it exited; nginx exited with status 0"
	if got != want {
		t.Errorf("summary\n got %q\nwant %q", got, want)
	}
	// Killed with a count that stood still: the SIGKILL cut them.
	s = newStopper(cfg())
	s.begin(t0)
	s.observe(t0.Add(100*time.Millisecond), 4)
	s.escalate(t0.Add(time.Second), "received TERM")
	s.escalate(t0.Add(2*time.Second), "received TERM")
	got = s.summary(t0.Add(2100*time.Millisecond), "nginx killed by SIGKILL")
	if !strings.Contains(got, "4 still open at the last count 2s before the end, unchanged for 2s: cut by the SIGKILL") {
		t.Errorf("summary after SIGKILL: %q", got)
	}
}

func equalKinds(a, b []actKind) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestStopFailedCountIsNoStall: counts that fail after one succeeded
// leave a stale count behind; the stall timer must not run on it. It
// starts over from the next count that succeeds.
func TestStopFailedCountIsNoStall(t *testing.T) {
	c := cfg()
	c.StallTimeout = 2 * time.Second
	s := newStopper(c)
	s.begin(t0)
	s.observe(t0.Add(100*time.Millisecond), 5)
	var ts []timed
	for at := 200 * time.Millisecond; at <= 10*time.Second; at += 100 * time.Millisecond {
		for _, a := range s.countFailed(t0.Add(at)) {
			ts = append(ts, timed{at, a})
		}
	}
	if at, ok := firstAt(ts, actFast); ok {
		t.Fatalf("escalated at %s while every count failed", at)
	}
	// Counting again: 5 left and none closing is a stall after 2s.
	back := t0.Add(10 * time.Second)
	s.observe(back, 5)
	if acts := s.tick(back.Add(1900 * time.Millisecond)); has(acts, actFast) {
		t.Fatal("escalated before the stall timeout counted from the recovered count")
	}
	if acts := s.tick(back.Add(2 * time.Second)); !has(acts, actFast) {
		t.Fatal("no escalation 2s after the recovered count")
	}
}

// TestStopStatusNoGracefulStop: for a daemon without a graceful stop
// (memcached), the log and STATUS never say "graceful" or "draining".
func TestStopStatusNoGracefulStop(t *testing.T) {
	c := cfg()
	c.NoGraceful = true
	c.DrainDelay = 3 * time.Second
	s := newStopper(c)
	var texts []string
	for _, a := range s.begin(t0) {
		texts = append(texts, a.text)
	}
	texts = append(texts, s.statusText(t0.Add(time.Second)))
	for _, ta := range drive(s, 4*time.Second, nil) {
		texts = append(texts, ta.a.text)
	}
	texts = append(texts, statusOf(s.observe(t0.Add(5*time.Second), 6)))
	joined := strings.Join(texts, "\n")
	for _, want := range []string{"before the stop signal", "stop signal in 2s", "stopping (no graceful stop): 6 connections left"} {
		if !strings.Contains(joined, want) {
			t.Errorf("texts do not say %q:\n%s", want, joined)
		}
	}
	for _, bad := range []string{"graceful signal", "draining"} {
		if strings.Contains(joined, bad) {
			t.Errorf("texts say %q for a daemon without a graceful stop:\n%s", bad, joined)
		}
	}
}
