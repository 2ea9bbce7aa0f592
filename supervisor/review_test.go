package supervisor

// Reproductions from the review of the inherited-sockets code (branch
// review). They fail on the code as it is.

import (
	"context"
	"testing"
)

// A listen directive that sits in a snippet included inside a server
// block (include snippets/listen.conf;) is missed: nginx -T dumps the
// snippet as a file of its own, at top level, and parseNginxListens
// takes only listens whose enclosing block is server. The server block
// then counts as one without listen (*:80), and an inherited socket on
// the snippet's address is refused (exit 7), although `graceshim unit
// --socket` generated that very socket from the same config.
func TestReviewNginxListenInIncludedSnippet(t *testing.T) {
	dump := `# configuration file /etc/nginx/nginx.conf:
events {}
http {
  server {
    include /etc/nginx/snippets/listen.conf;
    location / { return 200 "ok\n"; }
  }
}

# configuration file /etc/nginx/snippets/listen.conf:
listen 127.0.0.1:18443;
`
	got, err := parseNginxListens(context.Background(), dump, true)
	if err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for _, l := range got {
		for _, a := range l.addrs {
			addrs = append(addrs, a.String())
		}
	}
	if len(addrs) != 1 || addrs[0] != "127.0.0.1:18443" {
		t.Errorf("listens = %q, want [127.0.0.1:18443]", addrs)
	}
}

// nginx takes a quote as one only at the start of a word
// (ngx_conf_read_token); "return 200 don't-panic;" is valid (nginx -t:
// successful), but nginxStatements opens a quote in the middle of the
// word and fails with "unterminated quote", so graceshim refuses to start
// nginx on inherited sockets (exit 7).
func TestReviewNginxApostropheInWord(t *testing.T) {
	dump := `# configuration file /etc/nginx/nginx.conf:
events {}
http {
  server { listen 127.0.0.1:18449; location / { return 200 don't-panic; } }
}
`
	got, err := parseNginxListens(context.Background(), dump, true)
	if err != nil {
		t.Fatalf("parseNginxListens: %v (nginx -t accepts this config)", err)
	}
	if len(got) != 1 || got[0].addrs[0].String() != "127.0.0.1:18449" {
		t.Errorf("listens = %+v, want 127.0.0.1:18449", got)
	}
}
