// Package haproxyconf reads an HAProxy configuration as haproxy 2.6
// does: its lines split into words, unquoted and expanded, conditional
// blocks evaluated, and the environment the setenv family sets. The
// supervisor checks the bind lines against the sockets a daemon inherits,
// and `graceshim unit --socket` writes a socket unit from them; both read
// the file through this package, so they agree with each other and with
// haproxy.
package haproxyconf

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Line is a line of the configuration that haproxy acts on: Num is its
// number (from 1), Words its words, Env the environment at that line
// (for expanding its addresses once more, see Expand). Lines of
// conditional blocks whose condition is false, the block lines
// themselves, and setenv, presetenv, unsetenv and resetenv are not Lines.
type Line struct {
	Num   int
	Words []string
	Env   []string
}

// Lines reads text as haproxy does, with env the environment haproxy
// gets (see Env). As haproxy reads the file, the global section's
// setenv, presetenv, unsetenv and resetenv change the environment of the
// lines after them, and a line in a conditional block (.if, .elif,
// .else, .endif) whose condition is false is skipped (configuration.txt
// 3.1 "Process management and security" and 2.4 "Conditional blocks"):
// a config that binds fd@3 under `.if defined(FD)` and a port otherwise
// binds one of them, not both. Conditions about the haproxy build are
// asked of ask (nil: they count as true). A line haproxy cannot parse is
// left out: it fails haproxy's own config test, with a better message.
func Lines(text string, env []string, ask Ask) []Line {
	env = slices.Clone(env)
	var out []Line
	type block struct{ outer, taken bool }
	var blocks []block // the conditional blocks the line is in
	active := true
	for i, line := range strings.Split(text, "\n") {
		f, ok := Words(line, env)
		if !ok || len(f) == 0 {
			continue
		}
		switch f[0] {
		case ".if":
			c := active && cond(strings.Join(f[1:], " "), env, ask)
			blocks = append(blocks, block{outer: active, taken: c})
			active = c
			continue
		case ".elif", ".else", ".endif":
			if len(blocks) == 0 {
				continue
			}
			b := &blocks[len(blocks)-1]
			switch f[0] {
			case ".elif":
				active = b.outer && !b.taken && cond(strings.Join(f[1:], " "), env, ask)
				b.taken = b.taken || active
			case ".else":
				active = b.outer && !b.taken
				b.taken = true
			default:
				active = b.outer
				blocks = blocks[:len(blocks)-1]
			}
			continue
		}
		if !active {
			continue
		}
		switch f[0] {
		case "setenv", "presetenv":
			if len(f) < 3 {
				continue
			}
			if _, set := Lookup(env, f[1]); f[0] == "setenv" || !set {
				env = append(slices.Clip(env), f[1]+"="+f[2])
			}
			continue
		case "unsetenv", "resetenv":
			names := f[1:]
			env = slices.DeleteFunc(slices.Clone(env), func(kv string) bool {
				name, _, _ := strings.Cut(kv, "=")
				return slices.Contains(names, name) == (f[0] == "unsetenv")
			})
			continue
		}
		out = append(out, Line{Num: i + 1, Words: f, Env: env})
	}
	return out
}

// cond evaluates the condition of a .if or .elif line as haproxy
// does (src/cfgcond.c): terms joined by "&&" and "||" ("&&" binds
// tighter), each "!"-negated any number of times, a number (true unless
// 0), a parenthesised condition, or a predicate. defined(NAME),
// streq(A,B), strneq(A,B) and strstr(A,B) are evaluated here; the others
// ask about the haproxy build (feature(), version_atleast(), ...), so a
// condition with one of them is asked of the haproxy that will run (ask).
// Without an answer it counts as true, as does a condition that does not
// parse (haproxy refuses the file then).
func cond(text string, env []string, ask Ask) bool {
	p := condParser{text: text, env: env}
	v, ok := p.or()
	if p.build && ok && ask != nil {
		if w, ok := ask(text, env); ok {
			return w
		}
	}
	return v || !ok || p.build
}

// Ask evaluates a condition with the real haproxy; ok is false
// when it cannot say.
type Ask func(cond string, env []string) (v, ok bool)

