package supervisor

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/graceshim/graceshim/supervisor/conns"
)

// healthServer answers load balancers' health checks: 503 until the server
// is ready (READY=1), 200 while it runs, 503 from the moment a stop
// begins, so that a balancer sends nothing before the server listens and
// takes it out of its pool during the drain delay, before the graceful
// signal closes the listeners.
//
// At /metrics it serves graceshim's figures as Prometheus text (the text
// exposition format 0.0.4,
// https://prometheus.io/docs/instrumenting/exposition_formats/), written
// by hand: a handful of gauges and counters need no client library.
type healthServer struct {
	srv       *http.Server
	ln        net.Listener
	ready     atomic.Bool
	stopping  atomic.Bool
	unhealthy atomic.Bool

	mu      sync.Mutex  // guards snap
	snap    metricsSnap // the event loop's last figures
	reloads [2]atomic.Int64
}

// metricsSnap is what the event loop publishes for /metrics.
type metricsSnap struct {
	state       string // as Status.State
	stopping    bool
	drainBegan  time.Time // the graceful signal; zero before
	counted     bool      // counts holds a drain's count
	counts      conns.Counts
	closed      int
	escalations int
	reason      string
	// oldest are the oldest connections of the drain's last look, at
	// most metricsKeep: named by peer, a handful of series that exist
	// only during a drain.
	oldest []conns.Conn
}

// metricsKeep bounds the connections /metrics names.
const metricsKeep = 5

func startHealth(addr string) (*healthServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%w: cannot serve health checks on %s: %v", ErrBadOption, addr, err)
	}
	h := &healthServer{ln: ln}
	h.srv = &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = h.srv.Serve(ln) }()
	return h, nil
}

func (h *healthServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/metrics" {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		h.writeMetrics(w, time.Now())
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if h.stopping.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "stopping")
		return
	}
	if !h.ready.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "starting")
		return
	}
	if h.unhealthy.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "unhealthy")
		return
	}
	fmt.Fprintln(w, "ok")
}

// setStopping turns the answers to 503; safe on a nil server.
func (h *healthServer) setStopping() {
	if h != nil {
		h.stopping.Store(true)
	}
}

// setReady turns the answers to 200; safe on a nil server.
func (h *healthServer) setReady() {
	if h != nil {
		h.ready.Store(true)
	}
}

// setUnhealthy reflects the health check of the child; safe on a nil
// server.
func (h *healthServer) setUnhealthy(v bool) {
	if h != nil {
		h.unhealthy.Store(v)
	}
}

func (h *healthServer) addr() string { return h.ln.Addr().String() }

func (h *healthServer) Close() error { return h.srv.Close() }

// publish stores the event loop's figures; safe on a nil server.
func (h *healthServer) publish(m metricsSnap) {
	if h == nil {
		return
	}
	h.mu.Lock()
	h.snap = m
	h.mu.Unlock()
}

// countReload counts a reload's outcome; safe on a nil server.
func (h *healthServer) countReload(ok bool) {
	if h == nil {
		return
	}
	if ok {
		h.reloads[0].Add(1)
	} else {
		h.reloads[1].Add(1)
	}
}

// metricStates are the values of graceshim_state, in order.
var metricStates = []string{"starting", "serving", "reloading", "upgrading", "stopping", "draining", "fast-stopping", "killed"}

