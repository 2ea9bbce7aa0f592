package sysv

import (
	"path"
	"regexp"
	"strings"
)

// This file holds the small amount of shell reading the analysis needs:
// logical lines (backslash continuations joined), simple commands split
// into words with their byte offsets (so a command can be replaced in place
// without touching the rest of the line), and expansion of the simple
// variable forms init scripts use for their settings.

// logical is one logical line: physical lines first..last (1-based) joined,
// with the backslash-newlines kept so offsets map back to the file.
type logical struct {
	first, last int
	text        string
}

// splitLogical joins continuation lines. A line ending in an odd number of
// backslashes continues on the next one.
func splitLogical(lines []string) []logical {
	var out []logical
	for i := 0; i < len(lines); i++ {
		l := logical{first: i + 1, last: i + 1, text: lines[i]}
		for continues(lines[i]) && i+1 < len(lines) {
			i++
			l.last = i + 1
			l.text += "\n" + lines[i]
		}
		out = append(out, l)
	}
	return out
}

func continues(line string) bool {
	n := 0
	for i := len(line) - 1; i >= 0 && line[i] == '\\'; i-- {
		n++
	}
	return n%2 == 1
}

// word is one shell word as written (quotes included) and where it is in
// its logical line.
type word struct {
	raw        string
	start, end int
}

// command is a simple command: its words, after leading reserved words
// (if, then, !, ...) and variable assignments have been set aside.
type command struct {
	words  []word
	assign []word // VAR=value prefixes (LSB=1 killproc ...)
	lead   string // the reserved word that opened it, if any (if, while, ...)
}

func (c command) name() string {
	if len(c.words) == 0 {
		return ""
	}
	return unquote(c.words[0].raw)
}

// span is the byte range of the command's words in its logical line.
func (c command) span() (int, int) {
	return c.words[0].start, c.words[len(c.words)-1].end
}

var reserved = map[string]bool{
	"if": true, "then": true, "else": true, "elif": true, "fi": true,
	"do": true, "done": true, "while": true, "until": true, "for": true,
	"case": true, "esac": true, "in": true, "!": true, "{": true, "}": true,
	"select": true, "function": true, "time": true,
}

var assignRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)

// commands splits a logical line into simple commands. Comments end the
// line; operators (; ;; & && | || ( )) separate commands.
func commands(s string) []command {
	var out []command
	var cur []word
	flush := func() {
		if len(cur) > 0 {
			out = append(out, makeCommand(cur))
		}
		cur = nil
	}
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r':
			i++
		case c == '\n':
			flush()
			i++
		case c == '\\' && i+1 < len(s) && s[i+1] == '\n':
			i += 2
		case c == '#':
			// A comment runs to the end of the physical line.
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == ';' || c == '&' || c == '|' || c == '(' || c == ')':
			flush()
			i++
			if c != '(' && c != ')' && i < len(s) && s[i] == c {
				i++
			}
		default:
			j := scanWord(s, i)
			cur = append(cur, word{raw: s[i:j], start: i, end: j})
			i = j
		}
	}
	flush()
	return out
}

func makeCommand(ws []word) command {
	var c command
	for len(ws) > 0 && reserved[ws[0].raw] {
		if c.lead == "" {
			c.lead = ws[0].raw
		}
		if ws[0].raw == "for" || ws[0].raw == "case" || ws[0].raw == "select" {
			// for x in ...; case x in: no command here.
			return command{lead: ws[0].raw}
		}
		ws = ws[1:]
	}
	for len(ws) > 0 && assignRe.MatchString(ws[0].raw) {
		c.assign = append(c.assign, ws[0])
		ws = ws[1:]
	}
	c.words = ws
	return c
}

// scanWord returns the end of the word starting at i: it runs to an
// unquoted blank or operator, over quotes, $(...), ${...} and backquotes.
func scanWord(s string, i int) int {
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ';' || c == '&' || c == '|' || c == '(' || c == ')':
			return i
		case c == '\\':
			i += 2
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return len(s)
			}
			i += j + 2
		case c == '"':
			i = scanDouble(s, i+1)
		case c == '`':
			j := strings.IndexByte(s[i+1:], '`')
			if j < 0 {
				return len(s)
			}
			i += j + 2
		case c == '$' && i+1 < len(s) && (s[i+1] == '(' || s[i+1] == '{'):
			i = scanNested(s, i+1)
		default:
			i++
		}
	}
	if i > len(s) {
		return len(s)
	}
	return i
}

