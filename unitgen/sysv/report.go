package sysv

import (
	"fmt"
	"io"
	"strings"
)

// Summary writes one line per change ("FILE:LINE: what was wrong; what it
// does now"), then the notes; for a script that needed nothing it says so.
func Summary(w io.Writer, name string, r *Result) error {
	var b strings.Builder
	if !r.Changed() {
		fmt.Fprintf(&b, "%s: already right: stop waits for %s to go, bounded, before escalating (%s style, preset %s)\n", name, r.Daemon, r.Style, r.Preset.Name)
	}
	for _, c := range r.Changes {
		fmt.Fprintf(&b, "%s:%d: %s\n", name, c.Line, c.Summary)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "%s: note: %s\n", name, n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
