package unitgen

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/coreos/go-systemd/v22/unit"
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
	File       string
	Sections   []string
	Directives []Directive
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

// Parse reads a unit file. Values come from go-systemd's tolerant parser;
// a scan of its own adds line numbers and finds what that parser would
// pass silently: text outside a section, a line without '=', an
// unterminated section header. Unknown sections and directives are kept
// and reported as warnings.
func Parse(file string, data []byte) (*Unit, []Warning, error) {
	lines, err := scan(file, data)
	if err != nil {
		return nil, nil, err
	}
	opts, err := unit.DeserializeOptions(bytes.NewReader(data))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w: %v", file, ErrMalformed, err)
	}
	if len(opts) != len(lines) {
		return nil, nil, fmt.Errorf("%s: %w: %d assignments found by one reading, %d by another", file, ErrMalformed, len(opts), len(lines))
	}
	u := &Unit{File: file}
	var warns []Warning
	seen := map[string]bool{}
	for i, o := range opts {
		l := lines[i]
		if o.Section != l.section || o.Name != l.name {
			return nil, nil, fmt.Errorf("%s:%d: %w: cannot match %s= in [%s]", file, l.line, ErrMalformed, o.Name, o.Section)
		}
		if !seen[o.Section] {
			seen[o.Section] = true
			u.Sections = append(u.Sections, o.Section)
		}
		u.Directives = append(u.Directives, Directive{Section: o.Section, Name: o.Name, Value: joinContinued(o.Value), Line: l.line})
		known, sectionKnown := knownDirectives[o.Section]
		switch {
		case strings.HasPrefix(o.Section, "X-") || strings.HasPrefix(o.Name, "X-"):
		case !sectionKnown:
			warns = append(warns, Warning{file, l.line, fmt.Sprintf("unknown section [%s] (kept)", o.Section)})
		case !known[o.Name]:
			warns = append(warns, Warning{file, l.line, fmt.Sprintf("unknown directive %s= in [%s], not known to systemd 252 (kept)", o.Name, o.Section)})
		}
	}
	return u, dedupeSectionWarnings(warns), nil
}

// dedupeSectionWarnings keeps one unknown-section warning per section.
func dedupeSectionWarnings(ws []Warning) []Warning {
	seen := map[string]bool{}
	var out []Warning
	for _, w := range ws {
		if strings.HasPrefix(w.Msg, "unknown section") {
			if seen[w.Msg] {
				continue
			}
			seen[w.Msg] = true
		}
		out = append(out, w)
	}
	return out
}

// joinContinued turns go-systemd's "\\\n" continuations into the single
// space systemd reads.
func joinContinued(v string) string {
	v = strings.ReplaceAll(v, "\\\n", " ")
	return strings.TrimSpace(v)
}

type scanned struct {
	section, name string
	line          int
}

// scan finds each assignment's section, name and line and rejects lines
// systemd would ignore with a complaint.
func scan(file string, data []byte) ([]scanned, error) {
	if bytes.IndexByte(data, 0) >= 0 {
		return nil, fmt.Errorf("%s: %w: it contains a NUL byte (not a text file)", file, ErrMalformed)
	}
	var out []scanned
	section := ""
	continued := false
	for i, raw := range strings.Split(string(data), "\n") {
		n := i + 1
		line := strings.TrimRight(raw, "\r")
		if continued {
			continued = strings.HasSuffix(line, `\`)
			continue
		}
		t := strings.TrimSpace(line)
		switch {
		case t == "" || t[0] == '#' || t[0] == ';':
			continue
		case t[0] == '[':
			end := strings.IndexByte(t, ']')
			if end < 0 {
				return nil, fmt.Errorf("%s:%d: %w: section header without ']': %q", file, n, ErrMalformed, t)
			}
			if strings.TrimSpace(t[end+1:]) != "" {
				return nil, fmt.Errorf("%s:%d: %w: text after the section header: %q", file, n, ErrMalformed, t)
			}
			section = t[1:end]
			continue
		}
		eq := strings.IndexByte(t, '=')
		if eq < 0 {
			return nil, fmt.Errorf("%s:%d: %w: line without '=': %q", file, n, ErrMalformed, t)
		}
		if section == "" {
			return nil, fmt.Errorf("%s:%d: %w: assignment before any [Section] header: %q", file, n, ErrMalformed, t)
		}
		name := strings.TrimSpace(t[:eq])
		if name == "" {
			return nil, fmt.Errorf("%s:%d: %w: assignment without a name: %q", file, n, ErrMalformed, t)
		}
		out = append(out, scanned{section: section, name: name, line: n})
		continued = strings.HasSuffix(line, `\`)
	}
	return out, nil
}
