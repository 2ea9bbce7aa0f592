package sysv

import (
	"bytes"
	"fmt"
	"os/exec"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/graceshim/graceshim/signals"
)

// DefaultStopTimeout is the STOP_TIMEOUT a fix inserts, in seconds: the
// longest graceful stop before TERM and then KILL. CentOS 6 runs the K
// scripts of a runlevel change one after another (/etc/rc.d/rc), so each
// script's bound adds to how long a reboot can hang; a minute per daemon
// is what systemd's own default stop timeout (90 s) is close to, and long
// enough for ordinary requests to finish. Admins set STOP_TIMEOUT in
// /etc/sysconfig/NAME or /etc/default/NAME; fix --stop-timeout changes the
// default written.
const DefaultStopTimeout = 60

// TimeoutVar is the variable fixed and generated scripts read the drain
// bound from. It is set after /etc/sysconfig/NAME or /etc/default/NAME is
// sourced, so an admin can override it there.
const TimeoutVar = "STOP_TIMEOUT"

// FixOptions tune Fix.
type FixOptions struct {
	// Preset names the daemon's signal preset; empty means it is picked
	// from the script (prog=, exec=, the binary, processname:).
	Preset string
	// StopTimeout is the default STOP_TIMEOUT inserted, in seconds; zero
	// means DefaultStopTimeout.
	StopTimeout int
}

// Change is one rewrite, or one finding that needed none, in the terms of
// the original file.
type Change struct {
	Line    int // 1-based line of the original
	Summary string
}

func (c Change) String() string { return fmt.Sprintf("line %d: %s", c.Line, c.Summary) }

// Result is what Fix found and did.
type Result struct {
	Style   Style
	Daemon  string         // the daemon's name as the script knows it
	Preset  signals.Preset // the preset its signals come from
	Output  []byte         // the fixed script; equal to the input when nothing was wrong
	Changes []Change       // the rewrites, in line order
	Notes   []string       // facts about kept signals and choices made
}

// Changed reports whether the script needed a fix.
func (r *Result) Changed() bool { return len(r.Changes) > 0 }

// Fix analyses an init script and rewrites its stop paths so that they
// stop the daemon gracefully, wait for it (bounded by STOP_TIMEOUT),
// escalate, and only then let the script remove lock and pid files.
//
// It returns an error wrapping ErrNotScript for input that is not a shell
// script, and an *UnsureError when a stop path cannot be understood.
func Fix(name string, src []byte, opts FixOptions) (*Result, error) {
	s, err := parse(name, src)
	if err != nil {
		return nil, err
	}
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = DefaultStopTimeout
	}
	f := &fixer{s: s, opts: opts, edits: map[int][]edit{}}
	if err := f.identify(); err != nil {
		return nil, err
	}
	if err := f.run(); err != nil {
		return nil, err
	}
	r := f.result(src)
	if len(r.Changes) > 0 {
		// A rewrite that the shell cannot read would break every action
		// of the script: refuse it rather than write it.
		if err := syntaxCheck(r.Output); err != nil {
			return nil, &UnsureError{Reason: "the rewritten script does not parse (" + err.Error() + ")", Lines: []int{1, len(s.lines)}}
		}
	}
	return r, nil
}

// syntaxCheck runs sh -n over a script.
func syntaxCheck(script []byte) error {
	cmd := exec.Command("sh", "-n")
	cmd.Stdin = bytes.NewReader(script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if msg := strings.TrimSpace(string(out)); msg != "" {
			return fmt.Errorf("sh -n: %s", strings.ReplaceAll(msg, "\n", "; "))
		}
		return fmt.Errorf("sh -n: %v", err)
	}
	return nil
}

// edit replaces text[start:end] of one logical line.
type edit struct {
	start, end int
	text       string
}

type fixer struct {
	s      *script
	opts   FixOptions
	style  Style
	daemon string
	preset signals.Preset
	known  bool   // the preset was recognised, not the generic fallback
	binVar string // the variable holding the daemon's absolute path, "" when none
	binLit string // the daemon's absolute path as written, when no variable holds it

	placeholders []string         // template placeholders (%PROVIDES%, @sbindir@) seen, with lines
	funcLines    map[string][]int // each function's logical lines
	unknownStops []int            // lines that signal a daemon no preset names
	followed     map[int]bool     // function bodies already read for a call
	ownWaited    map[string]bool  // actions that wait for the daemon themselves

	shim    bool   // the script runs the daemon under graceshim (generated in shim mode)
	pidVar  string // the script's pid file variable ("pidfile"), if any
	pidPath string // the pid file, when it can be known

	edits   map[int][]edit // by logical line
	changes []Change
	notes   []string

	needFunc, needTimeout bool
	stopTargets           map[string][]int // stop path target -> lines
	stopsFound            int
}

// identify finds the daemon, its preset and its pid file.
func (f *fixer) identify() error {
	s := f.s
	f.style = s.style()
	expand := func(name string) string {
		if raw, ok := s.vars[name]; ok {
			if v, ok := s.vars.expand(raw); ok {
				return v
			}
		}
		return ""
	}
	var candidates []string
	for _, n := range []string{"exec", "DAEMON", "daemon", "binary", "BINARY", "prog", "NAME", "name", "PROG"} {
		if v := expand(n); v != "" {
			candidates = append(candidates, v)
			if f.binVar == "" && strings.HasPrefix(v, "/") {
				f.binVar = n
			}
		}
	}
	if v := s.header["processname"]; v != "" {
		candidates = append(candidates, v)
	}
	for _, cs := range s.cmds {
		for _, c := range cs {
			prog := ""
			switch c.name() {
			case "daemon":
				prog = daemonProg(c.words)
			case "killproc", "status":
				prog = parseKillprocLoose(c.words).prog
			case "start-stop-daemon":
				for j, w := range c.words {
					if (w.raw == "--exec" || w.raw == "-x") && j+1 < len(c.words) {
						prog = c.words[j+1].raw
					}
				}
			}
			if n := refersTo(prog); n != "" && f.binVar == "" {
				if v := expand(n); strings.HasPrefix(v, "/") {
					f.binVar = n // the variable the script starts the daemon with
				}
			}
			if prog != "" {
				if v, ok := s.vars.expand(prog); ok {
					// daemon "$exec $config" passes one word.
					v, _, _ = strings.Cut(v, " ")
					candidates = append(candidates, v)
				}
			}
		}
	}
	for n := range s.vars {
		// CMD="/usr/bin/unicorn -D -c ..." (unicorn's example) names the
		// binary in its first word.
		if fs := strings.Fields(expand(n)); len(fs) > 0 && strings.HasPrefix(fs[0], "/") {
			if _, ok := signals.ForCommand(fs[0]); ok && isProgramPath(fs[0]) {
				candidates = append(candidates, fs[0])
			}
		}
	}
	// A template (nginx.org's pkg-oss nginx.init.in, Debian's
	// php-fpm.init.in) hides the daemon behind placeholders a build
	// fills in: %PROVIDES%, %%PROVIDES%%, @sbindir@, @PHP_VERSION@.
	for li, cs := range s.cmds {
		for _, c := range cs {
			for _, w := range append(append([]word(nil), c.assign...), c.words...) {
				for _, m := range placeholderRe.FindAllString(w.raw, -1) {
					f.placeholders = append(f.placeholders, fmt.Sprintf("%s (line %d)", m, s.ll[li].first))
				}
			}
		}
	}
	var kept []string
	for _, c := range candidates {
		if !placeholderRe.MatchString(c) {
			kept = append(kept, c)
		}
	}
	candidates = append(kept, path.Base(s.name))

	if opts := f.opts; opts.Preset != "" {
		p, err := signals.Lookup(opts.Preset)
		if err != nil {
			return err
		}
		f.preset, f.known = p, true
	}
	for _, c := range candidates {
		if p, ok := signals.ForCommand(c); ok {
			if !f.known {
				f.preset, f.known = p, true
			}
			if f.daemon == "" {
				f.daemon = path.Base(c)
			}
		}
	}
	if !f.known {
		f.preset, _ = signals.ForCommand("")
	}
	if f.daemon == "" && len(kept) == 0 && f.opts.Preset != "" && len(f.preset.Commands) > 0 {
		f.daemon = f.preset.Commands[0] // a template: only --preset names it
	}
	if f.daemon == "" {
		f.daemon = path.Base(candidates[0])
	}
	if f.binVar == "" {
		// The variable that holds the daemon's program, in name order
		// so that the choice does not depend on map order.
		names := make([]string, 0, len(s.vars))
		for n := range s.vars {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			if v := expand(n); isProgramPath(v) && path.Base(v) == f.daemon {
				f.binVar = n
				break
			}
		}
	}
	if f.binVar == "" {
		for _, c := range candidates {
			if isProgramPath(c) && path.Base(c) == f.daemon {
				f.binLit = c
				break
			}
		}
	}

	_, lower := s.vars["graceshim"]
	_, upper := s.vars["GRACESHIM"]
	f.shim = lower || upper
	// A pid path the script reads from the daemon's own config (nginx -V,
	// "pid" in nginx.conf, as Debian's nginx-common script does) is the
	// one the daemon uses: it wins over a header comment or a guess.
	var cfgNames []string
	for n := range s.vars {
		cfgNames = append(cfgNames, n)
	}
	sort.Strings(cfgNames)
	for _, n := range cfgNames {
		if v := unquote(s.vars[n]); f.pidVar == "" && strings.Contains(v, "$(") && strings.Contains(strings.ToLower(v), "pid") &&
			(strings.Contains(v, " -V") || strings.Contains(v, ".conf") || strings.Contains(v, "CONF")) {
			f.pidVar = n
		}
	}
	for _, n := range []string{"pidfile", "PIDFILE", "pid_file", "PID_FILE", "PID", "PIDF"} {
		if _, ok := s.vars[n]; ok && f.pidVar == "" {
			f.pidVar = n
			f.pidPath = expand(n)
			break
		}
	}
	if f.pidVar == "" {
		f.pidPath = s.header["pidfile"]
	}
	return nil
}