// writeMetrics writes the figures in the text exposition format: for
// each family a HELP and a TYPE line, then its samples.
func (h *healthServer) writeMetrics(w io.Writer, now time.Time) {
	h.mu.Lock()
	m := h.snap
	h.mu.Unlock()
	family := func(name, typ, help string) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}
	num := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	one := func(b bool) string { return map[bool]string{true: "1", false: "0"}[b] }

	family("graceshim_state", "gauge", "The supervisor's state: 1 for the current one.")
	for _, s := range metricStates {
		fmt.Fprintf(w, "graceshim_state{state=%q} %s\n", s, one(m.state == s))
	}
	family("graceshim_drain_connections", "gauge", "Connections the drain waits for, by TCP state (unix connections count as established); only once a drain counted.")
	if m.counted {
		for _, s := range []struct {
			name string
			n    int
		}{{"established", m.counts.Established}, {"close_wait", m.counts.CloseWait}, {"half_closed", m.counts.HalfClosed}, {"syn_sent", m.counts.SynSent}} {
			fmt.Fprintf(w, "graceshim_drain_connections{state=%q} %d\n", s.name, s.n)
		}
	}
	var began, took float64
	if !m.drainBegan.IsZero() {
		began = float64(m.drainBegan.UnixMilli()) / 1000
		took = now.Sub(m.drainBegan).Seconds()
	}
	family("graceshim_drain_oldest_connection_sent_bytes", "gauge", "Bytes sent and acknowledged on the oldest connections the drain waits for (at most 5, by peer), from the kernel's tcp_info.")
	for _, c := range m.oldest {
		if c.Info != nil && c.Info.HaveBytes {
			fmt.Fprintf(w, "graceshim_drain_oldest_connection_sent_bytes{peer=%q,local=%q} %d\n", c.Peer.String(), c.Local.String(), c.Info.BytesAcked)
		}
	}
	family("graceshim_drain_oldest_connection_received_bytes", "gauge", "Bytes received on the oldest connections the drain waits for.")
	for _, c := range m.oldest {
		if c.Info != nil && c.Info.HaveBytes {
			fmt.Fprintf(w, "graceshim_drain_oldest_connection_received_bytes{peer=%q,local=%q} %d\n", c.Peer.String(), c.Local.String(), c.Info.BytesReceived)
		}
	}
	family("graceshim_drain_oldest_connection_idle_seconds", "gauge", "Time since data last went either way on the oldest connections the drain waits for, at the drain's last look.")
	for _, c := range m.oldest {
		if c.Info != nil {
			fmt.Fprintf(w, "graceshim_drain_oldest_connection_idle_seconds{peer=%q,local=%q} %s\n", c.Peer.String(), c.Local.String(), num(c.Info.Idle().Seconds()))
		}
	}
	family("graceshim_drain_start_time_seconds", "gauge", "When the graceful signal was sent, as a Unix time; 0 before a drain.")
	fmt.Fprintf(w, "graceshim_drain_start_time_seconds %s\n", num(began))
	family("graceshim_drain_duration_seconds", "gauge", "How long the drain has run; 0 before a drain.")
	fmt.Fprintf(w, "graceshim_drain_duration_seconds %s\n", num(took))
	family("graceshim_drain_closed_connections_total", "counter", "Connections seen to close during the drain.")
	fmt.Fprintf(w, "graceshim_drain_closed_connections_total %d\n", m.closed)
	family("graceshim_stop_escalations_total", "counter", "Escalations of the stop: to the fast signal, then to SIGKILL.")
	fmt.Fprintf(w, "graceshim_stop_escalations_total %d\n", m.escalations)
	// graceshim ends with the stop, so the stop under way is the last one
	// a scrape can see: its outcome so far.
	family("graceshim_stop_outcome", "gauge", "The stop's outcome so far: 1 for the current one (none: no stop asked; graceful: no escalation; escalated).")
	outcome := "none"
	switch {
	case m.escalations > 0:
		outcome = "escalated"
	case m.stopping:
		outcome = "graceful"
	}
	for _, o := range []string{"none", "graceful", "escalated"} {
		fmt.Fprintf(w, "graceshim_stop_outcome{outcome=%q} %s\n", o, one(outcome == o))
	}
	family("graceshim_reloads_total", "counter", "Reloads asked over the control socket (graceshim reload), by outcome.")
	fmt.Fprintf(w, "graceshim_reloads_total{result=\"ok\"} %d\n", h.reloads[0].Load())
	fmt.Fprintf(w, "graceshim_reloads_total{result=\"refused\"} %d\n", h.reloads[1].Load())
}
