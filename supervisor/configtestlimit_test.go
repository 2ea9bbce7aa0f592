package supervisor

import (
	"io"
	"strings"
	"testing"
	"time"
)

// TestConfigTestLimitSaid: a preset whose config test cannot see
// everything (uwsgi's: no app is loaded) has graceshim say so at start,
// and in the answer to a reload the test let through.
func TestConfigTestLimitSaid(t *testing.T) {
	const limit = "the test reads the options but loads no application"
	p := testBinaryAs("nginx")
	p.ConfigTest = func([]string) []string { return []string{"true"} }
	p.ConfigTestLimit = limit
	said := make(chan struct{}, 1)
	ev, _, _ := start(t, "server:workers", func(o *Options) {
		o.Preset = p
		o.Log = NewLogger(io.MultiWriter(testWriter{t}, lineWatch{limit, said}), LevelDebug)
	})
	select {
	case <-said:
	case <-time.After(30 * time.Second):
		t.Fatalf("graceshim did not say %q at start", limit)
	}
	ev.wait("worker")
	ev.wait("ready")
	r, err := control(t, "reload")
	if err != nil {
		t.Fatalf("reload: %v", err)
	}
	ev.wait("got HUP")
	if !strings.Contains(r.Message, "note: "+limit) {
		t.Errorf("reload answer %q does not say %q", r.Message, limit)
	}
}

// TestConfigTestLimitNotSaidWithoutTest: a preset without that field is
// answered as before (no note).
func TestConfigTestLimitNotSaidWithoutTest(t *testing.T) {
	p := testBinaryAs("nginx")
	p.ConfigTest = func([]string) []string { return []string{"true"} }
	ev, _, _ := start(t, "server:workers", func(o *Options) { o.Preset = p })
	ev.wait("worker")
	ev.wait("ready")
	r, err := control(t, "reload")
	if err != nil {
		t.Fatalf("reload: %v", err)
	}
	ev.wait("got HUP")
	if strings.Contains(r.Message, "note:") {
		t.Errorf("reload answer %q has a note, though the preset has no ConfigTestLimit", r.Message)
	}
}
