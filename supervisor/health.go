package supervisor

import (
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// healthServer answers load balancers' health checks: 503 until the server
// is ready (READY=1), 200 while it runs, 503 from the moment a stop
// begins, so that a balancer sends nothing before the server listens and
// takes it out of its pool during the drain delay, before the graceful
// signal closes the listeners.
type healthServer struct {
	srv       *http.Server
	ln        net.Listener
	ready     atomic.Bool
	stopping  atomic.Bool
	unhealthy atomic.Bool
}

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

func (h *healthServer) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
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
