package supervisor

import (
	"io"
	"strings"
	"testing"
	"time"
)

// TestConfigTestLimitSaid: a preset whose config test cannot see
// everything (uwsgi's: no app is loaded) has graceshim say so at start,
// and in the answer to a reload the test let through; a preset without
// that field is answered with no note.
func TestConfigTestLimitSaid(t *testing.T) {
	const limit = "the test reads the options but loads no application"
	for _, tc := range []struct {
		name  string
		limit string
	}{
		{"with a limit", limit},
		{"without", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := testBinaryAs("nginx")
			p.ConfigTest = func([]string) []string { return []string{"true"} }
			p.ConfigTestLimit = tc.limit
			said := make(chan struct{}, 1)
			ev, _, _ := start(t, "server:workers", func(o *Options) {
				o.Preset = p
				o.Log = NewLogger(io.MultiWriter(testWriter{t}, lineWatch{limit, said}), LevelDebug)
			})
			if tc.limit != "" {
				select {
				case <-said:
				case <-time.After(30 * time.Second):
					t.Fatalf("graceshim did not say %q at start", limit)
				}
			}
			ev.wait("worker")
			ev.wait("ready")
			r, err := control(t, "reload")
			if err != nil {
				t.Fatalf("reload: %v", err)
			}
			ev.wait("got HUP")
			if got := strings.Contains(r.Message, "note: "+limit); got != (tc.limit != "") {
				t.Errorf("reload answer %q: says the limit %v, want %v", r.Message, got, tc.limit != "")
			}
		})
	}
}