// isProgramPath reports an absolute path in a bin or sbin directory: a
// program, not a lock, pid or config file named after the daemon.
func isProgramPath(p string) bool {
	return path.IsAbs(p) && strings.Contains(p, "bin/") && !strings.Contains(p, " ")
}

// placeholderRe matches the placeholders of packaging templates:
// %PROVIDES% (pkg-oss rpm), %%PROVIDES%% (pkg-oss debian), @sbindir@ and
// @PHP_VERSION@ (autoconf, Debian's php-fpm).
var placeholderRe = regexp.MustCompile(`%%?[A-Z][A-Z0-9_]*%%?|@[A-Za-z][A-Za-z0-9_]*@`)

// binWord is how a fix names the daemon's binary to graceshim_stop: the
// script's variable, else its path, else its name (compared with
// /proc/PID/exe by base name).
func (f *fixer) binWord() string {
	switch {
	case f.binVar != "":
		return `"$` + f.binVar + `"`
	case f.binLit != "":
		return shellQuote(f.binLit)
	}
	return shellQuote(f.daemon)
}

// serviceName is the name of the script's sysconfig or default file.
func (f *fixer) serviceName() string {
	for _, n := range []string{"prog", "NAME", "name"} {
		if raw, ok := f.s.vars[n]; ok {
			if v, ok := f.s.vars.expand(raw); ok && v != "" {
				return path.Base(v)
			}
		}
	}
	return path.Base(f.s.name)
}

// pidWord is how the fix refers to the pid file when the stop command did
// not name one.
func (f *fixer) pidWord() string {
	if f.pidVar != "" {
		return `"$` + f.pidVar + `"`
	}
	if f.pidPath != "" {
		return shellQuote(f.pidPath)
	}
	return ""
}

func (f *fixer) change(li int, format string, a ...any) {
	f.changes = append(f.changes, Change{Line: f.s.ll[li].first, Summary: fmt.Sprintf(format, a...)})
}

func (f *fixer) note(format string, a ...any) {
	n := fmt.Sprintf(format, a...)
	for _, have := range f.notes {
		if have == n {
			return
		}
	}
	f.notes = append(f.notes, n)
}

// isStopSignal says whether sig stops this daemon (gracefully or not).
func (f *fixer) isStopSignal(sig syscall.Signal) bool {
	switch sig {
	case syscall.SIGTERM, syscall.SIGINT, syscall.SIGKILL:
		return true
	}
	return sig == f.preset.Graceful || sig == f.preset.Fast
}

func (f *fixer) describe(sig syscall.Signal) string {
	switch {
	case sig == f.preset.Graceful && f.preset.NoGracefulStop:
		return signals.Name(sig) + " (" + f.daemon + " has no graceful stop)"
	case sig == f.preset.Graceful:
		return signals.Name(sig) + " (graceful)"
	case sig == syscall.SIGKILL:
		return "KILL"
	case sig == f.preset.Fast || sig == syscall.SIGTERM || sig == syscall.SIGINT:
		if f.known && f.preset.Graceful != sig {
			return signals.Name(sig) + " (" + f.daemon + "'s fast stop)"
		}
	}
	return signals.Name(sig)
}

func (f *fixer) run() error {
	s := f.s
	f.stopTargets = map[string][]int{}
	f.funcLines = map[string][]int{}
	f.followed = map[int]bool{}
	f.ownWaited = map[string]bool{}
	for li := range s.ll {
		if s.inFunc[li] {
			f.funcLines[s.ctx[li]] = append(f.funcLines[s.ctx[li]], li)
		}
	}
	syncStop := map[string]int{} // stop context -> its synchronous shutdown's line
	for li := range s.ll {
		ctx := s.ctx[li]
		kind := kindOf(ctx)
		if kind == ctxOther || strings.HasPrefix(ctx, "graceshim_") {
			continue // graceshim_stop and its helpers are what a fix inserts
		}
		for _, c := range s.cmds[li] {
			if len(c.words) == 0 {
				continue
			}
			var err error
			switch name := c.name(); {
			case name == "killproc" && kind == ctxStop && syncStop[ctx] > 0:
				f.stopsFound++
				first := s.ll[syncStop[ctx]-1].first
				f.note("%s: the main stop is line %d, which returns once %s has gone; killproc on line %d runs only if that failed and is left as it is", ctx, first, f.daemon, s.ll[li].first)
			case name == "killproc":
				err = f.killproc(li, kind, c)
			case name == "start-stop-daemon":
				err = f.startStopDaemon(li, kind, c)
			case name == "kill":
				err = f.kill(li, kind, c)
			case name == "graceshim_stop":
				err = f.shimStop(li, kind, c)
			case name == "pkill" || name == "killall" || name == "skill" || name == "pgrep":
				if kind == ctxStop {
					return &UnsureError{Reason: name + " matches processes by name, workers included; cannot tell the master", Lines: s.lineRange(li, li)}
				}
			case kind == ctxStop && f.syncShutdown(c):
				f.stopsFound++
				if syncStop[ctx] == 0 {
					syncStop[ctx] = li + 1
				}
			case kind == ctxStop && controlStop(c):
				return &UnsureError{Reason: "stop through the daemon's own control command (" + strings.TrimSpace(s.ll[li].text) + ") is not understood", Lines: s.lineRange(li, li)}
			case s.funcs[name] && kindOf(name) == ctxOther:
				err = f.wrapper(li, kind, c, name)
			}
			if err != nil {
				return err
			}
		}
	}
	if len(f.unknownStops) > 0 {
		return f.unknownError()
	}
	if f.stopsFound == 0 {
		return f.noStopError()
	}
	if len(f.stopTargets) > 1 {
		var names []string
		var lines []int
		for t, ls := range f.stopTargets {
			names = append(names, t)
			lines = append(lines, ls...)
		}
		sort.Strings(names)
		sort.Ints(lines)
		return &UnsureError{Reason: "two stop paths that cannot be reconciled: " + strings.Join(names, " and "), Lines: lines}
	}
	if f.needFunc || f.needTimeout {
		f.insertPreamble()
	}
	return nil
}

// syncShutdown recognises a stop that returns only once the daemon has
// gone: "redis-cli ... shutdown" (Redis's SHUTDOWN saves, then exits, and
// redis-cli returns when the server closes the connection:
// https://redis.io/commands/shutdown/) and wrappers named *-shutdown such
// as EPEL's /usr/libexec/redis-shutdown.
func (f *fixer) syncShutdown(c command) bool {
	name := path.Base(c.name())
	if v, ok := f.s.vars.expand(c.words[0].raw); ok {
		name = path.Base(v)
	}
	if strings.HasSuffix(name, "-shutdown") {
		return true
	}
	if strings.HasSuffix(name, "-cli") {
		for _, w := range c.words[1:] {
			if strings.EqualFold(unquote(w.raw), "shutdown") {
				return true
			}
		}
	}
	return false
}

