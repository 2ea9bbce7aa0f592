package supervisor

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Health checks of the child itself.
const (
	// probeEvery is how often the child is probed.
	probeEvery = time.Second
	// probeTimeout bounds one probe.
	probeTimeout = 2 * time.Second
)

// Probe checks that the child serves: an HTTP GET that must answer 2xx or
// 3xx, or a TCP connect. Its result decides READY=1 and whether the
// watchdog is fed.
type Probe struct {
	url  string // http:// or https:// URL, or ""
	addr string // host:port to connect to, or "" for the first listening socket
}

// ParseProbe reads --health-check: an http:// or https:// URL, "tcp:HOST:PORT",
// or "tcp" (connect to the first listening socket graceshim found).
func ParseProbe(s string) (*Probe, error) {
	switch {
	case s == "":
		return nil, nil
	case s == "tcp":
		return &Probe{}, nil
	case strings.HasPrefix(s, "tcp:"):
		addr := strings.TrimPrefix(s, "tcp:")
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("health check %q: %w", s, err)
		}
		return &Probe{addr: addr}, nil
	case strings.HasPrefix(s, "http://"), strings.HasPrefix(s, "https://"):
		if _, err := url.Parse(s); err != nil {
			return nil, fmt.Errorf("health check %q: %w", s, err)
		}
		return &Probe{url: s}, nil
	}
	return nil, fmt.Errorf("health check %q: want an http:// or https:// URL, tcp:HOST:PORT or tcp", s)
}

func (p *Probe) String() string {
	switch {
	case p.url != "":
		return p.url
	case p.addr != "":
		return "tcp:" + p.addr
	}
	return "tcp"
}

// check probes once. listening is the first listening endpoint known
// ("tcp4 0.0.0.0:80"), used by a bare "tcp" probe.
func (p *Probe) check(ctx context.Context, listening string) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	if p.url != "" {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
		if err != nil {
			return err
		}
		client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode >= 400 {
			return fmt.Errorf("%s answered %s", p.url, resp.Status)
		}
		return nil
	}
	addr := p.addr
	if addr == "" {
		addr = dialable(listening)
		if addr == "" {
			return fmt.Errorf("no listening socket found yet")
		}
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}

// dialable turns a listening endpoint ("tcp4 0.0.0.0:80") into an address
// to connect to on this host.
func dialable(endpoint string) string {
	_, hp, ok := strings.Cut(endpoint, " ")
	if !ok {
		hp = endpoint
	}
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return ""
	}
	switch host {
	case "0.0.0.0", "":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return net.JoinHostPort(host, port)
}

// probeResult is one probe's outcome.
type probeResult struct{ err error }

// probeLoop probes the child every probeEvery and reports each result. It
// learns the listening endpoint (for a bare "tcp" probe) from targets.
func probeLoop(ctx context.Context, p *Probe, targets <-chan string, out chan<- probeResult) {
	t := time.NewTicker(probeEvery)
	defer t.Stop()
	listening := ""
	for {
		select {
		case <-ctx.Done():
			return
		case listening = <-targets:
			continue
		case <-t.C:
		}
		err := p.check(ctx, listening)
		select {
		case out <- probeResult{err: err}:
		case <-ctx.Done():
			return
		}
	}
}

// needsTarget reports whether the probe connects to the first listening
// socket graceshim finds (a bare "tcp"); safe on a nil probe.
func (p *Probe) needsTarget() bool {
	return p != nil && p.url == "" && p.addr == ""
}
