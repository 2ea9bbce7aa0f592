package unitgen

import (
	"fmt"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/graceshim/graceshim/signals"
)

// uwsgiHook is the master hook that makes SIGTERM uWSGI 2.0's graceful
// stop. Without it TERM is a brutal reload ("SIGTERM brutally reload",
// https://uwsgi-docs.readthedocs.io/en/latest/Management.html; measured
// here with Debian 12's uWSGI 2.0.21: after TERM the master logs
// "gracefully (RE)spawned uWSGI master process" and runs on), with
// --die-on-term an immediate stop, and INT and QUIT kill at once; the
// hook runs gracefully_kill_them_all on TERM (unbit/uwsgi issue #849).
const uwsgiHook = "gracefully_kill_them_all"

// uwsgiHookFix is how a user makes TERM uWSGI's graceful stop.
const uwsgiHookFix = `start uwsgi with --master --hook-master-start "unix_signal:15 gracefully_kill_them_all" (hook-master-start = unix_signal:15 gracefully_kill_them_all in the [uwsgi] section of its ini)`

// uwsgiHooked says whether a uWSGI command line runs the hook that makes
// SIGTERM its graceful stop: on the command line, or in an ini file it
// names (see uwsgiIniFiles). cannot names a configuration file lint
// cannot read (a specifier such as %i.ini, a variable, a relative path,
// an unreadable file, a YAML, JSON or XML file): then it cannot tell, and hooked
// is false. dieOnTerm says --die-on-term (die-on-term = true) was seen.
func uwsgiHooked(root string, cmd []string) (hooked, dieOnTerm bool, cannot string) {
	for _, a := range cmd[min(1, len(cmd)):] {
		if strings.Contains(a, uwsgiHook) {
			return true, false, ""
		}
		if a == "--die-on-term" {
			dieOnTerm = true
		}
	}
	opts, cannot := uwsgiConfigOptions(root, cmd)
	for _, o := range opts {
		switch {
		case strings.HasPrefix(o.key, "hook-") && strings.Contains(o.value, uwsgiHook):
			return true, false, ""
		case o.key == "die-on-term" && uwsgiFlag(o.value):
			dieOnTerm = true
		}
	}
	return false, dieOnTerm, cannot
}

// uwsgiIniFiles are the ini files a uWSGI command line names: --ini FILE,
// --ini=FILE (or with one dash), --include or --inherit with an ini
// file, or a bare FILE.ini. other is a configuration file it names in a
// format graceshim does not read (--yaml, --json, --xml, --config, a bare
// FILE.yaml...; uwsgi --help, and measured: uWSGI 2.0.21 loads a bare
// app.yaml as YAML): what it sets cannot be told.
func uwsgiIniFiles(cmd []string) (inis []string, other string) {
	isIni := func(f string) bool {
		if i := strings.LastIndexByte(f, ':'); i > strings.LastIndexByte(f, '/') {
			f = f[:i] // FILE.ini:SECTION
		}
		return strings.HasSuffix(f, ".ini")
	}
	add := func(f string) {
		if isIni(f) {
			inis = append(inis, f)
		} else if other == "" {
			other = f
		}
	}
	for i := 1; i < len(cmd); i++ {
		a := cmd[i]
		name, value, glued := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") {
			switch filepath.Ext(a) {
			case ".ini", ".xml", ".yaml", ".yml", ".json", ".js":
				add(a)
			}
			continue
		}
		switch name {
		case "ini", "include", "inherit", "yaml", "yml", "y", "json", "js", "j", "xml", "xmlconfig", "x", "config", "ini-paste", "ini-paste-logged":
		default:
			continue
		}
		if !glued {
			if i+1 >= len(cmd) {
				continue
			}
			i++
			value = cmd[i]
		}
		if name == "ini" {
			inis = append(inis, value)
		} else {
			add(value)
		}
	}
	return inis, other
}

// uwsgiConfigOptions are the options of the ini files a uWSGI command
// line names (uwsgiIniFiles, uwsgiIniOptions); cannot names a file whose
// options cannot be told: an ini file it cannot read first, else one in
// another format.
func uwsgiConfigOptions(root string, cmd []string) (opts []iniOption, cannot string) {
	inis, other := uwsgiIniFiles(cmd)
	opts, cannot = uwsgiIniOptions(root, inis)
	if cannot == "" {
		cannot = other
	}
	return opts, cannot
}

// iniOption is a key = value line of an ini file, and where it is.
type iniOption struct {
	key, value string
	from       string // FILE:LINE
}