// CC asks bin: "haproxy -cc COND" evaluates COND as a .if line
// would, with exit status 0 when true and 1 when false (haproxy -h,
// "-cc check condition : evaluate a condition and exit"; measured with
// 2.6.12, 2 for a condition that does not parse).
func CC(bin string) Ask {
	return func(cond string, env []string) (bool, bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, "-cc", cond)
		cmd.Env = append([]string{}, env...) // empty, not graceshim's, when env is
		err := cmd.Run()
		var ee *exec.ExitError
		switch {
		case err == nil:
			return true, true
		case errors.As(err, &ee) && ee.ExitCode() == 1:
			return false, true
		}
		return false, false
	}
}

type condParser struct {
	text  string
	env   []string
	build bool // a predicate about the build was met
}

func (p *condParser) skip() { p.text = strings.TrimLeft(p.text, " \t") }

func (p *condParser) or() (bool, bool) {
	v, ok := p.and()
	for ok {
		p.skip()
		rest, found := strings.CutPrefix(p.text, "||")
		if !found {
			break
		}
		p.text = rest
		var w bool
		w, ok = p.and()
		v = v || w
	}
	return v, ok
}

func (p *condParser) and() (bool, bool) {
	v, ok := p.term()
	for ok {
		p.skip()
		rest, found := strings.CutPrefix(p.text, "&&")
		if !found {
			break
		}
		p.text = rest
		var w bool
		w, ok = p.term()
		v = v && w
	}
	return v, ok
}

func (p *condParser) term() (bool, bool) {
	p.skip()
	neg := false
	for strings.HasPrefix(p.text, "!") {
		neg = !neg
		p.text = p.text[1:]
		p.skip()
	}
	var v bool
	switch {
	case p.text == "":
		return false, false
	case p.text[0] >= '0' && p.text[0] <= '9' || p.text[0] == '-' || p.text[0] == '+':
		n := strings.IndexFunc(p.text[1:], func(r rune) bool { return r < '0' || r > '9' }) + 1
		if n == 0 {
			n = len(p.text)
		}
		num, err := strconv.ParseInt(p.text[:n], 10, 64)
		if err != nil {
			return false, false
		}
		v, p.text = num != 0, p.text[n:]
	case p.text[0] == '(':
		p.text = p.text[1:]
		var ok bool
		if v, ok = p.or(); !ok {
			return false, false
		}
		p.skip()
		if !strings.HasPrefix(p.text, ")") {
			return false, false
		}
		p.text = p.text[1:]
	default:
		open := strings.IndexByte(p.text, '(')
		close := strings.IndexByte(p.text, ')')
		if open < 0 || close < open {
			return false, false
		}
		name, args := p.text[:open], strings.Split(p.text[open+1:close], ",")
		p.text = p.text[close+1:]
		arg := func(i int) string {
			if i < len(args) {
				return strings.TrimSpace(args[i])
			}
			return ""
		}
		switch name {
		case "defined":
			_, v = Lookup(p.env, arg(0))
		case "streq":
			v = arg(0) == arg(1)
		case "strneq":
			v = arg(0) != arg(1)
		case "strstr":
			v = strings.Contains(arg(0), arg(1))
		default:
			v, p.build = true, true
		}
	}
	return v != neg, true
}

// Env is the environment haproxy reads its config with: env, and
// HAPROXY_LOCALPEER, which haproxy sets before it reads the config (to
// its -L name, else the host's name; configuration.txt 2.3; measured
// with 2.6.12: `.if defined(HAPROXY_LOCALPEER)` holds, with or without
// -L, while HAPROXY_MWORKER and HAPROXY_CFGFILES are not yet set).
func Env(argv, env []string) []string {
	peer, _ := os.Hostname()
	if a := parseArgs(argv); a.set {
		peer = a.peer
	}
	return append(slices.Clip(env), "HAPROXY_LOCALPEER="+peer)
}

