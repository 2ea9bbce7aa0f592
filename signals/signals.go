package signals

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// byName lists the standard Linux signals graceshim can name. Real-time
// signals are left out on purpose: no daemon in the presets uses them, and
// their numbers differ between libcs.
var byName = map[string]syscall.Signal{
	"HUP":    syscall.SIGHUP,
	"INT":    syscall.SIGINT,
	"QUIT":   syscall.SIGQUIT,
	"ILL":    syscall.SIGILL,
	"TRAP":   syscall.SIGTRAP,
	"ABRT":   syscall.SIGABRT,
	"BUS":    syscall.SIGBUS,
	"FPE":    syscall.SIGFPE,
	"KILL":   syscall.SIGKILL,
	"USR1":   syscall.SIGUSR1,
	"SEGV":   syscall.SIGSEGV,
	"USR2":   syscall.SIGUSR2,
	"PIPE":   syscall.SIGPIPE,
	"ALRM":   syscall.SIGALRM,
	"TERM":   syscall.SIGTERM,
	"STKFLT": syscall.SIGSTKFLT,
	"CHLD":   syscall.SIGCHLD,
	"CONT":   syscall.SIGCONT,
	"STOP":   syscall.SIGSTOP,
	"TSTP":   syscall.SIGTSTP,
	"TTIN":   syscall.SIGTTIN,
	"TTOU":   syscall.SIGTTOU,
	"URG":    syscall.SIGURG,
	"XCPU":   syscall.SIGXCPU,
	"XFSZ":   syscall.SIGXFSZ,
	"VTALRM": syscall.SIGVTALRM,
	"PROF":   syscall.SIGPROF,
	"WINCH":  syscall.SIGWINCH,
	"IO":     syscall.SIGIO,
	"PWR":    syscall.SIGPWR,
	"SYS":    syscall.SIGSYS,
}

// aliases are other names in common use for the same signals.
var aliases = map[string]syscall.Signal{
	"IOT":  syscall.SIGABRT,
	"POLL": syscall.SIGIO,
	"CLD":  syscall.SIGCHLD,
}

var byNumber = func() map[syscall.Signal]string {
	m := make(map[syscall.Signal]string, len(byName))
	for n, s := range byName {
		m[s] = n
	}
	return m
}()

// Parse reads a signal given as a name with or without the SIG prefix, in
// any case ("QUIT", "SIGQUIT", "quit"), or as a number ("3").
func Parse(s string) (syscall.Signal, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	if t == "" {
		return 0, fmt.Errorf("empty signal name")
	}
	if n, err := strconv.Atoi(t); err == nil {
		sig := syscall.Signal(n)
		if _, ok := byNumber[sig]; !ok {
			return 0, fmt.Errorf("unknown signal number %d", n)
		}
		return sig, nil
	}
	t = strings.TrimPrefix(t, "SIG")
	if sig, ok := byName[t]; ok {
		return sig, nil
	}
	if sig, ok := aliases[t]; ok {
		return sig, nil
	}
	return 0, fmt.Errorf("unknown signal %q", s)
}

// Name returns the signal's name without the SIG prefix ("QUIT"), or its
// number for a signal without a name here.
func Name(sig syscall.Signal) string {
	if n, ok := byNumber[sig]; ok {
		return n
	}
	return strconv.Itoa(int(sig))
}

// Map translates signals received by graceshim into the signals sent to the
// child. A signal missing from the map is passed on unchanged.
type Map map[syscall.Signal]syscall.Signal

// ParseMap reads a translation list such as "TERM:QUIT,INT:QUIT,HUP:HUP".
// Entries are separated by commas (or spaces); each is FROM:TO. KILL and STOP
// cannot be caught, so they cannot be translated from.
func ParseMap(s string) (Map, error) {
	m := Map{}
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
	for _, f := range fields {
		from, to, ok := strings.Cut(f, ":")
		if !ok {
			return nil, fmt.Errorf("signal map entry %q: want FROM:TO", f)
		}
		fs, err := Parse(from)
		if err != nil {
			return nil, fmt.Errorf("signal map entry %q: %w", f, err)
		}
		if fs == syscall.SIGKILL || fs == syscall.SIGSTOP {
			return nil, fmt.Errorf("signal map entry %q: %s cannot be caught, so it cannot be translated", f, Name(fs))
		}
		ts, err := Parse(to)
		if err != nil {
			return nil, fmt.Errorf("signal map entry %q: %w", f, err)
		}
		if prev, dup := m[fs]; dup && prev != ts {
			return nil, fmt.Errorf("signal map: %s is mapped twice (to %s and %s)", Name(fs), Name(prev), Name(ts))
		}
		m[fs] = ts
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("empty signal map %q", s)
	}
	return m, nil
}

// Translate returns what sig becomes when passed to the child.
func (m Map) Translate(sig syscall.Signal) syscall.Signal {
	if to, ok := m[sig]; ok {
		return to
	}
	return sig
}

// Merge returns a new map: m with every entry of over replacing its own.
func (m Map) Merge(over Map) Map {
	out := make(Map, len(m)+len(over))
	for k, v := range m {
		out[k] = v
	}
	for k, v := range over {
		out[k] = v
	}
	return out
}

// String renders the map in the form ParseMap reads, sorted by number.
func (m Map) String() string {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, int(k))
	}
	sort.Ints(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, Name(syscall.Signal(k))+":"+Name(m[syscall.Signal(k)]))
	}
	return strings.Join(parts, ",")
}

// Check returns an error naming the first entry of m, in signal order,
// whose FROM signal caught does not accept: a translation of a signal the
// program never receives would be accepted and then do nothing, and one
// the Go runtime turns into a crash (SYS) would end the program.
func (m Map) Check(caught func(syscall.Signal) bool) error {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, int(k))
	}
	sort.Ints(keys)
	for _, k := range keys {
		from := syscall.Signal(k)
		if !caught(from) {
			return fmt.Errorf("signal map entry %s:%s: %s is not a signal graceshim catches and passes on", Name(from), Name(m[from]), Name(from))
		}
	}
	return nil
}
