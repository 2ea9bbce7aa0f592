package unitgen

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// ErrMalformed marks a unit file systemd cannot read as intended.
var ErrMalformed = errors.New("malformed unit file")

// Directive is one assignment of a unit file.
type Directive struct {
	Section string
	Name    string
	// Value has continuation lines joined with a space, as systemd reads
	// them.
	Value string
	// Line is where the assignment starts (1-based).
	Line int
}

// Unit is a parsed unit file, in file order.
type Unit struct {
	File string
	// Path is where the unit lives when File is not it: systemctl cat's
	// output read through a pipe (--from <(systemctl cat nginx)) names
	// it in its first line. The unit's name and the files beside it
	// (its socket unit) come from Path; messages name File.
	Path       string
	Sections   []string
	Directives []Directive
}

// path is where the unit lives: Path, or File.
func (u *Unit) path() string {
	if u.Path != "" {
		return u.Path
	}
	return u.File
}

// Warning is something odd in an input that does not stop the work.
type Warning struct {
	File string
	Line int
	Msg  string
}

func (w Warning) String() string {
	if w.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", w.File, w.Line, w.Msg)
	}
	return fmt.Sprintf("%s: %s", w.File, w.Msg)
}

// Get returns the last assignment of name in section, which is the one
// systemd uses for a single-valued directive.
func (u *Unit) Get(section, name string) (Directive, bool) {
	var d Directive
	found := false
	for _, x := range u.Directives {
		if x.Section == section && x.Name == name {
			d, found = x, true
		}
	}
	return d, found
}

// LastOf returns the last assignment of any of names in section: the one
// in force when several directives set the same thing (TimeoutSec= sets
// both TimeoutStartSec= and TimeoutStopSec=, systemd.service(5), and the
// later assignment wins).
func (u *Unit) LastOf(section string, names ...string) (Directive, bool) {
	var d Directive
	found := false
	for _, x := range u.Directives {
		if x.Section == section && slices.Contains(names, x.Name) {
			d, found = x, true
		}
	}
	return d, found
}

// List returns the assignments of a list directive (ExecStop=, After=...)
// after systemd's rule that an empty assignment resets the list.
func (u *Unit) List(section, name string) []Directive {
	var out []Directive
	for _, x := range u.Directives {
		if x.Section != section || x.Name != name {
			continue
		}
		if strings.TrimSpace(x.Value) == "" {
			out = nil
			continue
		}
		out = append(out, x)
	}
	return out
}

// maxLine is systemd's LONG_LINE_MAX (1 MiB, src/basic/fileio.h): a
// longer line is an error there too. systemd.syntax(7) allows long lines
// up to it; go-systemd's parser stops at 2048 bytes, so this one is ours.
const maxLine = 1 << 20