// Lookup is getenv over env, the last assignment winning.
func Lookup(env []string, name string) (string, bool) {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// Words splits a config line into words as haproxy 2.6's parser
// does (configuration.txt, 2.2 "Quoting and escaping" and 2.3
// "Environment variables"; src/tools.c parse_line). Outside quotes,
// blanks separate words and '#' starts a comment. Single quotes keep
// their text as it is. Outside them a backslash escapes a blank, '\\',
// '#', a quote, and '$' in double quotes only; "\t", "\n", "\r" and
// "\xHH" are those bytes; before any other character the backslash
// stays (measured with haproxy 2.6.12: `127.0.0.1:1801\7` binds port
// 1801). Only inside double quotes are "$NAME", "${NAME}",
// "${NAME-default}" (the default only for a variable that is not set)
// and "${NAME[*]}" (one word per blank-separated part) expanded. ok is
// false for a line haproxy refuses: an unmatched quote or brace, a bad
// "\x" or variable name.
func Words(line string, env []string) (words []string, ok bool) {
	var (
		word           strings.Builder
		in             bool // a word is under way (it may be an empty quoted one)
		squote, dquote bool
	)
	isName := func(c byte) bool {
		return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
	}
	end := func() {
		if in {
			words = append(words, word.String())
			word.Reset()
			in = false
		}
	}
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\n' || c == '\r':
			i = len(line) // the end of the line for haproxy
			continue
		case c == '#' && !squote && !dquote:
			i = len(line)
			continue
		case c == '"' && !squote:
			dquote = !dquote
		case c == '\'' && !dquote:
			squote = !squote
		case c == '\\' && !squote:
			next := byte(0)
			if i+1 < len(line) {
				next = line[i+1]
			}
			switch next {
			case ' ', '\\', '#', '\'', '"':
				c = next
				i++
			case 't':
				c = '\t'
				i++
			case 'n':
				c = '\n'
				i++
			case 'r':
				c = '\r'
				i++
			case '$':
				if dquote {
					c = next
					i++
				}
			case 'x':
				if i+3 >= len(line) {
					return nil, false
				}
				v, err := strconv.ParseUint(line[i+2:i+4], 16, 8)
				if err != nil {
					return nil, false
				}
				c = byte(v)
				i += 3
			}
			word.WriteByte(c)
		case (c == ' ' || c == '\t' || c == '\v' || c == '\f') && !squote && !dquote:
			end()
			continue
		case c == '$' && dquote:
			j := i + 1
			brace := j < len(line) && line[j] == '{'
			if brace {
				j++
			}
			if j >= len(line) || !(line[j] == '_' || line[j] == '.' || line[j] >= 'a' && line[j] <= 'z' || line[j] >= 'A' && line[j] <= 'Z') {
				return nil, false
			}
			k := j
			if line[k] == '.' {
				k++ // haproxy's own .FILE, .LINE, .SECTION: no address
			}
			for k < len(line) && isName(line[k]) {
				k++
			}
			v, set := Lookup(env, line[j:k])
			split := false
			if brace {
				if strings.HasPrefix(line[k:], "[*]") {
					split = true
					k += 3
				}
				close := strings.IndexByte(line[k:], '}')
				if close < 0 || close > 0 && line[k] != '-' {
					return nil, false
				}
				if line[k] == '-' && !set {
					v = line[k+1 : k+close]
				}
				k += close + 1
			}
			for _, r := range []byte(v) {
				if split && (r == ' ' || r == '\t' || r == '\n' || r == '\v' || r == '\f' || r == '\r') {
					end()
					continue
				}
				word.WriteByte(r)
				in = true
			}
			i = k - 1
			continue
		default:
			word.WriteByte(c)
		}
		in = true
	}
	if squote || dquote {
		return nil, false
	}
	end()
	return words, true
}

// Expand expands "$NAME" and "${NAME}" in an address, as haproxy
// does to each address after the line's parsing, whatever its quotes
// (src/tools.c env_expand, called by str2sa_range): a name is letters,
// digits and '_', an unset variable is empty, and there is no default
// (measured with 2.6.12: `bind '${A}'` binds A's address, `bind "\$A"`
// too).
func Expand(s string, env []string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var out strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' {
			out.WriteByte(s[i])
			continue
		}
		j := i + 1
		brace := j < len(s) && s[j] == '{'
		if brace {
			j++
		}
		k := j
		for k < len(s) && (s[k] == '_' || s[k] >= 'a' && s[k] <= 'z' || s[k] >= 'A' && s[k] <= 'Z' || s[k] >= '0' && s[k] <= '9') {
			k++
		}
		v, _ := Lookup(env, s[j:k])
		out.WriteString(v)
		if brace && k < len(s) && s[k] == '}' {
			k++
		}
		i = k - 1
	}
	return out.String()
}

// Quote writes word back as a config word that Words reads as word: as
// it is when it holds nothing haproxy treats specially, else in single
// quotes (which keep their text as it is), else in double quotes with
// '"', '\\' and '$' escaped (configuration.txt 2.2). An unquoted '#'
// would start a comment, a blank would end the word.
func Quote(word string) string {
	if word != "" && !strings.ContainsAny(word, " \t#'\"\\$") {
		return word
	}
	if !strings.Contains(word, "'") {
		return "'" + word + "'"
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, `$`, `\$`)
	return `"` + r.Replace(word) + `"`
}