// unknownDaemon records a stop that signals a daemon no preset names:
// which signal drains it cannot be known, so nothing may be called right.
func (f *fixer) unknownDaemon(li int) bool {
	if f.known || f.shim {
		return false
	}
	f.stopsFound++
	f.unknownStops = append(f.unknownStops, f.s.lineRange(li, li)...)
	return true
}

func (f *fixer) unknownError() error {
	why := "cannot tell which daemon this script stops"
	if len(f.placeholders) > 0 {
		ps := f.placeholders
		if len(ps) > 3 {
			ps = append(ps[:3:3], "...")
		}
		why += ": it is a template, the binary is hidden behind placeholders " + strings.Join(ps, ", ")
	} else {
		why += fmt.Sprintf(" (%s is no known daemon)", f.daemon)
	}
	why += ", so not which signal stops it gracefully"
	var names []string
	for _, p := range signals.Presets() {
		names = append(names, p.Name)
	}
	lines := append([]int(nil), f.unknownStops...)
	sort.Ints(lines)
	return &UnsureError{Reason: why, Lines: lines,
		Hint: "name the daemon with --preset NAME (one of " + strings.Join(names, ", ") + "; generic: TERM, wait, KILL)"}
}

// noStopError says what the stop actions hold when none of it is a stop
// the analysis knows, and where the script signals outside them.
func (f *fixer) noStopError() error {
	s := f.s
	lines := s.contextLines(ctxStop)
	if len(lines) == 0 {
		return &UnsureError{Reason: "no stop function or stop branch found", Lines: []int{1, len(s.lines)}}
	}
	var elsewhere []string
	for li := range s.ll {
		if kindOf(s.ctx[li]) != ctxOther {
			continue
		}
		for _, c := range s.cmds[li] {
			switch c.name() {
			case "killproc", "kill", "start-stop-daemon":
				where := "at the top level"
				if s.ctx[li] != "" {
					where = "in " + s.ctx[li] + "()"
				}
				elsewhere = append(elsewhere, fmt.Sprintf("%s on line %d %s", c.name(), s.ll[li].first, where))
			}
		}
	}
	why := "the stop actions hold no killproc, start-stop-daemon --stop or kill of a pid file's pid, nor a call of a function that does"
	if len(elsewhere) > 0 {
		why += "; the script signals elsewhere (" + strings.Join(elsewhere, ", ") + "), which no stop action is seen to reach"
	}
	return &UnsureError{Reason: why, Lines: lines}
}

// paramRe matches a function's positional parameters: $1, ${2}.
var paramRe = regexp.MustCompile(`\$\{?([1-9])\}?`)

// wrapper follows one level into a function of the script's own that an
// action calls, such as unicorn's examples/init.sh
// "sig () { test -s "$PID" && kill -$1 $(cat $PID); }": the signalling
// command inside is read with the call's arguments in place of $1..$9,
// and a fix, when one is needed, replaces the call, not the function,
// which other actions (sig 0, sig HUP) still use.
func (f *fixer) wrapper(li int, kind ctxKind, call command, fn string) error {
	s := f.s
	var body []command
	var bodyLi []int
	for _, bl := range f.funcLines[fn] {
		for _, bc := range s.cmds[bl] {
			switch bc.name() {
			case "start-stop-daemon":
				if parseSSD(bc.words).stop == nil {
					continue
				}
				fallthrough
			case "kill", "killproc":
				body = append(body, bc)
				bodyLi = append(bodyLi, bl)
			}
		}
	}
	if len(body) == 0 {
		return nil
	}
	lines := append(s.lineRange(li, li), s.lineRange(bodyLi[0], bodyLi[len(bodyLi)-1])...)
	sort.Ints(lines)
	if len(body) > 1 {
		if kind == ctxStop {
			return &UnsureError{Reason: fmt.Sprintf("%s() signals in %d places; a function called from %s is followed only when it signals once", fn, len(body), s.ctx[li]), Lines: lines}
		}
		return nil
	}
	bc := body[0]
	subst := func(raw string) string {
		return paramRe.ReplaceAllStringFunc(raw, func(m string) string {
			n := int(paramRe.FindStringSubmatch(m)[1][0] - '0')
			if n < len(call.words) {
				return unquote(call.words[n].raw)
			}
			return ""
		})
	}
	ws := make([]word, len(bc.words))
	params := false
	for i, w := range bc.words {
		ws[i] = w
		ws[i].raw = subst(w.raw)
		params = params || ws[i].raw != w.raw
	}
	inner := strings.TrimSpace(s.ll[bodyLi[0]].text[bc.words[0].start:bc.words[len(bc.words)-1].end])
	callText := strings.TrimSpace(s.ll[li].text[call.words[0].start:call.words[len(call.words)-1].end])
	if bc.name() == "start-stop-daemon" {
		if params {
			if parseSSD(ws).stop != nil && kind == ctxStop {
				return &UnsureError{Reason: fmt.Sprintf("%s runs %s (%s(), line %d) with arguments from the call; not followed", callText, inner, fn, s.ll[bodyLi[0]].first), Lines: lines}
			}
			return nil
		}
		if f.followed[bodyLi[0]] {
			return nil // called from another action too: read once
		}
		f.followed[bodyLi[0]] = true
		return f.startStopDaemon(bodyLi[0], kind, bc) // the body stands for the action
	}
	var sig syscall.Signal = syscall.SIGTERM
	var pidfile string
	if bc.name() == "killproc" {
		k := parseKillprocLoose(ws)
		sig = 0
		if k.sig != nil {
			v, ok := f.parseSig(k.sig.raw)
			if !ok {
				return nil
			}
			sig = v
		}
		pidfile = k.pidfile
	} else {
		i := 1
		if i < len(ws) {
			if w := unquote(ws[i].raw); w == "-s" || w == "-n" {
				if i+1 >= len(ws) {
					return nil
				}
				w = ws[i+1].raw
				i += 2
				v, ok := f.parseSig(w)
				if !ok {
					return nil
				}
				sig = v
			} else if strings.HasPrefix(w, "-") {
				v, ok := f.parseSig(w)
				if !ok {
					return nil // kill -0: a liveness check
				}
				sig = v
				i++
			}
		}
		if i == len(ws)-1 {
			pidfile = catPidfile(ws[i].raw)
		}
	}
	if kind == ctxStop && f.unknownDaemon(li) {
		return nil
	}
	if sig != 0 && !f.isStopSignal(sig) {
		return nil // a reload, log reopening or upgrade through the wrapper
	}
	switch kind {
	case ctxReload:
		return &UnsureError{Reason: "a reload that stops the daemon (" + callText + ")", Lines: lines}
	case ctxUpgrade:
		return nil
	}
	if f.unknownDaemon(li) {
		return nil
	}
	if pidfile == "" {
		pidfile = f.pidWord()
	}
	if pidfile == "" {
		return &UnsureError{Reason: fmt.Sprintf("%s runs %s (%s(), line %d), which does not name a pid file", callText, inner, fn, s.ll[bodyLi[0]].first), Lines: lines}
	}
	f.stopTarget(li, quoteWord(pidfile))
	if own := f.ownWait(li); own != nil {
		f.note("%s: the script waits for %s to go itself (lines %s); left as it is", s.ctx[li], f.daemon, lineList(own))
		return nil
	}
	start, end := call.span()
	// The daemon's own stop command reads its pid file; it never used pidof.
	f.edits[li] = append(f.edits[li], edit{start, end, f.failStop(li, call, f.stopCall(quoteWord(pidfile), false, TimeoutVar))})
	what := "sends " + f.describe(sig)
	if sig == 0 {
		what = "sends " + f.describe(syscall.SIGTERM) + " and KILLs after 3 s"
	}
	f.change(li, "%s: %s runs %s (%s(), line %d), which %s and does not wait for %s to go; now %s, wait up to $%s, then TERM, then KILL",
		s.ctx[li], callText, inner, fn, s.ll[bodyLi[0]].first, what, f.daemon, signals.Name(f.preset.Graceful), TimeoutVar)
	f.keptSignalNote()
	return nil
}