// uwsgiFlag says whether an ini value sets a uWSGI flag: an empty value
// does, as uWSGI keeps a key without "=" with an empty value (unbit/uwsgi
// core/ini.c, ini_get_key); measured with Debian 12's uWSGI 2.0.21:
// "master =" and a bare "master" line ran a master, "master = false" did
// not. Other values than yes/true/on/1 are not read as set.
func uwsgiFlag(v string) bool { return v == "" || isYes(v) }

// uwsgiIniOptions reads the options of uWSGI ini files. cannot names one
// it cannot read: a specifier such as %i.ini, a variable, a relative
// path, an unreadable file.
//
// uWSGI reads one section of an ini file: [uwsgi], or the one named
// after the file's last colon (--ini FILE:SECTION); options of the other
// sections do not apply, and a line without "=" is a key with an empty
// value (unbit/uwsgi core/ini.c, uwsgi_ini_config: section_asked).
// Values are taken whole: uWSGI strips no comment after a value.
//
// An ini = or inherit = option loads another ini file as if it were
// named on the command line (measured with Debian 12's uWSGI 2.0.21:
// --show-config lists the options of the file either names); its
// options are read too, each file once.
func uwsgiIniOptions(root string, inis []string) (opts []iniOption, cannot string) {
	seen := map[string]bool{}
	for len(inis) > 0 {
		ini := inis[0]
		inis = inis[1:]
		if seen[ini] {
			continue
		}
		seen[ini] = true
		file, section := ini, "uwsgi"
		if i := strings.LastIndexByte(ini, ':'); i >= 0 {
			file = ini[:i]
			if i+1 < len(ini) {
				section = ini[i+1:]
			}
		}
		if strings.ContainsAny(file, "%$") || !filepath.IsAbs(file) {
			cannot = ini
			continue
		}
		data, err := readUnder(root, file)
		if err != nil {
			cannot = ini
			continue
		}
		current := ""
		for n, line := range strings.Split(string(data), "\n") {
			line = strings.TrimSpace(line)
			switch {
			case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
				continue
			case strings.HasPrefix(line, "["):
				current = strings.TrimSuffix(line[1:], "]")
				continue
			case current != section:
				continue
			}
			k, v, _ := strings.Cut(line, "=")
			o := iniOption{strings.TrimSpace(k), expandPlaceholders(strings.TrimSpace(v), opts), fmt.Sprintf("%s:%d", file, n+1)}
			if o.key == "ini" || o.key == "inherit" {
				inis = append(inis, o.value)
			}
			opts = append(opts, o)
		}
	}
	return opts, cannot
}

// expandPlaceholders replaces uWSGI's %(NAME) in an ini value with the
// last value of the key NAME read before it (a placeholder; measured with
// Debian 12's uWSGI 2.0.21: --show-config shows hook-master-start =
// %(stop_hook) expanded). An unknown name stays as written.
func expandPlaceholders(v string, before []iniOption) string {
	// A bound: a value may hold a placeholder that was not expanded
	// when it was read (a = %(a)).
	for range 16 {
		i := strings.Index(v, "%(")
		if i < 0 {
			return v
		}
		j := strings.IndexByte(v[i:], ')')
		if j < 0 {
			return v
		}
		name, found := v[i+2:i+j], ""
		known := false
		for _, o := range before {
			if o.key == name {
				found, known = o.value, true
			}
		}
		if !known {
			return v
		}
		v = v[:i] + found + v[i+j+1:]
	}
	return v
}

// lintUWSGI: uWSGI without the hook has no graceful stop, whichever
// signal the unit sends (see uwsgiHook); one finding says so instead of
// advising KillSignal=SIGTERM, which would make every stop a reload that
// waits out the stop timeout and ends in SIGKILL. It reports whether it
// spoke; when the hook is there the usual checks apply.
func (c *lintCtx) lintUWSGI(ks Directive, ksSet bool, stop stopTimeout) bool {
	hooked, dieOnTerm, cannot := uwsgiHooked(c.opts.Root, c.cmd)
	if hooked {
		return false
	}
	name := ks.Value
	if !ksSet {
		name = "SIGTERM (KillSignal is not set)"
	}
	what := "kills it at once, cutting requests in flight"
	sev, where := SeverityError, "neither its command line nor its ini file sets it"
	if sig, err := signals.Parse(ks.Value); err == nil && sig == syscall.SIGTERM && !dieOnTerm {
		timeout := "infinity"
		if !stop.inf {
			timeout = formatSpan(stop.d)
		}
		what = fmt.Sprintf("is a brutal reload: uwsgi runs on, and the stop waits out the stop timeout (%s) and ends in SIGKILL, cutting requests in flight", timeout)
		if cannot != "" {
			// The ini may set the hook: lint cannot tell.
			sev = SeverityWarning
		}
	}
	if cannot != "" {
		where = fmt.Sprintf("lint cannot read %s to tell whether it sets it", cannot)
	}
	d := ks
	if !ksSet {
		d = c.start
	}
	c.add(d, "KillSignal", sev,
		fmt.Sprintf("uWSGI has no graceful stop unless its master runs the hook %s (%s): %s %s", uwsgiHook, where, name, what),
		fmt.Sprintf("%s, which makes SIGTERM its graceful stop, then set KillSignal=SIGTERM with KillMode=mixed, or run it under graceshim with that hook: graceshim unit --from %s", uwsgiHookFix, fromHint(c.u)))
	return true
}

