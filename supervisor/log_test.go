package supervisor

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestLoggerJournalPrefixes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stderr")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, stream string
		want         string
	}{
		{"journal", fmt.Sprintf("%d:%d", st.Dev, st.Ino), "<6>draining\n<4>stalled\n<3>failed\n"},
		{"another stream", fmt.Sprintf("%d:%d", st.Dev, st.Ino+1), "graceshim: draining\ngraceshim: stalled\ngraceshim: failed\n"},
		{"no journal", "", "graceshim: draining\ngraceshim: stalled\ngraceshim: failed\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("JOURNAL_STREAM", tt.stream)
			f.Truncate(0)
			f.Seek(0, 0)
			l := NewLogger(f, LevelInfo)
			l.Debugf("not shown at info")
			l.Infof("draining")
			l.Warnf("stalled")
			l.Errorf("failed")
			got, _ := os.ReadFile(path)
			if string(got) != tt.want {
				t.Errorf("logged %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseLevel(t *testing.T) {
	for in, want := range map[string]Level{"debug": LevelDebug, "INFO": LevelInfo, "warn": LevelWarn, "warning": LevelWarn, "error": LevelError} {
		if got, err := ParseLevel(in); err != nil || got != want {
			t.Errorf("ParseLevel(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseLevel("loud"); err == nil || !strings.Contains(err.Error(), "loud") {
		t.Errorf("ParseLevel(loud) = %v", err)
	}
}
