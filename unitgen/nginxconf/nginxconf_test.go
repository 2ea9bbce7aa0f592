package nginxconf

import (
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

func TestTokens(t *testing.T) {
	tests := []struct{ in, want string }{
		{`return 200 don't-panic;`, `return|200|don't-panic|;`},
		{`return 200 'a "b" c';`, `return|200|a "b" c|;`},
		{"listen 80; # listen 81;\nserver_name a\\;b;", `listen|80|;|server_name|a;b|;`},
		{`http{server{listen 80;}}`, `http|{|server|{|listen|80|;|}|}`},
	}
	for _, tt := range tests {
		toks, err := Tokens(tt.in)
		if err != nil {
			t.Errorf("Tokens(%q): %v", tt.in, err)
			continue
		}
		var got []string
		for _, tok := range toks {
			got = append(got, tok.S)
		}
		if strings.Join(got, "|") != tt.want {
			t.Errorf("Tokens(%q) = %q, want %q", tt.in, strings.Join(got, "|"), tt.want)
		}
	}
	if _, err := Tokens(`listen "80;`); err == nil {
		t.Error("an unterminated quote: no error")
	}
}

func TestWalk(t *testing.T) {
	files := map[string]string{
		"/c/nginx.conf":  "http { server { include inc/*.conf; } }",
		"/c/inc/b.conf":  "listen 2;",
		"/c/inc/a.conf":  "listen 1;",
		"/c/bad.conf":    "http { server { }",
		"/c/extra.conf":  "http { } }",
		"/c/loop.conf":   "include loop.conf;",
		"/c/absent.conf": "include nothere.conf;",
	}
	src := Files{
		Read: func(p string) ([]byte, error) {
			s, ok := files[p]
			if !ok {
				return nil, fs.ErrNotExist
			}
			return []byte(s), nil
		},
		Glob: func(pattern string) ([]string, error) {
			var out []string
			for name := range files {
				if ok, _ := filepath.Match(pattern, name); ok {
					out = append(out, name)
				}
			}
			return out, nil
		},
		Prefix: "/c",
	}
	var got []string
	err := Walk(src, "/c/nginx.conf", func(ev Event) error {
		if ev.Kind == Directive {
			got = append(got, strings.Join(ev.Stack, ">")+" "+ev.Words[0].S+" "+ev.Words[1].S+" "+ev.File)
		}
		return nil
	})
	want := "http>server listen 1 /c/inc/a.conf, http>server listen 2 /c/inc/b.conf"
	if err != nil || strings.Join(got, ", ") != want {
		t.Errorf("Walk = %q, %v; want %q", got, err, want)
	}
	for _, bad := range []string{"/c/bad.conf", "/c/extra.conf", "/c/loop.conf", "/c/absent.conf", "/c/missing.conf"} {
		if err := Walk(src, bad, func(Event) error { return nil }); err == nil {
			t.Errorf("Walk(%s): no error", bad)
		}
	}
}
