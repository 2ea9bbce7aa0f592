package unitgen

import (
	"strings"
	"testing"

	"github.com/graceshim/graceshim/signals"
)

// TestNoGracefulStopWording: for a daemon without a graceful stop
// (memcached), neither the generated unit nor lint promises a graceful
// stop or a drain.
func TestNoGracefulStopWording(t *testing.T) {
	p, _ := signals.Lookup("memcached")
	if !p.NoGracefulStop {
		t.Fatal("the memcached preset has a graceful stop: the test is void")
	}
	got, err := Generate(Options{Argv: []string{"/usr/bin/memcached", "-p", "11211"}, Preset: p, SystemdVersion: 252})
	if err != nil {
		t.Fatal(err)
	}
	unit := string(got)
	for _, want := range []string{"Description=memcached under graceshim (no graceful stop)", "memcached has no graceful stop", "its stop signal (TERM)"} {
		if !strings.Contains(unwrap(unit), want) {
			t.Errorf("the unit does not say %q:\n%s", want, unit)
		}
	}
	for _, bad := range []string{"(graceful stop)", "graceful signal", "waits for live connections to drain"} {
		if strings.Contains(unwrap(unit), bad) {
			t.Errorf("the unit says %q for memcached:\n%s", bad, unit)
		}
	}

	// A daemon that has one keeps the promise.
	n, _ := signals.Lookup("nginx")
	got, err = Generate(Options{Argv: []string{"/usr/sbin/nginx", "-g", "daemon off;"}, Preset: n, SystemdVersion: 252})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(got), "(graceful stop)") {
		t.Errorf("the nginx unit lost its (graceful stop):\n%s", got)
	}

	// lint of memcached behind tini under KillMode=control-group.
	u, _, err := Parse("memcached.service", []byte("[Service]\nExecStart=/usr/bin/tini -- /usr/bin/memcached -p 11211\n"))
	if err != nil {
		t.Fatal(err)
	}
	var said []string
	for _, f := range Lint(u, LintOptions{SystemdVersion: 252}) {
		said = append(said, f.Problem+" "+f.Fix)
	}
	all := strings.Join(said, "\n")
	if !strings.Contains(all, "memcached has no graceful stop") {
		t.Errorf("lint does not say memcached has no graceful stop:\n%s", all)
	}
	if strings.Contains(all, "graceful stop is") || strings.Contains(all, "still drains") {
		t.Errorf("lint promises memcached a graceful stop:\n%s", all)
	}
}

// unwrap joins a generated unit's wrapped comment lines, so a phrase
// split over two lines is found.
func unwrap(s string) string {
	return strings.ReplaceAll(s, "\n#   ", " ")
}