// controlStop recognises stops through a daemon's own control command:
// "nginx -s stop", "apachectl graceful-stop", "httpd -k stop".
func controlStop(c command) bool {
	for i, w := range c.words {
		v := unquote(w.raw)
		if (v == "-s" || v == "-k") && i+1 < len(c.words) {
			switch unquote(c.words[i+1].raw) {
			case "stop", "quit", "graceful-stop":
				return true
			}
		}
		if i > 0 && (v == "stop" || v == "graceful-stop") && strings.HasSuffix(c.name(), "ctl") {
			return true
		}
	}
	return false
}

// stopTarget records a stop path's target for the reconcile check.
func (f *fixer) stopTarget(li int, pidWord string) {
	f.stopsFound++
	t := "pidof " + f.daemon
	if pidWord != "" {
		if v, ok := f.s.vars.expand(pidWord); ok {
			t = v
		} else {
			t = unquote(pidWord)
		}
	}
	f.stopTargets[t] = append(f.stopTargets[t], f.s.lineRange(li, li)...)
}

// laterStartOrRemove reports whether, after logical line li in the same
// context, the script starts the daemon or removes its lock or pid file:
// then a stop before it must wait for the process to go.
func (f *fixer) laterStartOrRemove(li int) bool {
	ctx := f.s.ctx[li]
	for j := li; j < len(f.s.ll) && f.s.ctx[j] == ctx; j++ {
		for k, c := range f.s.cmds[j] {
			if j == li && k == 0 {
				continue
			}
			switch c.name() {
			case "rm", "start", "do_start", "daemon":
				return true
			case "start-stop-daemon":
				for _, w := range c.words {
					if w.raw == "--start" || w.raw == "-S" {
						return true
					}
				}
			}
		}
	}
	return false
}

// shimStop is a stop already rewritten by a fix: right when it sends the
// graceful signal.
func (f *fixer) shimStop(li int, kind ctxKind, c command) error {
	if len(c.words) < 5 {
		return &UnsureError{Reason: "graceshim_stop needs PIDFILE BINARY SIGNAL TIMEOUT (a script fixed by an older graceshim: fix its .orig again)", Lines: f.s.lineRange(li, li)}
	}
	if kind == ctxStop {
		f.stopTarget(li, c.words[1].raw)
	}
	if f.shim {
		return nil // graceshim takes TERM and stops the daemon gracefully
	}
	sig, err := signals.Parse(strings.TrimPrefix(unquote(c.words[3].raw), "-"))
	if err != nil || sig == f.preset.Graceful || !f.known {
		return nil
	}
	f.edits[li] = append(f.edits[li], edit{c.words[3].start, c.words[3].end, signals.Name(f.preset.Graceful)})
	f.change(li, "%s: graceshim_stop sends %s; %s's graceful stop is %s", f.s.ctx[li], signals.Name(sig), f.daemon, signals.Name(f.preset.Graceful))
	return nil
}

// stopCall is the replacement for a stop command, bounded by the variable
// bound. It names the daemon's binary when the script keeps it in a
// variable, so that a stale pid file (a pid since given to another
// process) is not acted on. pidof is true only where the original stop
// fell back to pidof itself (killproc without -p): a stop that named a pid
// file gets "only", because with the pid file missing or stale
// killproc -p returns failure without pidof (CentOS 6
// /etc/rc.d/init.d/functions, __pids_var_run returns 4), and pidof
// matches every process with the binary's base name on the host,
// other instances and other containers' daemons included.
func (f *fixer) stopCall(pidWord string, pidof bool, bound string) string {
	f.needFunc = true
	if bound == TimeoutVar {
		f.needTimeout = true
	}
	only := " only"
	if pidof {
		only = ""
	}
	return fmt.Sprintf(`graceshim_stop %s %s %s "$%s"%s`, pidWord, f.binWord(), signals.Name(f.preset.Graceful), bound, only)
}

// failStop makes a stop call that stands first on its line, followed by
// nothing, ';' or '&&', end the script with 1 when graceshim_stop fails
// (it has said why on stderr): the original kill's status was thrown
// away (kill $(cat F); rm -f F; echo) or read as "not running" (unicorn's
// "sig QUIT && exit 0; echo Not running"), so a daemon that survived the
// stop was reported stopped. Before '&&' the rest of the line ran only
// when the kill found a process: the call is followed by a test of
// graceshim_stop's _gs_none, so that with nothing running the line still
// stops there and the script's own "Not running" branch stays reachable.
// Elsewhere (in a condition, after || ) the script already reads the
// status and the call is left bare.
func (f *fixer) failStop(li int, c command, call string) string {
	text := f.s.ll[li].text
	start, end := c.span()
	if c.lead != "" || len(c.assign) > 0 || strings.TrimSpace(text[:start]) != "" {
		return call
	}
	rest := strings.TrimSpace(text[end:])
	if strings.HasPrefix(rest, "&&") {
		return `{ ` + call + ` || exit 1; } && [ -z "$_gs_none" ]`
	}
	if rest == "" || strings.HasPrefix(rest, ";") && !strings.HasPrefix(rest, ";;") {
		return call + " || exit 1"
	}
	return call
}

// reported wraps a stop call in the Red Hat functions' success and failure,
// which print the [  OK  ] or [FAILED] that killproc printed itself.
func (f *fixer) reported(call, prog string) string {
	msg := `"` + strings.Trim(unquote(prog), `"`) + ` shutdown"`
	return fmt.Sprintf("if %s; then success %s; else failure %s; fi", call, msg, msg)
}

// ownWait reports a loop after li in the same action that waits for the
// process to go (it tests a pid, /proc, kill -0, checkpid, pidof or the
// pid file): the script's own wait, which a fix must not wait in front of.
func (f *fixer) ownWait(li int) []int {
	ctx := f.s.ctx[li]
	for j := li + 1; j < len(f.s.ll) && f.s.ctx[j] == ctx; j++ {
		for _, c := range f.s.cmds[j] {
			if c.lead != "while" && c.lead != "until" {
				continue
			}
			t := strings.ToLower(f.s.ll[j].text)
			for _, k := range []string{"pid", "/proc/", "kill -0", "checkpid", "status"} {
				if strings.Contains(t, k) {
					return f.s.lineRange(li, j)
				}
			}
		}
	}
	return nil
}

func sigOrTerm(sig syscall.Signal) syscall.Signal {
	if sig == 0 {
		return syscall.SIGTERM
	}
	return sig
}

// upgradeNote records the one decision for upgrade actions of both
// styles: the graceful signal to the old master is left as it is. The new
// master already serves; the old one drains in the background and nothing
// after it starts a daemon or removes a pid file, so there is nothing to
// wait for (nginx's "upgrade" in pkg-oss's rpm and debian scripts and in
// Debian's nginx-common).
func (f *fixer) upgradeNote(ctx string) {
	f.note("%s: %s to the old master is left as it is: the new master serves while the old one drains, and nothing waits on it", ctx, signals.Name(f.preset.Graceful))
}

func (f *fixer) keptSignalNote() {
	if f.known && f.preset.Notes != "" {
		f.note("%s: %s", f.daemon, f.preset.Notes)
	}
	if f.preset.Graceful != syscall.SIGTERM {
		return
	}
	if f.known && f.preset.NoGracefulStop {
		f.note("%s has no graceful stop: TERM is kept, and the stop now waits for %s to exit, so that a restart does not start a second one beside it", f.daemon, f.daemon)
	} else if f.known {
		f.note("%s: TERM is its graceful stop; the signal is kept, the wait before escalating is added", f.daemon)
	} else {
		f.note("%s: no graceful stop known (preset generic), TERM is kept; use --preset if the daemon has one", f.daemon)
	}
}

// daemonProg is the program a daemon() call starts: the first word after
// its options (--user U, --pidfile=F, --check B, +/-nice, --force).
func daemonProg(ws []word) string {
	for i := 1; i < len(ws); i++ {
		w := unquote(ws[i].raw)
		switch {
		case w == "--user" || w == "--pidfile" || w == "--check":
			i++
		case strings.HasPrefix(w, "-") || strings.HasPrefix(w, "+"):
		default:
			return ws[i].raw
		}
	}
	return ""
}

type killprocArgs struct {
	pidfile, binary, delay, prog string // raw words; "" when absent
	sig                          *word
}

