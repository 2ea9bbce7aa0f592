package demo

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestPickAddrSkipsTakenPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := l.Addr().(*net.TCPAddr).Port
	got, err := pickAddr(taken)
	if err != nil {
		t.Fatal(err)
	}
	if got.Port == taken || !got.IP.IsLoopback() {
		t.Fatalf("pickAddr(%d) = %s, want another loopback port", taken, got)
	}
}

func TestHandlerDownload(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	tests := []struct {
		query  string
		status int
		size   int
	}{
		{"ms=0&kib=3", http.StatusOK, 3 * 1024},
		{"ms=50&kib=2", http.StatusOK, 2 * 1024},
		{"ms=-1&kib=2", http.StatusBadRequest, -1},
		{"ms=1000000&kib=2", http.StatusBadRequest, -1},
		{"ms=10&kib=0", http.StatusBadRequest, -1},
		{"ms=x&kib=1", http.StatusBadRequest, -1},
	}
	for _, tc := range tests {
		resp, err := http.Get(srv.URL + "/download?" + tc.query)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != tc.status {
			t.Errorf("%s: status %d (%v), want %d", tc.query, resp.StatusCode, err, tc.status)
			continue
		}
		if tc.size >= 0 && (len(body) != tc.size || resp.ContentLength != int64(tc.size)) {
			t.Errorf("%s: %d bytes, Content-Length %d, want %d", tc.query, len(body), resp.ContentLength, tc.size)
		}
	}
}

func TestDownloadComplete(t *testing.T) {
	tests := []struct {
		d    download
		want bool
	}{
		{download{started: true, got: 10, want: 10}, true},
		{download{started: true, got: 9, want: 10, err: io.ErrUnexpectedEOF}, false},
		{download{started: true, got: 10, want: 10, err: errors.New("x")}, false},
		{download{started: true, got: 0, want: -1}, false},
	}
	for _, tc := range tests {
		if got := tc.d.complete(); got != tc.want {
			t.Errorf("%+v.complete() = %v, want %v", tc.d, got, tc.want)
		}
	}
}

// clock is a fake time source for the renderer.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestRendererPlain(t *testing.T) {
	var out bytes.Buffer
	c := &clock{t: time.Unix(1000, 0)}
	r := newRenderer(&out, false, c.now)
	c.t = c.t.Add(1500 * time.Millisecond)
	r.Notify("READY=1\nSTATUS=running: x (pid 1)")
	r.Notify("STOPPING=1")
	for i := 0; i < 3; i++ {
		r.Notify("EXTEND_TIMEOUT_USEC=5000000")
	}
	r.Notify("STATUS=draining: 2 connections left (0 closed), 0s elapsed")
	r.Write([]byte("graceshim: one\n"))
	r.started()
	r.finished(download{n: 1, started: true, got: 2048, want: 2048, took: 2500 * time.Millisecond})
	r.started()
	r.finished(download{n: 2, started: true, got: 1024, want: 2048, took: 40 * time.Millisecond, err: io.ErrUnexpectedEOF})
	want := strings.Join([]string{
		"  1.5s  systemd <- READY=1",
		"  1.5s  systemd <- STATUS=running: x (pid 1)",
		"  1.5s  systemd <- STOPPING=1",
		"  1.5s  systemd <- EXTEND_TIMEOUT_USEC=5000000  (the stop may take 5 s more; sent again every second while it lasts)",
		"  1.5s  systemd <- STATUS=draining: 2 connections left (0 closed), 0s elapsed",
		"  1.5s  graceshim: one",
		"  1.5s  download 1 completed: 2 KiB in 2.5s",
		"  1.5s  download 2 LOST: 1 of 2 KiB after 40ms (the server closed the connection mid-download)",
	}, "\n") + "\n"
	if got := out.String(); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	select {
	case <-r.ready:
	default:
		t.Errorf("READY=1 did not mark the server ready")
	}
}

func TestRendererTerminal(t *testing.T) {
	var out bytes.Buffer
	c := &clock{t: time.Unix(1000, 0)}
	r := newRenderer(&out, true, c.now)
	r.width = 60
	r.setPhase("stopping")
	r.Notify("STATUS=draining: 10 connections left (0 closed), 0s elapsed")
	c.t = c.t.Add(2 * time.Second)
	r.Notify("STATUS=draining: 9 connections left (1 closed), 2s elapsed")
	r.done()
	got := out.String()
	if strings.Contains(got, "\n") {
		t.Errorf("drain STATUS lines printed as lines on a terminal:\n%q", got)
	}
	last := got[strings.LastIndex(got[:len(got)-len("\r\x1b[K")], "\r\x1b[K")+len("\r\x1b[K"):]
	last = strings.TrimSuffix(last, "\r\x1b[K")
	if want := "  2.0s  systemd <- STATUS=draining: 9 connections left (1 c"; last != want {
		t.Errorf("progress line %q, want %q (cut to the width)", last, want)
	}
	if !strings.HasSuffix(got, "\r\x1b[K") {
		t.Errorf("done did not clear the progress line: %q", got)
	}
}

func TestRound(t *testing.T) {
	for d, want := range map[time.Duration]string{
		12*time.Millisecond + 400*time.Microsecond: "12ms",
		4230 * time.Millisecond:                    "4.2s",
		time.Minute + 260*time.Millisecond:         "1m0.3s",
	} {
		if got := round(d); got != want {
			t.Errorf("round(%s) = %s, want %s", d, got, want)
		}
	}
}
