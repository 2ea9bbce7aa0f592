package sysv

import (
	"bytes"
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Style is the family of init script: which helper library it uses.
type Style int

const (
	// StyleRedHat sources /etc/rc.d/init.d/functions (daemon, killproc,
	// status) and has a chkconfig header.
	StyleRedHat Style = iota
	// StyleLSB sources /lib/lsb/init-functions and starts and stops with
	// start-stop-daemon (Debian, Ubuntu).
	StyleLSB
)

func (s Style) String() string {
	if s == StyleLSB {
		return "lsb"
	}
	return "redhat"
}

// ParseStyle reads "redhat" or "lsb".
func ParseStyle(s string) (Style, error) {
	switch strings.ToLower(s) {
	case "redhat", "rhel", "centos", "":
		return StyleRedHat, nil
	case "lsb", "debian":
		return StyleLSB, nil
	}
	return 0, fmt.Errorf("unknown style %q (want redhat or lsb)", s)
}

// ErrNotScript is returned for input that is not a shell script: binary
// data, or text without a shell #! line.
var ErrNotScript = errors.New("not a shell script")

// UnsureError reports a stop path the analysis does not understand. Nothing
// is rewritten when it is returned.
type UnsureError struct {
	Reason string
	Lines  []int  // the lines looked at, 1-based
	Hint   string // what the user can do about it, if anything
}

func (e *UnsureError) Error() string {
	msg := fmt.Sprintf("%s (lines %s); nothing rewritten", e.Reason, lineList(e.Lines))
	if e.Hint != "" {
		msg += "; " + e.Hint
	}
	return msg
}

// lineList prints sorted line numbers with runs collapsed: 3, 10-14.
func lineList(ls []int) string {
	var parts []string
	for i := 0; i < len(ls); {
		j := i
		for j+1 < len(ls) && ls[j+1] == ls[j]+1 {
			j++
		}
		if j == i {
			parts = append(parts, fmt.Sprint(ls[i]))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", ls[i], ls[j]))
		}
		i = j + 1
	}
	return strings.Join(parts, ", ")
}

// ctxKind is what a function or case branch is for, judged by its name.
type ctxKind int

const (
	ctxOther   ctxKind = iota
	ctxStop            // stop, do_stop, restart, condrestart, try-restart, force-stop
	ctxReload          // reload, force-reload, do_reload
	ctxUpgrade         // upgrade (nginx binary upgrade)
)

func kindOf(label string) ctxKind {
	l := strings.ToLower(label)
	switch {
	case l == "":
		return ctxOther
	case strings.Contains(l, "force-stop") || strings.Contains(l, "force_stop"):
		return ctxOther // asks for the fast stop on purpose (unicorn's example)
	case strings.Contains(l, "stop") || strings.Contains(l, "restart") || strings.Contains(l, "shutdown"):
		return ctxStop
	case strings.Contains(l, "reload"):
		return ctxReload
	case strings.Contains(l, "upgrade"):
		return ctxUpgrade
	}
	return ctxOther
}

// script is a parsed init script.
type script struct {
	name    string
	lines   []string // physical lines, without their newlines
	finalNL bool     // the file ends with a newline
	ll      []logical
	cmds    [][]command // commands of each logical line
	ctx     []string    // the function or case branch each logical line belongs to
	inFunc  []bool      // the logical line is inside a function body
	depth   []int       // block nesting after each logical line (outside functions)
	funcs   map[string]bool
	vars    vars
	header  map[string]string // chkconfig-style header fields: pidfile, processname
}

var (
	funcHeadRe  = regexp.MustCompile(`^(\s*)(?:function\s+)?([A-Za-z_][A-Za-z0-9_.:-]*)\s*(?:\(\s*\))?\s*\{?\s*(?:#.*)?$`)
	funcParenRe = regexp.MustCompile(`^\s*(?:function\s+[A-Za-z_][A-Za-z0-9_.:-]*|[A-Za-z_][A-Za-z0-9_.:-]*\s*\(\s*\))`)
	funcOneRe   = regexp.MustCompile(`^\s*(?:function\s+)?([A-Za-z_][A-Za-z0-9_.:-]*)\s*(?:\(\s*\))?\s*\{.*\}\s*;?\s*(?:#.*)?$`)
	closeRe     = regexp.MustCompile(`^(\s*)\}\s*;?\s*(?:#.*)?$`)
	openRe      = regexp.MustCompile(`^\s*\{\s*(?:#.*)?$`)
	patternRe   = regexp.MustCompile(`^\s*\(?\s*([^()#;]+?)\s*\)(.*)$`)
	headerRe    = regexp.MustCompile(`^#\s*(pidfile|processname|chkconfig|config)\s*:\s*(.*?)\s*$`)
	shebangRe   = regexp.MustCompile(`^#!\s*(\S+)(?:\s+(\S+))?`)
)

// parse reads src as an init script.
func parse(name string, src []byte) (*script, error) {
	if bytes.IndexByte(src, 0) >= 0 || !utf8.Valid(src) {
		return nil, fmt.Errorf("%s: binary data: %w", name, ErrNotScript)
	}
	text := string(src)
	first, _, _ := strings.Cut(text, "\n")
	m := shebangRe.FindStringSubmatch(first)
	if m == nil {
		return nil, fmt.Errorf("%s: no #! line: %w", name, ErrNotScript)
	}
	interp := path.Base(m[1])
	if interp == "env" {
		interp = m[2]
	}
	switch interp {
	case "sh", "bash", "dash", "ksh", "mksh", "ash":
	default:
		return nil, fmt.Errorf("%s: interpreter %s is not a shell: %w", name, m[1], ErrNotScript)
	}

	s := &script{name: name, finalNL: strings.HasSuffix(text, "\n"), funcs: map[string]bool{}, vars: vars{}, header: map[string]string{}}
	s.lines = strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	s.ll = splitLogical(s.lines)
	s.cmds = make([][]command, len(s.ll))
	s.ctx = make([]string, len(s.ll))
	s.inFunc = make([]bool, len(s.ll))
	s.depth = make([]int, len(s.ll))

	var (
		fn        string // the function being read
		fnIndent  int
		caseLevel int    // open case statements outside functions
		branch    string // the case branch being read
		depth     int
	)
	for i, l := range s.ll {
		s.cmds[i] = commands(l.text)
		t := l.text
		if trimmed := strings.TrimSpace(t); strings.HasPrefix(trimmed, "#") {
			if hm := headerRe.FindStringSubmatch(trimmed); hm != nil {
				if _, dup := s.header[hm[1]]; !dup {
					s.header[hm[1]] = hm[2]
				}
			}
			s.ctx[i] = fn
			if fn == "" {
				s.ctx[i] = branch
			}
			s.inFunc[i] = fn != ""
			s.depth[i] = depth
			continue
		}

		if fn == "" {
			if om := funcOneRe.FindStringSubmatch(t); om != nil && funcParenRe.MatchString(t) {
				s.funcs[om[1]] = true
				s.ctx[i] = om[1]
				s.inFunc[i] = true
				s.depth[i] = depth
				continue
			}
			if hm := funcHeadRe.FindStringSubmatch(t); hm != nil && funcParenRe.MatchString(t) {
				fn, fnIndent = hm[2], len(hm[1])
				s.funcs[fn] = true
				s.ctx[i] = fn
				s.inFunc[i] = true
				s.depth[i] = depth
				continue
			}
		} else {
			s.ctx[i] = fn
			s.inFunc[i] = true
			s.depth[i] = depth
			if cm := closeRe.FindStringSubmatch(t); cm != nil && len(cm[1]) <= fnIndent && !openRe.MatchString(t) {
				fn = ""
			}
			continue
		}

		// Outside functions: settings, sourcing, and the case on "$1".
		if caseLevel == 1 && branch == "" {
			if pm := patternRe.FindStringSubmatch(t); pm != nil && !strings.HasPrefix(strings.TrimSpace(t), "esac") {
				branch = strings.NewReplacer(`"`, "", `'`, "", " ", "").Replace(pm[1])
			}
		}
		s.ctx[i] = branch
		for _, c := range s.cmds[i] {
			for _, w := range c.assign {
				if len(c.words) == 0 && fn == "" && depth == 0 {
					name, val, _ := strings.Cut(w.raw, "=")
					if _, set := s.vars[name]; !set {
						s.vars[name] = val
					}
				}
			}
			switch c.lead {
			case "case":
				caseLevel++
			case "esac":
				caseLevel--
				if caseLevel == 0 {
					branch = ""
				}
			}
		}
		if caseLevel == 1 && branch != "" && strings.Contains(stripComment(t), ";;") {
			branch = ""
		}
		depth += blockDelta(t)
		if depth < 0 {
			depth = 0
		}
		s.depth[i] = depth
	}
	return s, nil
}

// blockDelta counts the compound commands a line opens minus those it
// closes, from the reserved words at the start of its commands.
func blockDelta(t string) int {
	d := 0
	for _, f := range strings.FieldsFunc(stripComment(t), func(r rune) bool {
		return r == ' ' || r == '\t' || r == ';' || r == '&' || r == '|' || r == '(' || r == ')' || r == '\n'
	}) {
		switch f {
		case "if", "while", "until", "for", "case", "select", "{":
			d++
		case "fi", "done", "esac", "}":
			d--
		}
	}
	return d
}

// stripComment drops an unquoted # comment from a line (roughly: a #
// at the start of a word).
func stripComment(t string) string {
	inS, inD := false, false
	for i := 0; i < len(t); i++ {
		switch c := t[i]; {
		case c == '\\' && !inS:
			i++
		case c == '\'' && !inD:
			inS = !inS
		case c == '"' && !inS:
			inD = !inD
		case c == '#' && !inS && !inD && (i == 0 || t[i-1] == ' ' || t[i-1] == '\t'):
			return t[:i]
		}
	}
	return t
}

// sourced returns the path of a ". FILE" or "source FILE" command, expanded
// when possible.
func (s *script) sourced(c command) (string, bool) {
	if (c.name() != "." && c.name() != "source") || len(c.words) < 2 {
		return "", false
	}
	raw := c.words[1].raw
	if v, ok := s.vars.expand(raw); ok {
		return v, true
	}
	return unquote(raw), true
}

// style guesses the script's family from what it sources and runs.
func (s *script) style() Style {
	lsb, rh := false, false
	for _, cs := range s.cmds {
		for _, c := range cs {
			if p, ok := s.sourced(c); ok {
				switch {
				case strings.HasSuffix(p, "init.d/functions"):
					rh = true
				case strings.HasSuffix(p, "lsb/init-functions"):
					lsb = true
				}
			}
			if c.name() == "start-stop-daemon" {
				lsb = true
			}
		}
	}
	if lsb && !rh {
		return StyleLSB
	}
	return StyleRedHat
}

// lineRange lists the physical lines of logical lines from..to.
func (s *script) lineRange(from, to int) []int {
	var out []int
	for i := from; i <= to && i < len(s.ll); i++ {
		for n := s.ll[i].first; n <= s.ll[i].last; n++ {
			out = append(out, n)
		}
	}
	return out
}

// contextLines lists the physical lines of every logical line in a context
// of the given kind.
func (s *script) contextLines(kind ctxKind) []int {
	var out []int
	for i := range s.ll {
		if kindOf(s.ctx[i]) == kind {
			out = append(out, s.lineRange(i, i)...)
		}
	}
	return out
}