// parseKillproc reads killproc's arguments the way the functions library
// does: -p, -b, -d in exactly that order, then the program, then an
// optional signal.
func parseKillproc(ws []word) killprocArgs {
	var k killprocArgs
	i := 1
	opt := func(flag string, dst *string) {
		if i+1 < len(ws) && ws[i].raw == flag {
			*dst = ws[i+1].raw
			i += 2
		}
	}
	opt("-p", &k.pidfile)
	opt("-b", &k.binary)
	opt("-d", &k.delay)
	if i < len(ws) {
		k.prog = ws[i].raw
	}
	if i+1 < len(ws) {
		k.sig = &ws[i+1]
	}
	return k
}

// parseKillprocLoose reads killproc's arguments as the author meant them:
// options anywhere.
func parseKillprocLoose(ws []word) killprocArgs {
	var k killprocArgs
	for i := 1; i < len(ws); i++ {
		switch ws[i].raw {
		case "-p", "-b", "-d":
			if i+1 < len(ws) {
				switch ws[i].raw {
				case "-p":
					k.pidfile = ws[i+1].raw
				case "-b":
					k.binary = ws[i+1].raw
				case "-d":
					k.delay = ws[i+1].raw
				}
				i++
			}
			continue
		}
		if k.prog == "" {
			k.prog = ws[i].raw
		} else if k.sig == nil {
			k.sig = &ws[i]
		}
	}
	return k
}

func sameKillproc(a, b killprocArgs) bool {
	sa, sb := "", ""
	if a.sig != nil {
		sa = a.sig.raw
	}
	if b.sig != nil {
		sb = b.sig.raw
	}
	return a.pidfile == b.pidfile && a.binary == b.binary && a.delay == b.delay && a.prog == b.prog && sa == sb
}

// parseSig reads a signal word (-QUIT, QUIT, -3, -SIGQUIT, $SIG).
func (f *fixer) parseSig(w string) (syscall.Signal, bool) {
	v, ok := f.s.vars.expand(w)
	if !ok {
		return 0, false
	}
	sig, err := signals.Parse(strings.TrimPrefix(v, "-"))
	return sig, err == nil
}

func (f *fixer) killproc(li int, kind ctxKind, c command) error {
	s := f.s
	strict, loose := parseKillproc(c.words), parseKillprocLoose(c.words)
	if f.shim && loose.pidfile != "" {
		return nil // graceshim takes TERM and HUP and translates them
	}
	ordered := sameKillproc(strict, loose)
	text := strings.TrimSpace(s.ll[li].text[c.words[0].start:c.words[len(c.words)-1].end])
	var sig syscall.Signal
	if loose.sig != nil {
		var ok bool
		if sig, ok = f.parseSig(loose.sig.raw); !ok {
			return &UnsureError{Reason: "killproc signal " + loose.sig.raw + " cannot be read", Lines: s.lineRange(li, li)}
		}
	}
	pidWord := loose.pidfile
	if pidWord != "" {
		pidWord = quoteWord(pidWord)
	}
	start, end := c.span()
	ctx := s.ctx[li]

	stop := sig == 0 || f.isStopSignal(sig)
	if kind == ctxStop && f.unknownDaemon(li) {
		return nil // whatever it sends, it is meant to stop a daemon no preset names
	}
	if kind == ctxReload && stop {
		return &UnsureError{Reason: "a reload that stops the daemon (" + text + ")", Lines: s.lineRange(li, li)}
	}
	if stop && (kind == ctxStop || kind == ctxUpgrade) {
		if kind == ctxUpgrade && !f.known {
			return nil
		}
		if kind == ctxStop {
			f.stopTarget(li, loose.pidfile)
		}
		if pidWord == "" {
			pidWord = f.pidWord()
		}
		if pidWord == "" {
			// killproc's own default (__pids_var_run): /var/run/BASE.pid.
			if v, ok := s.vars.expand(loose.prog); ok && v != "" {
				pidWord = shellQuote("/var/run/" + path.Base(v) + ".pid")
			}
		}
		if pidWord == "" {
			return &UnsureError{Reason: "killproc without -p falls back to pidof, which matches workers too, and the script names no pid file", Lines: s.lineRange(li, li)}
		}
		if kind == ctxUpgrade && sig == f.preset.Graceful && sig != 0 && !f.laterStartOrRemove(li) && loose.pidfile != "" && ordered {
			f.upgradeNote(ctx)
			return nil
		}
		if f.ownWaited[ctx] && kind == ctxStop {
			f.note("%s: %s after the script's own wait is its escalation; left as it is", ctx, text)
			return nil
		}
		if own := f.ownWait(li); own != nil && kind == ctxStop {
			f.ownWaited[ctx] = true
			if sig == f.preset.Graceful && ordered {
				f.note("%s: the script waits for %s to go itself (lines %s) after %s; left as it is", ctx, f.daemon, lineList(own), signals.Name(sig))
				return nil
			}
			repl := "killproc -p " + pidWord + " " + loose.prog + " -" + signals.Name(f.preset.Graceful)
			f.edits[li] = append(f.edits[li], edit{start, end, repl})
			f.change(li, "%s: %s sends %s; the script waits for %s to go itself (lines %s), so only the signal changes: now %s", ctx, text, f.describe(sigOrTerm(sig)), f.daemon, lineList(own), repl)
			return nil
		}
		var why []string
		switch {
		case !ordered:
			why = append(why, "has its options out of order (killproc reads -p, -b, -d in that order), so it signals nothing and returns 0")
		case sig == 0:
			delay := "3"
			if loose.delay != "" {
				delay = unquote(loose.delay)
				if v, ok := s.vars.expand(loose.delay); ok {
					delay = v
				}
			}
			why = append(why, fmt.Sprintf("sends %s and KILLs after %s s", f.describe(syscall.SIGTERM), delay))
		default:
			why = append(why, fmt.Sprintf("sends %s and returns at once, before the process is gone", f.describe(sig)))
		}
		if loose.pidfile == "" {
			why = append(why, "without -p it falls back to pidof, which matches workers")
		}
		if len(c.assign) > 0 {
			// LSB=1 killproc ...: the prefix only changes killproc's
			// exit codes; it cannot stand before an if.
			start = c.assign[0].start
		}
		bound := TimeoutVar
		if v := refersTo(loose.delay); v != "" && f.settable(v) && ordered {
			// killproc -d ${STOP_DELAY}, which /etc/sysconfig/NAME sets:
			// the admin's bound keeps working, now for the graceful stop.
			bound = v
			if err := f.judgeDelay(li, v); err != nil {
				return err
			}
		}
		call := f.stopCall(pidWord, loose.pidfile == "", bound)
		if f.style == StyleRedHat {
			call = f.reported(call, loose.prog)
		}
		f.edits[li] = append(f.edits[li], edit{start, end, call})
		found := "every pid in %s that runs it"
		if loose.pidfile == "" {
			found += ", else pidof as before"
		}
		f.change(li, "%s: %s %s; now %s to %s's masters ("+found+"), wait up to $%s, then TERM, then KILL, and report [  OK  ] or [FAILED] as killproc did",
			ctx, text, strings.Join(why, "; "), signals.Name(f.preset.Graceful), f.daemon, unquote(pidWord), bound)
		f.keptSignalNote()
		return nil
	}
	if stop {
		return nil
	}

	// A signal that is not a stop: reload, upgrade, log reopening.
	want := sig
	if kind == ctxReload && f.known && f.preset.Reload != 0 && sig != f.preset.Reload && sig != f.preset.Upgrade {
		want = f.preset.Reload
	}
	if want == sig && ordered && loose.pidfile != "" {
		return nil
	}
	if pidWord == "" {
		pidWord = f.pidWord()
	}
	if pidWord == "" {
		if want == sig && ordered {
			return nil // nothing better to offer without a pid file
		}
		pidWord = ""
	}
	var b strings.Builder
	b.WriteString("killproc")
	if pidWord != "" {
		b.WriteString(" -p " + pidWord)
		if loose.binary != "" {
			b.WriteString(" -b " + loose.binary)
		}
	}
	b.WriteString(" " + loose.prog + " -" + signals.Name(want))
	f.edits[li] = append(f.edits[li], edit{start, end, b.String()})
	var why []string
	if want != sig {
		why = append(why, fmt.Sprintf("%s sends %s; %s's graceful reload is %s", ctx, signals.Name(sig), f.daemon, signals.Name(want)))
		if f.preset.Name == "httpd" && sig == syscall.SIGHUP {
			why[len(why)-1] += " (HUP is a hard restart)"
		}
	}
	if !ordered {
		why = append(why, "options out of order (killproc reads -p, -b, -d in that order) made it signal nothing")
	}
	if loose.pidfile == "" && pidWord != "" {
		why = append(why, "without -p it fell back to pidof, which signals workers too")
	}
	if loose.delay != "" {
		why = append(why, "-d dropped: killproc ignores the delay with a signal")
	}
	f.change(li, "%s: %s: %s", ctx, text, strings.Join(why, "; "))
	return nil
}