// lintUWSGIGraceshim: graceshim sends uwsgi SIGTERM as its graceful
// signal, which is one only with the hook (see uwsgiHook).
func (c *lintCtx) lintUWSGIGraceshim() {
	hooked, dieOnTerm, cannot := uwsgiHooked(c.opts.Root, c.cmd)
	if hooked {
		return
	}
	sev, where := SeverityError, "neither its command line nor its ini file sets it"
	if cannot != "" {
		sev, where = SeverityWarning, fmt.Sprintf("lint cannot read %s to tell whether it sets it", cannot)
	}
	what := "a brutal reload: the workers are killed with the requests they serve and uwsgi runs on until graceshim's fast signal"
	if dieOnTerm {
		what = "with die-on-term an immediate stop, cutting requests in flight"
	}
	c.add(c.start, "ExecStart", sev,
		fmt.Sprintf("graceshim stops uwsgi with SIGTERM, and uWSGI has no graceful stop unless its master runs the hook %s (%s): SIGTERM is %s", uwsgiHook, where, what),
		uwsgiHookFix)
}

// uwsgiConvertWarning is unit --from's word on a uWSGI command without
// the hook: the unit it writes stops uwsgi with SIGTERM too.
func uwsgiConvertWarning(daemon []string) string {
	hooked, _, cannot := uwsgiHooked("", daemon)
	switch {
	case hooked:
		return ""
	case cannot != "":
		return fmt.Sprintf("uwsgi stops gracefully on SIGTERM, which graceshim sends it, only when its master runs the hook %s; graceshim cannot read %s to tell: unless it does, %s", uwsgiHook, cannot, uwsgiHookFix)
	}
	return fmt.Sprintf("uwsgi stops gracefully on SIGTERM, which graceshim sends it, only when its master runs the hook %s, and neither its command line nor its ini file sets it (without it SIGTERM is a brutal reload): %s", uwsgiHook, uwsgiHookFix)
}

// uwsgiSocketOptions are the uWSGI options that name a socket it serves.
var uwsgiSocketOptions = map[string]bool{
	"socket": true, "s": true, "http-socket": true, "uwsgi-socket": true, "https-socket": true,
	"fastcgi-socket": true, "scgi-socket": true, "shared-socket": true, "http11-socket": true,
}

// uwsgiNamesSocket says whether a uWSGI command names a socket on its
// command line or in an ini file it names; cannot names an ini file it
// cannot read (see uwsgiHooked).
func uwsgiNamesSocket(root string, cmd []string) (named bool, cannot string) {
	for _, a := range cmd[min(1, len(cmd)):] {
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if strings.HasPrefix(a, "-") && uwsgiSocketOptions[name] {
			return true, ""
		}
	}
	opts, cannot := uwsgiConfigOptions(root, cmd)
	for _, o := range opts {
		if uwsgiSocketOptions[o.key] {
			return true, ""
		}
	}
	return false, cannot
}

// uwsgiReloadLosesSockets says why a reload would end a uWSGI that a
// socket unit of its own activates ("" when it would not): on a reload
// uWSGI execs itself again, and its sockets from systemd survive only
// where its options name them (socket =, http-socket = with the same
// address): measured with Debian 12's uWSGI 2.0.21 under Debian's
// uwsgi-app@.socket, an ini naming none made the reloaded master exit 1
// with "The -s/--socket option is missing and stdin is not a socket";
// naming the address kept it serving on the same socket.
func uwsgiReloadLosesSockets(u *Unit, daemon []string) string {
	if CheckNoSocketYet(u) == nil {
		return "" // no socket unit of its own: uwsgi binds what it names
	}
	named, cannot := uwsgiNamesSocket("", daemon)
	switch {
	case named:
		return ""
	case cannot != "":
		return fmt.Sprintf("uwsgi takes its sockets from a socket unit here, and a reload (uWSGI execs itself again) keeps them only where its options name them (socket = or http-socket = with the socket unit's address); graceshim cannot read %s to tell whether it does", cannot)
	}
	return "uwsgi takes its sockets from a socket unit here, and a reload (uWSGI execs itself again) keeps them only where its options name them (socket = or http-socket = with the socket unit's address); its command line and ini name none"
}
