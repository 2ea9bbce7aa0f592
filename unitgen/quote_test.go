package unitgen

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestQuoteArg(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"nginx", "nginx"},
		{"/usr/sbin/nginx", "/usr/sbin/nginx"},
		{"--drain-timeout=5m", "--drain-timeout=5m"},
		{"", `""`},
		{"two words", `"two words"`},
		{"daemon off;", `"daemon off;"`},
		{";", `";"`},
		{`\;`, `"\\;"`},
		{`a"b`, `"a\"b"`},
		{"it's", `"it's"`},
		{"$HOME", `"$$HOME"`},
		{"${X}", `"$${X}"`},
		{"100%", `"100%%"`},
		{"%n", `"%%n"`},
		{`c:\dir`, `"c:\\dir"`},
		{"a\tb", `"a\tb"`},
		{"ünï", `"ünï"`},
	}
	for _, tc := range tests {
		got, err := QuoteArg(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("QuoteArg(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestQuoteArgRefuses(t *testing.T) {
	for _, in := range []string{"a\nb", "\r", "nul\x00", "bell\a", "\xff\xfe"} {
		if got, err := QuoteArg(in); !errors.Is(err, ErrUnquotable) {
			t.Errorf("QuoteArg(%q) = %q, %v; want ErrUnquotable", in, got, err)
		}
	}
	_, err := JoinExec([]string{"/bin/echo", "ok", "line\nbreak"})
	if err == nil || !strings.Contains(err.Error(), "argument 2") || !strings.Contains(err.Error(), "newline") {
		t.Errorf("JoinExec with a newline: %v; want an error naming argument 2 and the newline", err)
	}
	if _, err := Generate(Options{Argv: []string{"/bin/echo", "a\nb"}, SystemdVersion: 252}); err == nil {
		t.Error("Generate with a newline in an argument: no error")
	}
}

func TestSplitExec(t *testing.T) {
	tests := []struct {
		in     string
		prefix string
		argv   []string
		vars   bool
	}{
		{`/usr/sbin/nginx -g 'daemon on; master_process on;'`, "", []string{"/usr/sbin/nginx", "-g", "daemon on; master_process on;"}, false},
		{`-/sbin/start-stop-daemon --quiet --stop`, "-", []string{"/sbin/start-stop-daemon", "--quiet", "--stop"}, false},
		{`/bin/sh -c "/bin/kill -s HUP $(/bin/cat /run/x.pid)"`, "", []string{"/bin/sh", "-c", "/bin/kill -s HUP $(/bin/cat /run/x.pid)"}, false},
		{`/usr/sbin/haproxy -Ws -f $CONFIG`, "", []string{"/usr/sbin/haproxy", "-Ws", "-f", "$CONFIG"}, true},
		{`/bin/echo \; "a\sb" \x41 '\"'`, "", []string{"/bin/echo", ";", "a b", "A", `"`}, false},
		{`/bin/echo "$$x" "100%%"`, "", []string{"/bin/echo", "$x", "100%"}, false},
	}
	for _, tc := range tests {
		got, err := SplitExec(tc.in)
		if err != nil {
			t.Errorf("SplitExec(%q): %v", tc.in, err)
			continue
		}
		vars := false
		for _, w := range got.Words {
			vars = vars || w.Variable
		}
		if got.Prefix != tc.prefix || strings.Join(got.Argv(), "\x00") != strings.Join(tc.argv, "\x00") || vars != tc.vars {
			t.Errorf("SplitExec(%q) = %q %q vars=%v; want %q %q vars=%v", tc.in, got.Prefix, got.Argv(), vars, tc.prefix, tc.argv, tc.vars)
		}
	}
	for _, bad := range []string{`/bin/echo "open`, `/bin/echo a ; /bin/echo b`, `/bin/echo \q`, `/bin/echo end\`} {
		if _, err := SplitExec(bad); err == nil {
			t.Errorf("SplitExec(%q): no error", bad)
		}
	}
}

// FuzzQuoteArg: whatever argv graceshim accepts must come back byte for
// byte from systemd's command line rules (SplitExec follows
// config_parse_exec; the e2e test TestE2EUnitArgv checks the same against
// the real systemd), and what it refuses must be what a unit cannot carry.
// The seed corpus runs with every go test.
func FuzzQuoteArg(f *testing.F) {
	for _, s := range []string{"", "plain", "two words", `"`, `'`, `\`, `\;`, ";", "$", "$$", "${HOME}", "$HOME", "%", "%%", "%n",
		"daemon off; error_log stderr;", "tab\there", "a\nb", "ünï", "\xff", "\\\"'$%;# x", "-", "@x", "  lead", "trail  ", "#hash", "=eq"} {
		f.Add(s, "second arg")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		argv := []string{"/usr/local/bin/graceshim", "--", "/bin/echo", a, b}
		line, err := JoinExec(argv)
		refusable := func(s string) bool {
			if !utf8.ValidString(s) {
				return true
			}
			for _, r := range s {
				if r != '\t' && (r < 0x20 || r == 0x7f) {
					return true
				}
			}
			return false
		}
		if err != nil {
			if !errors.Is(err, ErrUnquotable) || (!refusable(a) && !refusable(b)) {
				t.Fatalf("JoinExec(%q) refused: %v", argv, err)
			}
			return
		}
		if refusable(a) || refusable(b) {
			t.Fatalf("JoinExec(%q) accepted %q", argv, line)
		}
		if strings.ContainsAny(line, "\n\r") {
			t.Fatalf("line break in %q", line)
		}
		if strings.HasSuffix(line, `\`) {
			t.Fatalf("%q ends in a backslash: a unit file reads it as a continuation", line)
		}
		got, err := SplitExec(line)
		if err != nil {
			t.Fatalf("SplitExec(%q): %v", line, err)
		}
		if got.Prefix != "" {
			t.Fatalf("prefix %q in %q", got.Prefix, line)
		}
		for i, w := range got.Words {
			if w.Specifier || w.Variable {
				t.Fatalf("word %d of %q is expanded by systemd: %+v", i, line, w)
			}
		}
		if back := got.Argv(); len(back) != len(argv) || !bytes.Equal([]byte(strings.Join(back, "\x00")), []byte(strings.Join(argv, "\x00"))) {
			t.Fatalf("round trip of %q through %q gave %q", argv, line, back)
		}
	})
}

func TestStopTimeout(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want time.Duration
		ok   bool
	}{
		{"extend", Options{SystemdVersion: 252}, 5*time.Minute + 10*time.Second + StopMargin, true},
		{"extend with delay", Options{SystemdVersion: 252, DrainTimeout: time.Minute, KillTimeout: 5 * time.Second, DrainDelay: 10 * time.Second}, 75*time.Second + StopMargin, true},
		{"extend no bound", Options{SystemdVersion: 236, DrainTimeout: -1}, ReactTimeout, true},
		{"old defaults", Options{SystemdVersion: 219}, 5*time.Minute + 10*time.Second + StopMargin, true},
		{"old with delay", Options{SystemdVersion: 235, DrainTimeout: time.Minute, KillTimeout: 5 * time.Second, DrainDelay: 10 * time.Second}, 75*time.Second + StopMargin, true},
		{"old no bound", Options{SystemdVersion: 219, DrainTimeout: -1}, 0, false},
	}
	for _, tc := range tests {
		got, why, ok := tc.o.StopTimeout()
		if got != tc.want || ok != tc.ok || why == "" {
			t.Errorf("%s: StopTimeout() = %s, %v (%q); want %s, %v", tc.name, got, ok, why, tc.want, tc.ok)
		}
	}
}

func TestFormatSpan(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0", 30 * time.Second: "30s", 90 * time.Second: "1min 30s", 325 * time.Second: "5min 25s",
		time.Hour + time.Second: "1h 1s", 1500 * time.Millisecond: "2s",
	} {
		got := formatSpan(d)
		back, _, ok := parseSpan(got)
		if got != want || !ok || (d > 0 && back < d) {
			t.Errorf("formatSpan(%s) = %q (reads back as %s, %v); want %q", d, got, back, ok, want)
		}
	}
}