// ssdArgs are the start-stop-daemon options the analysis cares about.
type ssdArgs struct {
	stop             *word
	retry, signal    *word // the value words
	retryOpt, sigOpt *word // the option words (same as the value for --opt=value)
	pidfile          *word
	matchers         int // --exec, --name, --user given
}

func parseSSD(ws []word) ssdArgs {
	var a ssdArgs
	for i := 1; i < len(ws); i++ {
		raw := ws[i].raw
		name, val, eq := strings.Cut(raw, "=")
		value := func() *word {
			if eq {
				w := ws[i]
				w.raw = val
				w.start = ws[i].start + len(name) + 1
				return &w
			}
			if i+1 < len(ws) {
				i++
				return &ws[i]
			}
			return nil
		}
		opt := &ws[i]
		switch name {
		case "--stop", "-K":
			a.stop = opt
		case "--retry", "-R":
			a.retryOpt, a.retry = opt, value()
		case "--signal", "-s":
			a.sigOpt, a.signal = opt, value()
		case "--pidfile", "-p":
			a.pidfile = value()
		case "--exec", "-x", "--name", "-n", "--user", "-u":
			value()
			a.matchers++
		case "--startas", "-a", "--chuid", "-c", "--group", "-g", "--chroot", "-r", "--chdir", "-d", "--nicelevel", "-N", "--umask", "-k", "--output", "-O", "--remove-pidfile", "--make-pidfile":
			if name != "--remove-pidfile" && name != "--make-pidfile" {
				value()
			}
		case "--":
			return a
		}
	}
	return a
}

// schedule is a start-stop-daemon --retry schedule.
type schedule struct {
	steps []string // signal, timeout, signal, timeout...
}

// parseSchedule reads "QUIT/30/TERM/5/KILL/5" or "30" (with the --signal
// signal, TERM by default).
func parseSchedule(s string, sig string) schedule {
	if !strings.Contains(s, "/") {
		if sig == "" {
			sig = "TERM"
		}
		return schedule{steps: []string{sig, s, "KILL", s}}
	}
	return schedule{steps: strings.Split(s, "/")}
}

// problems says what is wrong with a stop schedule's bounds: the graceful
// wait must be long or overridable (a $VARIABLE in the script), and the
// schedule must end in KILL.
func (sc schedule) problems(raw *word) []string {
	var out []string
	rawSteps := []string{}
	if raw != nil {
		rawSteps = strings.Split(unquote(raw.raw), "/")
	}
	t := sc.steps[1]
	overridable := len(rawSteps) >= 2 && strings.Contains(rawSteps[1], "$")
	if n, err := strconv.Atoi(t); !overridable && t != "forever" && (err != nil || n < 30) {
		out = append(out, fmt.Sprintf("waits only %ss before escalating", t))
	}
	kill := false
	for i := 0; i < len(sc.steps); i += 2 {
		if s := strings.ToUpper(strings.TrimPrefix(sc.steps[i], "-")); s == "KILL" || s == "9" || s == "SIGKILL" {
			kill = true
		}
		if sc.steps[i] == "forever" || (i+1 < len(sc.steps) && sc.steps[i+1] == "forever") {
			kill = false
			break
		}
	}
	if !kill {
		out = append(out, "never escalates to KILL")
	}
	return out
}

func (f *fixer) startStopDaemon(li int, kind ctxKind, c command) error {
	s := f.s
	a := parseSSD(c.words)
	if a.stop == nil {
		return nil
	}
	if f.shim {
		if kind == ctxStop && a.pidfile != nil {
			f.stopTarget(li, a.pidfile.raw)
		}
		return nil // graceshim takes TERM and HUP and translates them
	}
	text := strings.TrimSpace(s.ll[li].text[c.words[0].start:c.words[len(c.words)-1].end])
	sigName := ""
	if a.signal != nil {
		v, ok := s.vars.expand(a.signal.raw)
		if !ok {
			return &UnsureError{Reason: "start-stop-daemon signal " + a.signal.raw + " cannot be read", Lines: s.lineRange(li, li)}
		}
		sigName = v
	}
	var sched schedule
	var retryVal string
	if a.retry != nil {
		v, ok := s.vars.expand(a.retry.raw)
		if !ok {
			return &UnsureError{Reason: "start-stop-daemon --retry " + a.retry.raw + " cannot be read", Lines: s.lineRange(li, li)}
		}
		retryVal = v
		sched = parseSchedule(v, sigName)
	} else {
		if sigName == "" {
			sigName = "TERM"
		}
		sched = schedule{steps: []string{sigName}}
	}
	first := strings.TrimPrefix(sched.steps[0], "-")
	if first == "0" {
		return nil // waits for processes to go; sends nothing
	}
	sig, err := signals.Parse(first)
	if err != nil {
		return &UnsureError{Reason: "start-stop-daemon schedule " + retryVal + " cannot be read", Lines: s.lineRange(li, li)}
	}

	if kind == ctxStop && f.unknownDaemon(li) {
		return nil
	}
	if !f.isStopSignal(sig) {
		if kind != ctxReload || !f.known || f.preset.Reload == 0 || sig == f.preset.Reload || a.signal == nil {
			return nil
		}
		f.edits[li] = append(f.edits[li], edit{a.signal.start, a.signal.end, signals.Name(f.preset.Reload)})
		msg := fmt.Sprintf("%s: %s sends %s; %s's graceful reload is %s", s.ctx[li], text, signals.Name(sig), f.daemon, signals.Name(f.preset.Reload))
		if f.preset.Name == "httpd" && sig == syscall.SIGHUP {
			msg += " (HUP is a hard restart)"
		}
		f.changes = append(f.changes, Change{Line: s.ll[li].first, Summary: msg})
		return nil
	}
	if kind == ctxReload {
		return &UnsureError{Reason: "a reload that stops the daemon (" + text + ")", Lines: s.lineRange(li, li)}
	}
	if kind == ctxUpgrade && (!f.known || sig == f.preset.Graceful && !f.laterStartOrRemove(li)) {
		if f.known {
			f.upgradeNote(s.ctx[li])
		}
		return nil
	}
	if kind == ctxStop && f.unknownDaemon(li) {
		return nil
	}
	pidRaw := ""
	if a.pidfile != nil {
		pidRaw = a.pidfile.raw
	}
	if kind == ctxStop {
		f.stopTarget(li, pidRaw)
	}
	if f.shim {
		return nil // graceshim takes TERM and stops the daemon gracefully
	}
	if a.retry != nil {
		if v := refersTo(a.retry.raw); v != "" && f.settable(v) {
			return f.adminSchedule(li, v, text)
		}
	}
	if own := f.ownWait(li); own != nil && a.retry == nil && kind == ctxStop {
		if sig == f.preset.Graceful {
			f.note("%s: the script waits for %s to go itself (lines %s) after %s; left as it is", s.ctx[li], f.daemon, lineList(own), signals.Name(sig))
			return nil
		}
		g := signals.Name(f.preset.Graceful)
		if a.signal != nil {
			f.edits[li] = append(f.edits[li], edit{a.signal.start, a.signal.end, g})
		} else {
			f.edits[li] = append(f.edits[li], edit{a.stop.end, a.stop.end, " --signal " + g})
		}
		f.change(li, "%s: %s sends %s; the script waits for %s to go itself (lines %s), so only the signal changes: now %s", s.ctx[li], text, f.describe(sig), f.daemon, lineList(own), g)
		return nil
	}

	// Right: graceful first, a wait that is overridable or long, then KILL,
	// and a pid file so only the master gets the graceful signal.
	var why []string
	if sig != f.preset.Graceful {
		why = append(why, "sends "+f.describe(sig))
	}
	if len(sched.steps) < 2 {
		why = append(why, "does not wait (no --retry)")
	} else {
		why = append(why, sched.problems(a.retry)...)
	}
	if a.pidfile == nil && f.pidWord() != "" {
		why = append(why, "has no --pidfile, so it signals every matching process, workers included")
	}
	if a.pidfile == nil && f.pidWord() == "" {
		return &UnsureError{Reason: "start-stop-daemon --stop without --pidfile matches workers too, and the script names no pid file", Lines: s.lineRange(li, li)}
	}
	if len(why) == 0 {
		f.keptSignalNote()
		return nil
	}
	newRetry := fmt.Sprintf(`"%s/$%s/TERM/5/KILL/5"`, signals.Name(f.preset.Graceful), TimeoutVar)
	if f.preset.Graceful == syscall.SIGTERM {
		newRetry = fmt.Sprintf(`"TERM/$%s/KILL/5"`, TimeoutVar)
	}
	f.needTimeout = true
	if a.retry != nil {
		f.edits[li] = append(f.edits[li], edit{a.retry.start, a.retry.end, newRetry})
	} else {
		f.edits[li] = append(f.edits[li], edit{a.stop.end, a.stop.end, " --retry " + newRetry})
	}
	if a.signal != nil {
		// The schedule names every signal; a --signal would only confuse.
		lineText := s.ll[li].text
		from := a.sigOpt.start
		for from > 0 && (lineText[from-1] == ' ' || lineText[from-1] == '\t') {
			from--
		}
		f.edits[li] = append(f.edits[li], edit{from, a.signal.end, ""})
	}
	if a.pidfile == nil {
		_, end := c.span()
		f.edits[li] = append(f.edits[li], edit{end, end, " --pidfile " + f.pidWord()})
	}
	f.change(li, "%s: %s %s; now --retry %s", s.ctx[li], text, strings.Join(why, ", "), unquote(newRetry))
	f.keptSignalNote()
	return nil
}

