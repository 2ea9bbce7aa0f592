package supervisor

import (
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/graceshim/graceshim/signals"
	"github.com/graceshim/graceshim/supervisor/early"
)

// Catches reports whether graceshim catches sig and passes it on to the
// server, so that a translation from sig (--map) can take effect.
func Catches(sig syscall.Signal) bool {
	return slices.Contains(early.Forwarded, sig)
}

// ignoreTTYStops lets graceshim write to a terminal it does not own the
// foreground of. Called once the child runs (see early.TTYStops).
func ignoreTTYStops() {
	signal.Ignore(syscall.SIGTTIN, syscall.SIGTTOU)
}

// CatchEarly starts catching the signals Run handles at once, and keeps
// what arrives for the next Run. The early package does it as the program
// starts when the command line has "--"; main calls this for a run without
// it.
func CatchEarly() { early.Catch() }

// catchSignals returns the channel of caught signals for Run: the one
// caught early, or a new one. ignored lists the forwarded signals left
// ignored because the caller ignored them.
func catchSignals() (ch chan os.Signal, ignored []syscall.Signal) {
	if ch, ignored = early.Take(); ch != nil {
		return ch, ignored
	}
	early.Catch()
	return early.Take()
}

// pendingSignals takes the signals already queued on ch without waiting.
func pendingSignals(ch <-chan os.Signal) []syscall.Signal {
	var out []syscall.Signal
	for {
		select {
		case s := <-ch:
			out = append(out, s.(syscall.Signal))
		default:
			return out
		}
	}
}

// logStart says, once at start, what about the signals a user could not
// guess: the ones left ignored, and the bound of a stop whose graceful and
// fast signals are the same.
func (l *loop) logStart() {
	if len(l.ignored) > 0 {
		names := make([]string, len(l.ignored))
		for i, s := range l.ignored {
			names[i] = signals.Name(s)
		}
		l.opts.Log.Infof("%s ignored by graceshim's caller: left ignored, for %s too", strings.Join(names, ", "), l.name)
	}
	if l.graceful == l.fast {
		bound := "no bound"
		if l.opts.DrainTimeout > 0 {
			bound = l.opts.DrainTimeout.String()
		}
		if l.opts.Preset.NoGracefulStop {
			l.opts.Log.Infof("%s has no graceful stop: a stop sends %s once and SIGKILL follows after the drain timeout (%s)", l.name, signals.Name(l.graceful), bound)
		} else {
			l.opts.Log.Infof("graceful and fast signal are both %s: a stop sends it once and SIGKILL follows after the drain timeout (%s)", signals.Name(l.graceful), bound)
		}
	}
}
