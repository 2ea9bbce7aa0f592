package supervisor

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Level is a log priority, numbered as syslog and sd-daemon(3) do.
type Level int

// Levels, as sd-daemon(3) prefixes.
const (
	LevelError Level = 3
	LevelWarn  Level = 4
	LevelInfo  Level = 6
	LevelDebug Level = 7
)

// ParseLevel reads debug, info, warn or error.
func ParseLevel(s string) (Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return LevelDebug, nil
	case "info", "":
		return LevelInfo, nil
	case "warn", "warning":
		return LevelWarn, nil
	case "error":
		return LevelError, nil
	}
	return 0, fmt.Errorf("unknown log level %q (want debug, info, warn or error)", s)
}

// Logger writes one line per event. When the output is the journal it
// prefixes each line with its sd-daemon priority ("<6>"), so the journal
// records the level; otherwise lines start with "graceshim: ".
type Logger struct {
	mu      sync.Mutex // guards writes to w, so lines never interleave
	w       io.Writer
	level   Level
	journal bool
}

// NewLogger logs to w at level and above.
func NewLogger(w io.Writer, level Level) *Logger {
	return &Logger{w: w, level: level, journal: isJournal(w)}
}

// isJournal reports whether w is the stream JOURNAL_STREAM names
// (systemd.exec(5): "DEVICE:INODE" of the stream connected to stderr).
func isJournal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	dev, ino, ok := strings.Cut(os.Getenv("JOURNAL_STREAM"), ":")
	if !ok {
		return false
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return strconv.FormatUint(st.Dev, 10) == dev && strconv.FormatUint(st.Ino, 10) == ino
}

func (l *Logger) logf(level Level, format string, a ...any) {
	if l == nil || level > l.level {
		return
	}
	msg := fmt.Sprintf(format, a...)
	msg = strings.ReplaceAll(msg, "\n", " ")
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.journal {
		fmt.Fprintf(l.w, "<%d>%s\n", level, msg)
		return
	}
	fmt.Fprintf(l.w, "graceshim: %s\n", msg)
}

// Debugf logs at debug level.
func (l *Logger) Debugf(format string, a ...any) { l.logf(LevelDebug, format, a...) }

// Infof logs at info level.
func (l *Logger) Infof(format string, a ...any) { l.logf(LevelInfo, format, a...) }

// Warnf logs at warning level.
func (l *Logger) Warnf(format string, a ...any) { l.logf(LevelWarn, format, a...) }

// Errorf logs at error level.
func (l *Logger) Errorf(format string, a ...any) { l.logf(LevelError, format, a...) }