// settable reports whether the script's variable v can be set by an
// admin: its value defaults to itself (V="${V:-...}", V=${V-...}), as
// Debian's nginx-common does with STOP_SCHEDULE, which /etc/default/nginx
// may set.
func (f *fixer) settable(v string) bool {
	raw := unquote(f.s.vars[v])
	return strings.Contains(raw, "${"+v+":-") || strings.Contains(raw, "${"+v+"-")
}

// adminSchedule judges a start-stop-daemon --retry schedule an admin can
// set: the stop line is left alone (the admin's setting keeps working);
// only the script's default is judged, and raised when it is too short.
func (f *fixer) adminSchedule(li int, v, text string) error {
	s := f.s
	def, ok := s.vars.expand(s.vars[v])
	if !ok {
		return &UnsureError{Reason: "start-stop-daemon --retry $" + v + ": its default cannot be read", Lines: s.lineRange(li, li)}
	}
	sched := parseSchedule(def, "")
	first, _ := signals.Parse(strings.TrimPrefix(sched.steps[0], "-"))
	var why []string
	if first != f.preset.Graceful {
		why = append(why, "starts with "+f.describe(first))
	}
	why = append(why, sched.problems(nil)...)
	if len(why) == 0 {
		f.note("%s: %s uses $%s, which an admin sets in /etc/default/%s; its default %s is right", s.ctx[li], text, v, f.serviceName(), def)
		return nil
	}
	want := fmt.Sprintf("%s/%d/TERM/5/KILL/5", signals.Name(f.preset.Graceful), f.opts.StopTimeout)
	if f.preset.Graceful == syscall.SIGTERM {
		want = fmt.Sprintf("TERM/%d/KILL/5", f.opts.StopTimeout)
	}
	return f.raiseDefault(li, v, def, want, strings.Join(why, ", "),
		fmt.Sprintf("an admin's %s in /etc/default/%s still wins", v, f.serviceName()))
}

// judgeDelay keeps a killproc -d delay an admin sets (STOP_DELAY=${STOP_DELAY-10}
// in IUS's httpd script) as the bound of the graceful stop, and raises its
// default when it is too short for requests to finish.
func (f *fixer) judgeDelay(li int, v string) error {
	def, ok := f.s.vars.expand(f.s.vars[v])
	if !ok {
		return &UnsureError{Reason: "killproc -d $" + v + ": its default cannot be read", Lines: f.s.lineRange(li, li)}
	}
	secs, ok := killprocDelay(def)
	if !ok {
		return &UnsureError{Reason: "killproc -d $" + v + ": its default " + def + " is not a time killproc reads", Lines: f.s.lineRange(li, li)}
	}
	if secs >= 30 {
		f.note("%s: $%s (default %s), which an admin sets in /etc/sysconfig/%s, now bounds the graceful stop before TERM", f.s.ctx[li], v, def, f.serviceName())
		return nil
	}
	return f.raiseDefault(li, v, def, strconv.Itoa(f.opts.StopTimeout),
		fmt.Sprintf("waits only %d s before escalating", secs),
		fmt.Sprintf("it now bounds the graceful stop before TERM; an admin's %s in /etc/sysconfig/%s still wins", v, f.serviceName()))
}

// killprocDelay reads a delay as killproc -d does: N, or N with s, m, h
// or d.
func killprocDelay(s string) (int, bool) {
	mult := 1
	switch {
	case strings.HasSuffix(s, "s"):
		s = strings.TrimSuffix(s, "s")
	case strings.HasSuffix(s, "m"):
		s, mult = strings.TrimSuffix(s, "m"), 60
	case strings.HasSuffix(s, "h"):
		s, mult = strings.TrimSuffix(s, "h"), 3600
	case strings.HasSuffix(s, "d"):
		s, mult = strings.TrimSuffix(s, "d"), 86400
	}
	n, err := strconv.Atoi(s)
	return n * mult, err == nil && n >= 0
}

// raiseDefault rewrites the default of the top-level setting v from def
// to want, in place (V=${V-def} becomes V=${V-want}).
func (f *fixer) raiseDefault(li int, v, def, want, why, after string) error {
	s := f.s
	for dl, l := range s.ll {
		if s.inFunc[dl] || s.depth[dl] > 0 {
			continue
		}
		for _, c := range s.cmds[dl] {
			for _, w := range c.assign {
				if !strings.HasPrefix(w.raw, v+"=") || len(c.words) > 0 {
					continue
				}
				val := w.raw[len(v)+1:]
				i := strings.Index(val, def)
				if i < 0 {
					return &UnsureError{Reason: "the default of $" + v + " cannot be rewritten in place", Lines: s.lineRange(dl, dl)}
				}
				at := w.start + len(v) + 1 + i
				f.edits[dl] = append(f.edits[dl], edit{at, at + len(def), want})
				f.changes = append(f.changes, Change{Line: l.first, Summary: fmt.Sprintf(
					"%s's default %s %s; default now %s (the stop on line %d keeps using $%s: %s)",
					v, def, why, want, s.ll[li].first, v, after)})
				return nil
			}
		}
	}
	return &UnsureError{Reason: "the default of $" + v + " is not set at the top level", Lines: s.lineRange(li, li)}
}

// catPidfile returns the pid file read by $(cat F), `cat F` or $(< F).
func catPidfile(w string) string {
	s := unquote(w)
	for _, p := range []struct{ open, close string }{{"$(cat ", ")"}, {"`cat ", "`"}, {"$(< ", ")"}, {"$(<", ")"}} {
		if strings.HasPrefix(s, p.open) && strings.HasSuffix(s, p.close) {
			return strings.TrimSpace(s[len(p.open) : len(s)-len(p.close)])
		}
	}
	return ""
}

