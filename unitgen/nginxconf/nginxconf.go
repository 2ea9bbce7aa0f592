// Package nginxconf reads an nginx configuration the way nginx does: its
// tokens (src/core/ngx_conf_file.c ngx_conf_read_token) and its
// includes, in the order nginx reads them (ngx_conf_include: a glob,
// relative to the directory of the main file, matches in sorted order).
// The unit generator walks the files on disk (ListenStream= for
// --socket); the supervisor walks nginx -T's dump of the same files
// (the inherited sockets against the listen directives). One walker
// for both, so that they agree on what nginx listens on.
package nginxconf

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
)

// Token is a word, or one of ';', '{' and '}'.
type Token struct {
	S    string
	Line int
	// Punct is ';', '{' or '}' for those, 0 for a word.
	Punct byte
}

// Tokens splits a configuration file as ngx_conf_read_token does: words
// separated by blanks, ';', '{' and '}'; '#' comments; a quote opens a
// quoted word only at the start of a word ("return 200 don't;" is the
// words return, 200 and don't: ngx_conf_read_token looks for quotes only
// when it is not inside a word, and a quoted word must be followed by a
// blank, ';' or '{').
func Tokens(data string) ([]Token, error) {
	var out []Token
	line := 1
	for i := 0; i < len(data); {
		c := data[i]
		switch {
		case c == '\n':
			line++
			i++
		case c == ' ' || c == '\t' || c == '\r':
			i++
		case c == '#':
			for i < len(data) && data[i] != '\n' {
				i++
			}
		case c == ';' || c == '{' || c == '}':
			out = append(out, Token{S: string(c), Line: line, Punct: c})
			i++
		case c == '"' || c == '\'':
			l := line
			i++
			var b strings.Builder
			for i < len(data) && data[i] != c {
				if data[i] == '\\' && i+1 < len(data) {
					i++
				}
				if data[i] == '\n' {
					line++
				}
				b.WriteByte(data[i])
				i++
			}
			if i >= len(data) {
				return nil, fmt.Errorf("line %d: unterminated quote", l)
			}
			i++
			out = append(out, Token{S: b.String(), Line: l})
		default:
			var b strings.Builder
			for i < len(data) && !strings.ContainsRune(" \t\r\n;{}", rune(data[i])) {
				if data[i] == '\\' && i+1 < len(data) {
					// ngx_conf_read_token: a backslash takes the next
					// character as it is.
					i++
				}
				b.WriteByte(data[i])
				i++
			}
			out = append(out, Token{S: b.String(), Line: line})
		}
	}
	return out, nil
}

// Kind says what an Event is.
type Kind int

const (
	// Directive is a simple directive ("listen 80;").
	Directive Kind = iota
	// Open is a block's opening ("server {").
	Open
	// Close is a block's end ("}").
	Close
)

// Event is one step of the walk.
type Event struct {
	Kind Kind
	// Words are the directive's or the block's name and arguments; for
	// Close, the block's name alone.
	Words []Token
	File  string
	// Stack names the blocks around the event, outermost first, across
	// includes (for Open, without the block it opens; for Close, without
	// the block it closes).
	Stack []string
}

// Files is where the walk reads files.
type Files struct {
	// Read returns a file's contents.
	Read func(path string) ([]byte, error)
	// Glob returns the files a pattern names (filepath.Glob's rules).
	Glob func(pattern string) ([]string, error)
	// Prefix is the directory relative includes start from: the main
	// file's.
	Prefix string
}

// MaxDepth bounds how deep includes may nest.
const MaxDepth = 16

// Walk reads the main file, and every file an include names where it is
// included, and calls visit for each directive and block. An include is
// followed, not passed to visit. Errors: a file that cannot be read, an
// include of a file that is not there, includes nested too deep, or
// what visit returns.
func Walk(files Files, main string, visit func(Event) error) error {
	w := &walk{files: files, visit: visit}
	return w.file(main, 0)
}

type walk struct {
	files Files
	visit func(Event) error
	stack []string
}

func (w *walk) file(path string, depth int) error {
	if depth > MaxDepth {
		return fmt.Errorf("%s: includes nested more than %d deep", path, MaxDepth)
	}
	data, err := w.files.Read(path)
	if err != nil {
		return fmt.Errorf("cannot read %s: %w", path, err)
	}
	tokens, err := Tokens(string(data))
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	// As nginx, each file is balanced on its own (ngx_conf_parse:
	// "unexpected }", "unexpected end of file").
	base := len(w.stack)
	var words []Token
	for _, t := range tokens {
		switch t.Punct {
		case 0:
			words = append(words, t)
		case '{':
			if len(words) == 0 {
				return fmt.Errorf("%s:%d: a block without a name", path, t.Line)
			}
			if err := w.visit(Event{Kind: Open, Words: words, File: path, Stack: w.stack}); err != nil {
				return err
			}
			w.stack = append(w.stack[:len(w.stack):len(w.stack)], words[0].S)
			words = nil
		case '}':
			n := len(w.stack)
			if n == base || len(words) > 0 {
				return fmt.Errorf("%s:%d: unexpected \"}\"", path, t.Line)
			}
			name := w.stack[n-1]
			w.stack = w.stack[: n-1 : n-1]
			if err := w.visit(Event{Kind: Close, Words: []Token{{S: name, Line: t.Line}}, File: path, Stack: w.stack}); err != nil {
				return err
			}
		case ';':
			if len(words) == 0 {
				continue
			}
			if words[0].S == "include" {
				if len(words) == 2 {
					if err := w.include(words[1].S, depth); err != nil {
						return err
					}
				}
			} else if err := w.visit(Event{Kind: Directive, Words: words, File: path, Stack: w.stack}); err != nil {
				return err
			}
			words = nil
		}
	}
	if len(w.stack) != base || len(words) > 0 {
		return fmt.Errorf("%s: unexpected end of file, expecting \";\" or \"}\"", path)
	}
	return nil
}

// hidden says whether glob(3), which nginx calls without GLOB_PERIOD,
// would have left match out: a name starting with '.' is matched only by
// a pattern element starting with '.' (filepath.Glob's '*' matches it;
// measured with nginx 1.22: "include inc/*.conf" did not read
// inc/.hidden.conf).
func hidden(pattern, match string) bool {
	pe := strings.Split(pattern, "/")
	me := strings.Split(match, "/")
	if len(pe) != len(me) {
		return false
	}
	for i := range me {
		if strings.HasPrefix(me[i], ".") && !strings.HasPrefix(pe[i], ".") {
			return true
		}
	}
	return false
}

// include reads the files an include names: a glob, relative to the
// directory of the main configuration (ngx_conf_include uses the conf
// prefix), in sorted order as glob(3) returns them.
func (w *walk) include(pattern string, depth int) error {
	if !filepath.IsAbs(pattern) {
		pattern = filepath.Join(w.files.Prefix, pattern)
	}
	matches, err := w.files.Glob(pattern)
	if err != nil {
		return fmt.Errorf("include %s: %w", pattern, err)
	}
	if len(matches) == 0 && !strings.ContainsAny(pattern, "*?[") {
		return fmt.Errorf("cannot read %s (included): %w", pattern, fs.ErrNotExist)
	}
	sort.Strings(matches)
	for _, m := range matches {
		if hidden(pattern, m) {
			continue
		}
		if err := w.file(m, depth+1); err != nil {
			return err
		}
	}
	return nil
}