// Parse reads a unit file the way systemd's config_parse() does
// (src/shared/conf-parser.c): a line ending in a backslash continues on
// the next one, the backslash read as a space, and comment lines inside a
// continuation are skipped (systemd.syntax(7)); a line without '=' or an
// assignment before any [Section] is ignored with a warning, as systemd
// does. What systemd refuses is an error: an empty file (systemd loads it
// as masked), an unterminated section header, a NUL byte, a line longer
// than 1 MiB. Unknown sections and directives are kept and reported as
// warnings.
func Parse(file string, data []byte) (*Unit, []Warning, error) {
	if len(data) == 0 {
		return nil, nil, fmt.Errorf("%s: %w: the file is empty (systemd treats an empty unit file as masked and will not start it)", file, ErrMalformed)
	}
	if bytes.IndexByte(data, 0) >= 0 {
		return nil, nil, fmt.Errorf("%s: %w: it contains a NUL byte (not a text file)", file, ErrMalformed)
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // systemd skips a UTF-8 BOM
	u := &Unit{File: file}
	var warns []Warning
	seenSection := map[string]bool{}
	section := ""
	lines := strings.Split(string(data), "\n")
	for i := 0; i < len(lines); i++ {
		n := i + 1
		line := strings.TrimRight(lines[i], "\r")
		if len(line) > maxLine {
			return nil, nil, fmt.Errorf("%s:%d: %w: line longer than systemd's limit of %d bytes", file, n, ErrMalformed, maxLine)
		}
		t := strings.TrimSpace(line)
		switch {
		case t == "" || t[0] == '#' || t[0] == ';':
			continue
		case t[0] == '[':
			if !strings.HasSuffix(t, "]") {
				return nil, nil, fmt.Errorf("%s:%d: %w: invalid section header %q (systemd refuses the unit)", file, n, ErrMalformed, t)
			}
			section = t[1 : len(t)-1]
			if strings.ContainsAny(section, "[]") || section == "" {
				return nil, nil, fmt.Errorf("%s:%d: %w: invalid section header %q (systemd refuses the unit)", file, n, ErrMalformed, t)
			}
			if !seenSection[section] {
				seenSection[section] = true
				u.Sections = append(u.Sections, section)
				if _, known := knownDirectives[section]; !known && !strings.HasPrefix(section, "X-") {
					warns = append(warns, Warning{file, n, fmt.Sprintf("unknown section [%s] (kept)", section)})
				}
			}
			continue
		}
		// Join the continuation lines, skipping comments between them.
		for continued(t) && i+1 < len(lines) {
			next := strings.TrimRight(lines[i+1], "\r")
			i++
			if nt := strings.TrimSpace(next); nt != "" && (nt[0] == '#' || nt[0] == ';') {
				continue
			}
			t = strings.TrimSpace(t[:len(t)-1] + " " + next)
			if len(t) > maxLine {
				return nil, nil, fmt.Errorf("%s:%d: %w: continued line longer than systemd's limit of %d bytes", file, n, ErrMalformed, maxLine)
			}
		}
		if continued(t) {
			t = t[:len(t)-1] // a continuation at the end of the file
		}
		eq := strings.IndexByte(t, '=')
		if eq < 0 {
			warns = append(warns, Warning{file, n, fmt.Sprintf("missing '=', line ignored (as systemd does): %q", shorten(t))})
			continue
		}
		if section == "" {
			warns = append(warns, Warning{file, n, fmt.Sprintf("assignment outside of any [Section], ignored (as systemd does): %q", shorten(t))})
			continue
		}
		name := strings.TrimSpace(t[:eq])
		if name == "" {
			warns = append(warns, Warning{file, n, fmt.Sprintf("assignment without a name, ignored (as systemd does): %q", shorten(t))})
			continue
		}
		u.Directives = append(u.Directives, Directive{Section: section, Name: name, Value: strings.TrimSpace(t[eq+1:]), Line: n})
		if m := inlineComment.FindString(t[eq+1:]); m != "" && !freeValue(name) {
			warns = append(warns, Warning{file, n, fmt.Sprintf("%s=: %q is no comment: systemd reads comments only on lines of their own (systemd.syntax(7)) and takes it as part of the value, which it may then ignore whole (KillSignal=SIGQUIT # ... is no signal: SIGTERM is sent); put the comment on a line of its own", name, strings.TrimSpace(m))})
		}
		if name == "Environment" {
			for _, w := range badEnvironmentWords(strings.TrimSpace(t[eq+1:])) {
				warns = append(warns, Warning{file, n, fmt.Sprintf("Environment= word %q is no NAME=VALUE: systemd ignores it (\"Invalid environment assignment, ignoring\"); quote an assignment whose value has spaces: Environment=\"NAME=VALUE WITH SPACES\"", w)})
			}
		}
		known, sectionKnown := knownDirectives[section]
		if sectionKnown && !known[name] && !strings.HasPrefix(name, "X-") {
			warns = append(warns, Warning{file, n, fmt.Sprintf("unknown directive %s= in [%s], not known to systemd 252 (kept)", name, section)})
		}
	}
	return u, warns, nil
}

// inlineComment is text after a value that looks like a comment.
var inlineComment = regexp.MustCompile(`\s[#;].*$`)

// freeValue says whether a directive's value may hold " #" or " ;" as
// text: command lines (";" separates commands, "#" may be an argument),
// environment assignments and free text.
func freeValue(name string) bool {
	switch {
	case strings.HasPrefix(name, "Exec"), strings.HasPrefix(name, "Environment"),
		name == "Description", name == "Documentation", strings.HasPrefix(name, "X-"),
		name == "UnsetEnvironment", name == "PassEnvironment", name == "SyslogIdentifier":
		return true
	}
	return false
}

// badEnvironmentWords are the words of an Environment= value that are no
// NAME=VALUE assignment. systemd splits the value into words, quotes
// grouping, and ignores such a word (config_parse_environ in
// src/core/load-fragment.c, env_assignment_is_valid): Debian's
// unicorn.service has Environment=UNICORN_OPTS=-E production, which sets
// UNICORN_OPTS=-E and drops "production" (systemd-analyze verify 252).
// A value with specifiers or that does not split is left to systemd.
func badEnvironmentWords(v string) []string {
	if strings.Contains(v, "%") {
		return nil
	}
	line, err := SplitExec(v)
	if err != nil || line.Prefix != "" {
		return nil
	}
	var bad []string
	for _, w := range line.Words {
		if k, _, ok := strings.Cut(w.Value, "="); !ok || !envName.MatchString(k) {
			bad = append(bad, w.Value)
		}
	}
	return bad
}

// shorten cuts a line for a message.
func shorten(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}

// continued says whether a line goes on on the next one: it ends in a
// backslash that is not itself escaped, an odd number of them (systemd's
// conf-parser; systemd-analyze verify 252 reads "Description=a b\\" as
// one line).
func continued(line string) bool {
	n := len(line) - len(strings.TrimRight(line, `\`))
	return n%2 == 1
}