func (f *fixer) kill(li int, kind ctxKind, c command) error {
	s := f.s
	text := strings.TrimSpace(s.ll[li].text[c.words[0].start:c.words[len(c.words)-1].end])
	sig := syscall.SIGTERM
	var sigWord *word
	i := 1
	if i < len(c.words) {
		switch w := unquote(c.words[i].raw); {
		case w == "-s" || w == "-n":
			if i+1 < len(c.words) {
				sigWord = &c.words[i+1]
				i += 2
			}
		case strings.HasPrefix(w, "-") && w != "--":
			sigWord = &c.words[i]
			i++
		}
	}
	if i < len(c.words) && c.words[i].raw == "--" {
		i++
	}
	if sigWord != nil {
		v, ok := f.parseSig(sigWord.raw)
		if !ok {
			if strings.TrimPrefix(unquote(sigWord.raw), "-") == "0" {
				return nil // kill -0: a liveness check
			}
			return &UnsureError{Reason: "kill signal " + sigWord.raw + " cannot be read", Lines: s.lineRange(li, li)}
		}
		sig = v
	}
	if kind == ctxStop && f.unknownDaemon(li) {
		return nil
	}
	if i != len(c.words)-1 {
		if kind == ctxStop && f.isStopSignal(sig) {
			return &UnsureError{Reason: "kill of something other than the pid in a pid file (" + text + ")", Lines: s.lineRange(li, li)}
		}
		return nil
	}
	target := c.words[i].raw
	pidfile := catPidfile(target)
	if pidfile == "" {
		if kind == ctxStop && f.isStopSignal(sig) {
			return &UnsureError{Reason: "kill of a pid not read from a pid file (" + text + ")", Lines: s.lineRange(li, li)}
		}
		return nil
	}
	pidWord := quoteWord(pidfile)
	start, end := c.span()
	if !f.isStopSignal(sig) {
		if kind != ctxReload || !f.known || f.preset.Reload == 0 || sig == f.preset.Reload || sig == f.preset.Upgrade || sigWord == nil {
			return nil
		}
		f.edits[li] = append(f.edits[li], edit{sigWord.start, sigWord.end, "-" + signals.Name(f.preset.Reload)})
		f.change(li, "%s: %s sends %s; %s's graceful reload is %s", s.ctx[li], text, signals.Name(sig), f.daemon, signals.Name(f.preset.Reload))
		return nil
	}
	if kind == ctxReload {
		return &UnsureError{Reason: "a reload that stops the daemon (" + text + ")", Lines: s.lineRange(li, li)}
	}
	if kind == ctxUpgrade && (!f.known || sig == f.preset.Graceful && !f.laterStartOrRemove(li)) {
		if f.known {
			f.upgradeNote(s.ctx[li])
		}
		return nil
	}
	if kind == ctxStop && f.unknownDaemon(li) {
		return nil
	}
	if kind == ctxStop {
		f.stopTarget(li, pidfile)
	}
	if own := f.ownWait(li); own != nil {
		if sig == f.preset.Graceful {
			f.note("%s: the script waits for %s to go itself (lines %s) after %s; left as it is", s.ctx[li], f.daemon, lineList(own), signals.Name(sig))
			return nil
		}
		g := "-" + signals.Name(f.preset.Graceful)
		if sigWord != nil {
			f.edits[li] = append(f.edits[li], edit{sigWord.start, sigWord.end, g})
		} else {
			f.edits[li] = append(f.edits[li], edit{c.words[0].end, c.words[0].end, " " + g})
		}
		f.change(li, "%s: %s sends %s; the script waits for %s to go itself (lines %s), so only the signal changes: now kill %s", s.ctx[li], text, f.describe(sig), f.daemon, lineList(own), g)
		return nil
	}
	f.edits[li] = append(f.edits[li], edit{start, end, f.failStop(li, c, f.stopCall(pidWord, false, TimeoutVar))})
	f.change(li, "%s: %s sends %s and does not wait for the process to go; now %s, wait up to $%s s, then TERM, then KILL",
		s.ctx[li], text, f.describe(sig), signals.Name(f.preset.Graceful), TimeoutVar)
	f.keptSignalNote()
	return nil
}

// insertPreamble adds STOP_TIMEOUT and graceshim_stop after the script
// reads its sysconfig or default file, at the top level.
func (f *fixer) insertPreamble() {
	s := f.s
	name := f.serviceName()
	confDir := "/etc/sysconfig/"
	if f.style == StyleLSB {
		confDir = "/etc/default/"
	}
	conf, lib := -1, -1
	confPath := confDir + name
	for li, cs := range s.cmds {
		if s.inFunc[li] || s.ctx[li] != "" {
			continue
		}
		for _, c := range cs {
			p, ok := s.sourced(c)
			if !ok {
				continue
			}
			switch base := path.Base(p); {
			case strings.HasSuffix(p, "functions"):
				lib = li
			case base == "network" || base == "rcS" || base == "vars.sh" || base == "init":
			case strings.Contains(p, "sysconfig/") || strings.Contains(p, "default/"):
				// The daemon's own settings file; the first one wins,
				// unless a later one is named after the service.
				if conf < 0 || base == name {
					conf, confPath = li, p
				}
			}
		}
	}
	var block []string
	at := conf
	if at < 0 {
		at = lib
		if at < 0 {
			at = f.firstCode()
			// After the settings, before the first function: where
			// a reader looks for them (unicorn's example sets its
			// variables, then defines sig()).
			for li := range s.ll {
				if s.inFunc[li] {
					if li > 0 {
						at = li - 1
					}
					break
				}
			}
		}
		block = append(block, "",
			fmt.Sprintf("# Added by graceshim initscript fix: %s is read from here.", TimeoutVar),
			"# shellcheck source=/dev/null",
			fmt.Sprintf("[ -f %s%s ] && . %s%s", confDir, name, confDir, name))
	}
	// After the block the source line sits in (an if ... fi) ends.
	for at < len(s.ll)-1 && s.depth[at] > 0 {
		at++
	}
	if _, ok := s.vars[TimeoutVar]; !ok && f.needTimeout {
		unit := "seconds (or Nm, as killproc -d reads it)"
		if !f.needFunc {
			unit = "seconds" // start-stop-daemon --retry reads whole seconds
		}
		block = append(block, "",
			fmt.Sprintf("# Longest graceful stop before TERM and then KILL, in %s;", unit),
			fmt.Sprintf("# set %s in %s to change it.", TimeoutVar, confPath),
			fmt.Sprintf("%s=${%s:-%d}", TimeoutVar, TimeoutVar, f.opts.StopTimeout))
	}
	if f.needFunc && !s.funcs["graceshim_stop"] {
		block = append(block, "")
		block = append(block, strings.Split(strings.TrimSuffix(StopFunc, "\n"), "\n")...)
	}
	if len(block) == 0 {
		return
	}
	l := s.ll[at]
	f.edits[at] = append(f.edits[at], edit{len(l.text), len(l.text), "\n" + strings.Join(block, "\n")})
	what := []string{}
	if conf < 0 {
		what = append(what, "sourcing of "+confDir+name)
	}
	if _, ok := s.vars[TimeoutVar]; !ok && f.needTimeout {
		waitFor := "to finish its requests"
		if f.preset.NoGracefulStop {
			waitFor = "to exit"
		}
		what = append(what, fmt.Sprintf("%s=%d: a stop waits up to %d s for %s %s, then TERM, then KILL; set %s in %s to change it", TimeoutVar, f.opts.StopTimeout, f.opts.StopTimeout, f.daemon, waitFor, TimeoutVar, confPath))
	}
	if f.needFunc && !s.funcs["graceshim_stop"] {
		what = append(what, "the graceshim_stop function (signal the masters, wait, escalate)")
	}
	f.changes = append(f.changes, Change{Line: l.last + 1, Summary: "added " + strings.Join(what, " and ")})
}

// firstCode is the logical line after the leading comments.
func (f *fixer) firstCode() int {
	for li, l := range f.s.ll {
		t := strings.TrimSpace(l.text)
		if t != "" && !strings.HasPrefix(t, "#") {
			if li > 0 {
				return li - 1
			}
			return 0
		}
	}
	return 0
}

func (f *fixer) result(src []byte) *Result {
	r := &Result{Style: f.style, Daemon: f.daemon, Preset: f.preset, Notes: f.notes}
	if len(f.edits) == 0 {
		r.Output = src
		return r
	}
	var out []string
	for li, l := range f.s.ll {
		text := l.text
		es := f.edits[li]
		// Right to left; at the same offset a deletion or replacement
		// (end > start) goes before an insertion there, so that it cannot
		// eat the inserted text.
		sort.SliceStable(es, func(i, j int) bool {
			if es[i].start != es[j].start {
				return es[i].start > es[j].start
			}
			return es[i].end > es[j].end
		})
		for _, e := range es {
			text = text[:e.start] + e.text + text[e.end:]
		}
		out = append(out, text)
	}
	joined := strings.Join(out, "\n")
	if f.s.finalNL {
		joined += "\n"
	}
	r.Output = []byte(joined)
	sort.SliceStable(f.changes, func(i, j int) bool { return f.changes[i].Line < f.changes[j].Line })
	r.Changes = f.changes
	return r
}
