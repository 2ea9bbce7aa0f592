package demo

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// renderer owns the demo's output. It is the supervisor's Notifier (it
// shows what systemd would be told instead of telling it) and the writer
// of the supervisor's log, and it counts the downloads.
//
// On a terminal one progress line is redrawn in place and every other line
// is printed above it; otherwise every event is a plain line.
type renderer struct {
	mu    sync.Mutex // guards every field below, and writes to out
	out   io.Writer
	tty   bool
	width int
	start time.Time
	now   func() time.Time

	phase     string // what the demo is doing, first word of the progress line
	inFlight  int
	completed int
	cut       int
	status    string // the last STATUS= sent
	extends   int    // EXTEND_TIMEOUT_USEC= sent so far
	drawn     bool   // a progress line is on the screen

	readyOnce sync.Once
	ready     chan struct{} // closed at the first READY=1
}

func newRenderer(out io.Writer, tty bool, now func() time.Time) *renderer {
	r := &renderer{out: out, tty: tty, width: 100, now: now, start: now(), ready: make(chan struct{}), phase: "starting"}
	if f, ok := out.(*os.File); ok && tty {
		if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil && ws.Col > 20 {
			r.width = int(ws.Col)
		}
	}
	return r
}

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// Notify shows one sd_notify message as systemd would receive it.
func (r *renderer) Notify(state string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, line := range strings.Split(state, "\n") {
		key, value, _ := strings.Cut(line, "=")
		switch key {
		case "READY":
			r.readyOnce.Do(func() { close(r.ready) })
		case "STATUS":
			r.status = value
			if r.tty && (strings.HasPrefix(value, "draining") || strings.HasPrefix(value, "fast stop")) {
				continue // the progress line shows it; a line per count would scroll it away
			}
		case "EXTEND_TIMEOUT_USEC":
			r.extends++
			if r.extends > 1 {
				continue // the same again every second; the progress line counts them
			}
			line += "  (the stop may take 5 s more; sent again every second while it lasts)"
		}
		r.printLocked("systemd <- %s", line)
	}
	r.drawLocked()
	return nil
}

// Write takes the supervisor's log lines.
func (r *renderer) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		r.printLocked("%s", line)
	}
	r.drawLocked()
	return len(p), nil
}

// Printf prints one line of the demo's own.
func (r *renderer) Printf(format string, a ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.printLocked(format, a...)
	r.drawLocked()
}

// setPhase names what the demo does now.
func (r *renderer) setPhase(phase string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.phase = phase
	r.drawLocked()
}

func (r *renderer) started() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.inFlight++
	r.drawLocked()
}

// finished records the end of a download and prints a line for it.
func (r *renderer) finished(d download) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if d.started {
		r.inFlight--
	}
	if d.complete() {
		r.completed++
		r.printLocked("download %d completed: %d KiB in %s", d.n, d.got/1024, round(d.took))
	} else {
		r.cut++
		r.printLocked("download %d LOST: %d of %d KiB after %s (%s)", d.n, d.got/1024, d.want/1024, round(d.took), d.errText())
	}
	r.drawLocked()
}

// tick redraws the progress line (its clock moves).
func (r *renderer) tick() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.drawLocked()
}

// done removes the progress line for good.
func (r *renderer) done() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.clearLocked()
	r.tty = false
}

func (r *renderer) stamp() string {
	return fmt.Sprintf("%5.1fs", r.now().Sub(r.start).Seconds())
}

func (r *renderer) printLocked(format string, a ...any) {
	r.clearLocked()
	fmt.Fprintf(r.out, "%s  %s\n", r.stamp(), fmt.Sprintf(format, a...))
}

func (r *renderer) clearLocked() {
	if r.drawn {
		fmt.Fprint(r.out, "\r\033[K")
		r.drawn = false
	}
}

// progress is the progress line: the demo's clock, then during the stop
// what systemd was told last (it counts the connections left), before it
// the downloads.
func (r *renderer) progress() string {
	if r.phase == "stopping" && r.status != "" && !strings.HasPrefix(r.status, "running") {
		s := fmt.Sprintf("%s  systemd <- STATUS=%s", r.stamp(), r.status)
		if r.extends > 0 {
			s += fmt.Sprintf(" (EXTEND_TIMEOUT_USEC x%d)", r.extends)
		}
		return s
	}
	return fmt.Sprintf("%s  %s: %d in flight, %d completed, %d lost", r.stamp(), r.phase, r.inFlight, r.completed, r.cut)
}

func (r *renderer) drawLocked() {
	if !r.tty {
		return
	}
	line := r.progress()
	if len(line) > r.width-1 {
		line = line[:r.width-1]
	}
	fmt.Fprint(r.out, "\r\033[K"+line)
	r.drawn = true
}

// round shortens a duration for people: milliseconds under a second,
// tenths of a second above.
func round(d time.Duration) string {
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(100 * time.Millisecond).String()
}