// scanDouble returns the index after the closing double quote of a string
// whose body starts at i.
func scanDouble(s string, i int) int {
	for i < len(s) {
		switch s[i] {
		case '\\':
			i += 2
		case '"':
			return i + 1
		case '$':
			if i+1 < len(s) && (s[i+1] == '(' || s[i+1] == '{') {
				i = scanNested(s, i+1)
				continue
			}
			i++
		case '`':
			j := strings.IndexByte(s[i+1:], '`')
			if j < 0 {
				return len(s)
			}
			i += j + 2
		default:
			i++
		}
	}
	return len(s)
}

// scanNested returns the index after the bracket matching the one at i.
func scanNested(s string, i int) int {
	open := s[i]
	closer := byte(')')
	if open == '{' {
		closer = '}'
	}
	depth := 0
	for i < len(s) {
		switch c := s[i]; {
		case c == '\\':
			i += 2
			continue
		case c == '\'' && open == '(':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return len(s)
			}
			i += j + 2
			continue
		case c == '"':
			i = scanDouble(s, i+1)
			continue
		case c == open:
			depth++
		case c == closer:
			depth--
			if depth == 0 {
				return i + 1
			}
		}
		i++
	}
	return len(s)
}

// unquote removes shell quoting from a word, leaving expansions as they
// are: "$pidfile" becomes $pidfile, 'a b' becomes a b.
func unquote(w string) string {
	var b strings.Builder
	for i := 0; i < len(w); i++ {
		switch c := w[i]; c {
		case '\'':
			j := strings.IndexByte(w[i+1:], '\'')
			if j < 0 {
				b.WriteString(w[i+1:])
				return b.String()
			}
			b.WriteString(w[i+1 : i+1+j])
			i += j + 1
		case '"':
		case '\\':
			if i+1 < len(w) {
				i++
				b.WriteByte(w[i])
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// vars holds the script's top-level settings (name to raw value) for
// expansion. Values set more than once keep the first: the defaults an
// admin's sysconfig file may override.
type vars map[string]string

var (
	simpleVarRe = regexp.MustCompile(`^\$(?:([A-Za-z_][A-Za-z0-9_]*)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-=])([^}]*))?\})`)
	basenameRe  = regexp.MustCompile("^(?:\\$\\(|`)(?:/usr)?(?:/bin/)?basename\\s+(.*?)(?:\\)|`)$")
)

// expand resolves a word to its value when it uses only literal text,
// $VAR, ${VAR}, ${VAR:-default} and $(basename X). It reports false when
// some part cannot be known from the script itself.
func (v vars) expand(w string) (string, bool) {
	return v.expandDepth(unquote(w), "", 0)
}

// expandDepth expands s, the value of the variable self ("" for a word):
// inside its own value, ${self:-default} stands for the default, as in
// STOP_TIMEOUT=${STOP_TIMEOUT:-300}.
func (v vars) expandDepth(s, self string, depth int) (string, bool) {
	if depth > 8 {
		return "", false
	}
	if m := basenameRe.FindStringSubmatch(s); m != nil {
		inner, ok := v.expandDepth(unquote(m[1]), self, depth+1)
		return path.Base(inner), ok
	}
	if strings.Contains(s, "`") || strings.Contains(s, "$(") {
		return "", false // a command's output cannot be known here
	}
	var b strings.Builder
	ok := true
	for i := 0; i < len(s); {
		if s[i] != '$' {
			b.WriteByte(s[i])
			i++
			continue
		}
		m := simpleVarRe.FindStringSubmatch(s[i:])
		if m == nil {
			return "", false
		}
		name := m[1] + m[2]
		raw, set := v[name]
		switch {
		case set && name != self:
			val, good := v.expandDepth(unquote(raw), name, depth+1)
			ok = ok && good
			b.WriteString(val)
		case m[3] != "":
			val, good := v.expandDepth(unquote(m[4]), self, depth+1)
			ok = ok && good
			b.WriteString(val)
		default:
			ok = false
		}
		i += len(m[0])
	}
	return b.String(), ok
}

// refersTo reports the variable a word consists of ("$pidfile",
// "${pidfile}", "\"$PIDFILE\"" give pidfile), or "".
func refersTo(w string) string {
	s := unquote(w)
	m := simpleVarRe.FindStringSubmatch(s)
	if m == nil || len(m[0]) != len(s) || m[3] != "" {
		return ""
	}
	return m[1] + m[2]
}

// quoteWord makes a word safe to use as one argument: a bare variable
// reference gets double quotes, anything already quoted stays as written.
func quoteWord(w string) string {
	if strings.ContainsAny(w, `"'`) {
		return w
	}
	if strings.ContainsAny(w, "$`") {
		return `"` + w + `"`
	}
	return shellQuote(w)
}

// shellQuote quotes a literal string for the shell when it needs it.
func shellQuote(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=,+@%", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
