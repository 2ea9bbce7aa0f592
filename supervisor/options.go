package supervisor

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/graceshim/graceshim/signals"
	"github.com/graceshim/graceshim/supervisor/conns"
)

// Defaults for Options fields left zero.
const (
	// DefaultReadyTimeout bounds the wait for a listening socket (READY=1 is
	// sent anyway then) and for a pid file to name the master (an error).
	DefaultReadyTimeout = 30 * time.Second
	// DefaultDrainTimeout bounds a graceful stop before the fast signal.
	DefaultDrainTimeout = 5 * time.Minute
	// DefaultKillTimeout is the time between the fast signal and SIGKILL.
	DefaultKillTimeout = 10 * time.Second
	// DefaultExtendEvery is how often EXTEND_TIMEOUT_USEC is re-sent while a
	// stop goes on, and DefaultExtendBy how far ahead each one reaches: far
	// enough to survive a late poll, short enough that systemd takes over
	// soon when graceshim itself hangs.
	DefaultExtendEvery = time.Second
	DefaultExtendBy    = 5 * time.Second
)

// ErrSetup marks a failure of graceshim itself while supervising, as
// opposed to an exit of the child.
var ErrSetup = errors.New("supervisor setup failed")

// ReadyMode says when READY=1 is sent.
type ReadyMode int

const (
	// ReadyListen waits until the child's process tree has a listening
	// socket (or ReadyTimeout passes).
	ReadyListen ReadyMode = iota
	// ReadyExec is ready as soon as the child started.
	ReadyExec
	// ReadyNotify waits for the child's own READY=1 on graceshim's notify
	// socket (or ReadyTimeout); set by Run when the child gets one.
	ReadyNotify
)

// ParseReadyMode reads "listen" or "exec".
func ParseReadyMode(s string) (ReadyMode, error) {
	switch s {
	case "listen", "":
		return ReadyListen, nil
	case "exec":
		return ReadyExec, nil
	}
	return 0, fmt.Errorf("unknown ready mode %q (want listen or exec)", s)
}

// Options configure Run. Zero durations take the Default values, except
// StallTimeout and DrainDelay, whose zero means off.
type Options struct {
	// Argv is the command and its arguments.
	Argv []string
	// Env is the child's environment; nil means ours. systemd's
	// NOTIFY_SOCKET is always removed from it; with a relay the child gets
	// graceshim's own.
	Env []string
	// Notify says whether the child gets graceshim's notify socket:
	// NotifyAuto for presets with NativeNotify.
	Notify NotifyMode
	// Preset gives the graceful, fast and pre-stop signals.
	Preset signals.Preset
	// Map translates the signals graceshim receives; nil means Preset.Map().
	Map signals.Map
	// PIDFile, when set, names the master after the child daemonizes or
	// is upgraded.
	PIDFile string

	Ready        ReadyMode
	ReadyTimeout time.Duration
	// DrainTimeout bounds the graceful stop, counted from the graceful
	// signal; a negative value means no bound.
	DrainTimeout time.Duration
	StallTimeout time.Duration
	KillTimeout  time.Duration
	DrainDelay   time.Duration
	// Count says which connections a drain waits for.
	Count conns.Mode
	// HealthListen, when set, is the address of the health endpoint.
	HealthListen string
	// HealthCheck, when set, probes the child: READY=1 waits for its first
	// success, the systemd watchdog is fed only while it passes, and the
	// health endpoint answers 503 while it fails.
	HealthCheck *Probe

	Log *Logger
	// Notifier tells systemd; nil means sd_notify through NOTIFY_SOCKET
	// (and nothing at all without it).
	Notifier Notifier
	// Watcher learns listening sockets and counts connections; nil means
	// the netlink-based one.
	Watcher Watcher
}

func (o *Options) setDefaults() {
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = DefaultReadyTimeout
	}
	if o.DrainTimeout == 0 {
		o.DrainTimeout = DefaultDrainTimeout
	}
	if o.KillTimeout == 0 {
		o.KillTimeout = DefaultKillTimeout
	}
	if o.Preset.Graceful == 0 {
		o.Preset, _ = signals.ForCommand(o.Argv[0])
	}
	if o.Map == nil {
		o.Map = o.Preset.Map()
	}
	if o.Log == nil {
		o.Log = NewLogger(os.Stderr, LevelInfo)
	}
	if o.Notifier == nil {
		o.Notifier = SdNotifier{}
	}
}

// childEnv returns env without NOTIFY_SOCKET and the watchdog variables,
// which systemd meant for graceshim: under NotifyAccess=main systemd drops
// the child's datagrams anyway, and a child that speaks sd_notify itself
// talks to graceshim's relay instead (relay.prepare adds its own
// NOTIFY_SOCKET and the watchdog variables). Without a relay graceshim
// feeds the watchdog.
func childEnv(env []string) []string {
	if env == nil {
		env = os.Environ()
	}
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if strings.HasPrefix(kv, "NOTIFY_SOCKET=") || strings.HasPrefix(kv, "WATCHDOG_USEC=") || strings.HasPrefix(kv, "WATCHDOG_PID=") {
			continue
		}
		out = append(out, kv)
	}
	return out
}
