package supervisor

import (
	"io"
	"net/http"
	"strings"
	"testing"
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
