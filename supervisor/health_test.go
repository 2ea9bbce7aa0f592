package supervisor

import (
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/graceshim/graceshim/supervisor/conns"
)

func TestHealthServerStates(t *testing.T) {
	h, err := startHealth("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	url := "http://" + h.addr() + "/"
	get := func() (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	steps := []struct {
		do       func()
		code     int
		body     string
		describe string
	}{
		{func() {}, 503, "starting", "before READY=1"},
		{h.setReady, 200, "ok", "ready"},
		{func() { h.setUnhealthy(true) }, 503, "unhealthy", "health check failing"},
		{func() { h.setUnhealthy(false) }, 200, "ok", "health check passing again"},
		{h.setStopping, 503, "stopping", "stop begun"},
		{func() { h.setUnhealthy(false) }, 503, "stopping", "a stop is final"},
	}
	for _, s := range steps {
		s.do()
		if code, body := get(); code != s.code || body != s.body {
			t.Errorf("%s: %d %q, want %d %q", s.describe, code, body, s.code, s.body)
		}
	}
}

// TestMetricsText: /metrics in each state is valid text exposition
// format, as Prometheus's own promtool checks it (Debian's prometheus
// package), with the figures of a drain that escalated.
func TestMetricsText(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("needs promtool (Debian package prometheus), not installed")
	}
	h, err := startHealth("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	began := time.Now().Add(-3 * time.Second)
	h.countReload(true)
	h.countReload(false)
	h.countReload(true)
	for _, tt := range []struct {
		name string
		snap metricsSnap
		want []string
	}{
		{"serving", metricsSnap{state: "serving"}, []string{
			`graceshim_state{state="serving"} 1`, `graceshim_stop_outcome{outcome="none"} 1`,
			"graceshim_drain_start_time_seconds 0\n", `graceshim_reloads_total{result="ok"} 2`, `graceshim_reloads_total{result="refused"} 1`,
		}},
		{"escalated", metricsSnap{state: "killed", stopping: true, drainBegan: began, counted: true,
			counts: conns.Counts{Established: 3, CloseWait: 1}, closed: 17, escalations: 2,
			oldest: []conns.Conn{{Peer: netip.MustParseAddrPort("[2001:db8::7]:40000"), Local: netip.MustParseAddrPort("[2001:db8::1]:443"),
				Info: &conns.TCPInfo{HaveBytes: true, BytesAcked: 12345, BytesReceived: 85, LastDataSent: 1500 * time.Millisecond, LastDataRecv: 3 * time.Second}}}}, []string{
			`graceshim_drain_oldest_connection_sent_bytes{peer="[2001:db8::7]:40000",local="[2001:db8::1]:443"} 12345`,
			`graceshim_drain_oldest_connection_received_bytes{peer="[2001:db8::7]:40000",local="[2001:db8::1]:443"} 85`,
			`graceshim_drain_oldest_connection_idle_seconds{peer="[2001:db8::7]:40000",local="[2001:db8::1]:443"} 1.5`,
			`graceshim_state{state="killed"} 1`, `graceshim_drain_connections{state="established"} 3`,
			`graceshim_drain_connections{state="close_wait"} 1`, "graceshim_drain_closed_connections_total 17",
			"graceshim_stop_escalations_total 2", `graceshim_stop_outcome{outcome="escalated"} 1`,
			fmt.Sprintf("graceshim_drain_start_time_seconds %s\n", strconv.FormatFloat(float64(began.UnixMilli())/1000, 'f', -1, 64)),
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h.publish(tt.snap)
			resp, err := http.Get("http://" + h.addr() + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/plain; version=0.0.4; charset=utf-8" {
				t.Fatalf("/metrics: %d %s", resp.StatusCode, ct)
			}
			for _, w := range tt.want {
				if !strings.Contains(string(body), w) {
					t.Errorf("no %q in:\n%s", w, body)
				}
			}
			cmd := exec.Command(promtool, "check", "metrics")
			cmd.Stdin = strings.NewReader(string(body))
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("promtool check metrics: %v\n%s\n%s", err, out, body)
			}
		})
	}
	// The health answer at / is unchanged by the metrics.
	resp, err := http.Get("http://" + h.addr() + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || strings.TrimSpace(string(b)) != "starting" {
		t.Errorf("/: %d %q, want 503 starting", resp.StatusCode, b)
	}
}
