package haproxyconf

import (
	"slices"
	"testing"
)

// TestLines: the words of the lines haproxy acts on, with the environment
// each sees. The rules are haproxy 2.6's (configuration.txt 2.2-2.4); the
// supervisor's tests check the same against the real haproxy -c.
func TestLines(t *testing.T) {
	cfg := `global
    setenv PORT 8080
.if defined(FD_WEB)
frontend a
    bind "fd@${FD_WEB}"   # inherited
.else
frontend b
    bind 'x y' "127.0.0.1:${PORT}" ab\#c
.endif
    unsetenv PORT
    bind :${PORT}
`
	got := Lines(cfg, nil, nil)
	var words [][]string
	for _, l := range got {
		words = append(words, l.Words)
	}
	want := [][]string{{"global"}, {"frontend", "b"}, {"bind", "x y", "127.0.0.1:8080", "ab#c"}, {"bind", ":${PORT}"}}
	if !slices.EqualFunc(words, want, slices.Equal) {
		t.Fatalf("words %q, want %q", words, want)
	}
	if got[2].Num != 8 {
		t.Errorf("the bind line is line %d, want 8", got[2].Num)
	}
	// Outside double quotes a variable is left to the address's own
	// expansion, with the environment of its line: PORT is unset there.
	if e := Expand(got[3].Words[1], got[3].Env); e != ":" {
		t.Errorf("Expand(%q) with PORT unset = %q, want \":\"", got[3].Words[1], e)
	}
	if e := Expand("127.0.0.1:$PORT", got[2].Env); e != "127.0.0.1:8080" {
		t.Errorf("Expand with PORT=8080 = %q", e)
	}
	with := Lines(cfg, []string{"FD_WEB=3"}, nil)
	if len(with) < 3 || !slices.Equal(with[2].Words, []string{"bind", "fd@3"}) {
		t.Errorf("with FD_WEB=3: %+v, want the fd@3 bind", with)
	}
}

func TestWordsRefused(t *testing.T) {
	for _, line := range []string{`bind "127.0.0.1:80`, `bind '127.0.0.1:80`, `bind "${PORT"`} {
		if w, ok := Words(line, nil); ok {
			t.Errorf("Words(%q) = %q, ok; haproxy refuses the line", line, w)
		}
	}
}

// TestCondPrecedence: "&&" binds tighter than "||", as haproxy reads a
// .if line. Each row was measured with Debian 12's haproxy 2.6.12,
// `env -i A=1 haproxy -cc COND` (exit 0 true, 1 false); the first would
// be false read left to right.
func TestCondPrecedence(t *testing.T) {
	tests := []struct {
		cond string
		env  []string
		want bool
	}{
		{"defined(A) || defined(B) && defined(C)", []string{"A=1"}, true},
		{"defined(B) && defined(C) || defined(A)", []string{"A=1"}, true},
		{"defined(A) && defined(B) || defined(C)", []string{"A=1"}, false},
		{"defined(A) && (defined(B) || defined(C))", []string{"A=1", "C=1"}, true},
		{"!defined(A) || !!defined(B)", []string{"A=1"}, false},
	}
	for _, tt := range tests {
		if got := cond(tt.cond, tt.env, nil); got != tt.want {
			t.Errorf("cond(%q) with %q = %v, want %v", tt.cond, tt.env, got, tt.want)
		}
	}
}

// TestQuoteReadsBack: a quoted word reads back as itself through Words.
func TestQuoteReadsBack(t *testing.T) {
	for _, w := range []string{"fd@3", "web#1", "a b", "it's", `say "hi" $HOME \x`, ""} {
		got, ok := Words("bind "+Quote(w), nil)
		if !ok || len(got) != 2 || got[1] != w {
			t.Errorf("Words(bind %s) = %q, %v; want %q", Quote(w), got, ok, w)
		}
	}
}
