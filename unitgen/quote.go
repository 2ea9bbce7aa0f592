package unitgen

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ErrUnquotable marks an argument a unit file cannot carry.
var ErrUnquotable = errors.New("cannot be written in a unit file")

// safeArg reports whether s can be written as it is: none of its bytes
// mean anything to systemd's command line parser (quotes, backslash,
// whitespace, ';'), to specifier expansion ('%') or to variable expansion
// ('$').
func safeArg(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("_@+=:,./-", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// QuoteArg writes one argument the way an Exec*= line of systemd.service(5)
// reads it back byte for byte: in double quotes when needed, with '\' and
// '"' escaped by a backslash, '%' written "%%" (a specifier otherwise) and
// '$' written "$$" (a variable otherwise). A tab is written "\t".
//
// Other control characters, a newline above all, are refused: systemd
// could decode a C escape for them, but such an argument does not survive
// `systemctl show`, journal lines or the next person editing the unit, and
// NUL cannot be in an argument at all. Text that is not UTF-8 is refused
// too: systemd drops such lines from unit files.
func QuoteArg(s string) (string, error) {
	if safeArg(s) {
		return s, nil
	}
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("argument %q is not valid UTF-8 and %w", s, ErrUnquotable)
	}
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == '"':
			b.WriteString(`\"`)
		case r == '%':
			b.WriteString("%%")
		case r == '$':
			b.WriteString("$$")
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\n':
			return "", fmt.Errorf("argument %q contains a newline and %w", s, ErrUnquotable)
		case r < 0x20 || r == 0x7f:
			return "", fmt.Errorf("argument %q contains the control character %U and %w", s, r, ErrUnquotable)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String(), nil
}

// JoinExec writes argv as the value of an Exec*= directive.
func JoinExec(argv []string) (string, error) {
	out := make([]string, 0, len(argv))
	for i, a := range argv {
		q, err := QuoteArg(a)
		if err != nil {
			return "", fmt.Errorf("argument %d: %w", i, err)
		}
		out = append(out, q)
	}
	return strings.Join(out, " "), nil
}

// Word is one word of an Exec*= line as systemd splits it.
type Word struct {
	// Raw is the word as written, quotes and escapes included. Copying
	// Raw into another Exec*= line keeps its meaning.
	Raw string
	// Value is the word after unquoting and unescaping, "%%" read as "%"
	// and "$$" as "$". Specifiers and variables are left as written.
	Value string
	// Specifier and Variable say Value still holds a '%' specifier or a
	// '$' variable that systemd replaces.
	Specifier bool
	Variable  bool
}

// ExecLine is a parsed Exec*= value.
type ExecLine struct {
	// Prefix holds the special characters before the path ("-", "@",
	// ":", "+", "!", "!!"), which systemd reads before splitting.
	Prefix string
	Words  []Word
}

// Argv returns the words' values.
func (e ExecLine) Argv() []string {
	out := make([]string, len(e.Words))
	for i, w := range e.Words {
		out[i] = w.Value
	}
	return out
}

// Path is the command's path, "" for an empty line.
func (e ExecLine) Path() string {
	if len(e.Words) == 0 {
		return ""
	}
	return e.Words[0].Value
}

// RawTail is the raw text of the words from i on, joined by spaces.
func (e ExecLine) RawTail(i int) string {
	var raws []string
	for _, w := range e.Words[i:] {
		raws = append(raws, w.Raw)
	}
	return strings.Join(raws, " ")
}

// SplitExec splits an Exec*= value the way systemd 252's config_parse_exec
// does (extract_first_word with EXTRACT_UNQUOTE|EXTRACT_CUNESCAPE): words
// are separated by whitespace, single and double quotes group, a backslash
// starts a C escape inside and outside quotes, a lone ";" separates
// commands and "\;" is a literal ";". Only one command is accepted.
func SplitExec(s string) (ExecLine, error) {
	var line ExecLine
	p := strings.TrimLeft(s, " \t\r\n")
	for len(p) > 0 && strings.IndexByte("-@:+!|", p[0]) >= 0 {
		line.Prefix += p[:1]
		p = p[1:]
	}
	for {
		p = strings.TrimLeft(p, " \t\r\n")
		if p == "" {
			return line, nil
		}
		if p[0] == ';' && (len(p) == 1 || strings.IndexByte(" \t\r\n", p[1]) >= 0) {
			return line, fmt.Errorf("more than one command (separated by ';') in %q", s)
		}
		if strings.HasPrefix(p, `\;`) && (len(p) == 2 || strings.IndexByte(" \t\r\n", p[2]) >= 0) {
			line.Words = append(line.Words, Word{Raw: `\;`, Value: ";"})
			p = p[2:]
			continue
		}
		raw, unq, rest, err := extractWord(p)
		if err != nil {
			return line, fmt.Errorf("cannot split %q: %w", s, err)
		}
		p = rest
		w := Word{Raw: raw}
		w.Value, w.Specifier, w.Variable = expand(unq)
		line.Words = append(line.Words, w)
	}
}

// extractWord reads one word from p (no leading whitespace): its raw text,
// its unquoted and unescaped text, and what follows.
func extractWord(p string) (raw, word, rest string, err error) {
	var b strings.Builder
	var quote byte
	i := 0
	for i < len(p) {
		c := p[i]
		switch {
		case quote == 0 && strings.IndexByte(" \t\r\n", c) >= 0:
			return p[:i], b.String(), p[i:], nil
		case c == '\\':
			r, n, err := cunescapeOne(p[i+1:])
			if err != nil {
				return "", "", "", err
			}
			b.WriteString(r)
			i += 1 + n
			continue
		case quote != 0 && c == quote:
			quote = 0
		case quote == 0 && (c == '"' || c == '\''):
			quote = c
		default:
			b.WriteByte(c)
		}
		i++
	}
	if quote != 0 {
		return "", "", "", fmt.Errorf("unterminated quote %c", quote)
	}
	return p, b.String(), "", nil
}

// cunescapeOne decodes the escape after a backslash as systemd's
// cunescape_one does; it returns the text and the bytes consumed.
func cunescapeOne(p string) (string, int, error) {
	if p == "" {
		return "", 0, errors.New("backslash at the end")
	}
	switch p[0] {
	case 'a':
		return "\a", 1, nil
	case 'b':
		return "\b", 1, nil
	case 'f':
		return "\f", 1, nil
	case 'n':
		return "\n", 1, nil
	case 'r':
		return "\r", 1, nil
	case 't':
		return "\t", 1, nil
	case 'v':
		return "\v", 1, nil
	case 's':
		return " ", 1, nil
	case '\\', '"', '\'':
		return p[:1], 1, nil
	case 'x':
		if len(p) < 3 {
			return "", 0, errors.New(`short \x escape`)
		}
		v, err := strconv.ParseUint(p[1:3], 16, 8)
		if err != nil || v == 0 {
			return "", 0, fmt.Errorf(`bad \x escape %q`, p[:3])
		}
		return string([]byte{byte(v)}), 3, nil
	case 'u', 'U':
		n := 4
		if p[0] == 'U' {
			n = 8
		}
		if len(p) < 1+n {
			return "", 0, fmt.Errorf(`short \%c escape`, p[0])
		}
		v, err := strconv.ParseUint(p[1:1+n], 16, 32)
		if err != nil || v == 0 || !utf8.ValidRune(rune(v)) {
			return "", 0, fmt.Errorf(`bad \%c escape %q`, p[0], p[:1+n])
		}
		return string(rune(v)), 1 + n, nil
	}
	if p[0] >= '0' && p[0] <= '7' {
		if len(p) < 3 {
			return "", 0, errors.New("short octal escape")
		}
		v, err := strconv.ParseUint(p[:3], 8, 8)
		if err != nil || v == 0 {
			return "", 0, fmt.Errorf("bad octal escape %q", p[:3])
		}
		return string([]byte{byte(v)}), 3, nil
	}
	return "", 0, fmt.Errorf(`unknown escape \%c`, p[0])
}

// expand reads "%%" as "%" and "$$" as "$" and says whether other
// specifiers or variables are left.
func expand(s string) (out string, spec, vars bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c == '%' || c == '$') && i+1 < len(s) && s[i+1] == c {
			b.WriteByte(c)
			i++
			continue
		}
		switch c {
		case '%':
			spec = true
		case '$':
			if i+1 < len(s) && (s[i+1] == '{' || isVarStart(s[i+1])) {
				vars = true
			}
		}
		b.WriteByte(c)
	}
	return b.String(), spec, vars
}

func isVarStart(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}
