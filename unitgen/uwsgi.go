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
// loads (see uwsgiOptions). cannot names a configuration file lint
// cannot read (a specifier such as %i.ini, a variable, a relative path,
// an unreadable file, a YAML, JSON or XML file): then it cannot tell, and hooked
// is false. dieOnTerm says --die-on-term (die-on-term = true) was seen.
func uwsgiHooked(root string, cmd []string) (hooked, dieOnTerm bool, cannot string) {
	return uwsgiHookedIn(root, "", cmd)
}

// uwsgiHookedIn is uwsgiHooked for a uWSGI started in dir (see
// uwsgiOptionsIn).
func uwsgiHookedIn(root, dir string, cmd []string) (hooked, dieOnTerm bool, cannot string) {
	opts, cannot := uwsgiOptionsIn(root, dir, cmd)
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

// uwsgiNoArg are the uWSGI options that take no argument on the command
// line, so that the word after them is an argument of its own: a bare
// FILE.ini is loaded. Measured with Debian 12's uWSGI 2.0.21: `uwsgi
// --NAME inc.ini --get socket` printed inc.ini's socket for each of
// these; log-date and chmod-socket take an optional argument, which
// getopt_long takes only glued (--log-date=FORMAT). Every other option
// takes the next word (`--touch-reload app.ini` loads nothing).
var uwsgiNoArg = map[string]bool{
	"master": true, "vacuum": true, "die-on-term": true, "enable-threads": true, "lazy-apps": true,
	"lazy": true, "need-app": true, "strict": true, "single-interpreter": true, "thunder-lock": true,
	"harakiri-verbose": true, "memory-report": true, "no-orphans": true, "auto-procname": true,
	"log-date": true, "chmod-socket": true, "chmod": true, "show-config": true, "no-default-app": true,
	"catch-exceptions": true, "disable-logging": true, "reload-on-exception": true, "so-keepalive": true,
	"log-x-forwarded-for": true, "close-on-exec": true, "ignore-sigpipe": true, "ignore-write-errors": true,
	"disable-write-exception": true, "manage-script-name": true, "skip-atexit": true, "log-master": true,
	"threaded-logger": true, "honour-stdin": true, "cheap": true, "reuse-port": true, "tcp-nodelay": true,
}

// uwsgiArg are options known to take an argument that may name a file
// ending in .ini without loading it (measured as for uwsgiNoArg: the
// file was not loaded), besides those that load one.
var uwsgiArg = map[string]bool{
	"touch-reload": true, "touch-chain-reload": true, "fs-reload": true, "logto": true, "logto2": true,
	"pidfile": true, "pidfile2": true, "safe-pidfile": true, "daemonize": true, "daemonize2": true,
	"chdir": true, "chdir2": true, "fallback-config": true, "emperor": true, "env": true, "stats": true,
	"wsgi-file": true, "module": true, "pythonpath": true, "home": true, "virtualenv": true, "venv": true,
}

// uwsgiShort are uWSGI's one-letter options (core/uwsgi.c, the option
// table's short names) that matter here; uwsgiShortNoArg take no argument.
var (
	uwsgiShort      = map[byte]string{'s': "socket", 'l': "listen", 'x': "xml", 'y': "yaml", 'j': "json", 'M': "master", 'd': "daemonize"}
	uwsgiShortNoArg = map[byte]bool{'M': true, 'T': true, 'i': true, 'm': true, 'c': true, 'a': true, 'C': true, 'L': true}
)

// uwsgiFormat names the format uWSGI loads a configuration file in by
// its name ("" for an ini file; uwsgi's magic loading of a bare argument
// and --include go by the extension: measured with uWSGI 2.0.21, a bare
// app.yaml, app.yml, app.json and app.xml each loaded, app.conf did not).
func uwsgiFormat(f string) (format string, config bool) {
	if i := strings.LastIndexByte(f, ':'); i > strings.LastIndexByte(f, '/') {
		f = f[:i] // FILE.ini:SECTION
	}
	switch filepath.Ext(f) {
	case ".ini":
		return "", true
	case ".yaml", ".yml":
		return "YAML", true
	case ".json", ".js":
		return "JSON", true
	case ".xml":
		return "XML", true
	}
	return "", false
}

// uwsgiOptions reads a uWSGI command line as uWSGI 2.0 does, and the ini
// files it loads: the options in order, each file's where it is loaded.
// cannot names a file whose options cannot be told: an ini file graceshim
// cannot read (see uwsgiIniOptions) first, else one in another format.
//
// uWSGI parses its command line with getopt_long (core/uwsgi.c): a long
// option's argument is glued (--socket=ADDR) or the next word, whatever
// it looks like, unless the option takes none (uwsgiNoArg); "-sADDR" and
// "-s ADDR" are short options, so "-ini" is -i -n -i (measured: "invalid
// option -- 'n'"). The words left over, which getopt moves after the
// options, are loaded as configuration files by their extension
// (uwsgi_opt_load on each "lazy" argument): FILE.ini, .yaml/.yml,
// .json/.js, .xml; anything else is left to plugins (app.py). Files are
// loaded by --ini (ini, FILE:SECTION), --include and --inherit (by the
// extension), --yaml/-y, --json/-j, --xml/-x and --config (the pluggable
// loaders, which graceshim does not read).
func uwsgiOptions(root string, cmd []string) (opts []iniOption, cannot string) {
	return uwsgiOptionsIn(root, "", cmd)
}

// uwsgiOptionsIn is uwsgiOptions for a uWSGI started in the working
// directory dir ("" when it cannot be told): uWSGI opens a relative
// configuration file name, on its command line or in an ini file's
// include =, in its working directory (measured with uWSGI 2.0.21:
// `uwsgi --ini sub/app.ini --show-config` run in D, with include =
// other.ini in sub/app.ini, loaded D/other.ini, not D/sub/other.ini).
func uwsgiOptionsIn(root, dir string, cmd []string) (opts []iniOption, cannot string) {
	var other string
	var bare []string
	load := func(f string) {
		format, config := uwsgiFormat(f)
		switch {
		case config && format == "":
			ini, c := uwsgiIniOptionsIn(root, dir, []string{f})
			opts = append(opts, ini...)
			if cannot == "" {
				cannot = c
			}
		case other == "":
			other = f
		}
	}
	add := func(name, val, from string) {
		switch name {
		case "ini":
			ini, c := uwsgiIniOptionsIn(root, dir, []string{val})
			opts = append(opts, ini...)
			if cannot == "" {
				cannot = c
			}
		case "include", "inherit":
			load(val)
		case "yaml", "yml", "json", "js", "xml", "xmlconfig", "config", "ini-paste", "ini-paste-logged":
			if other == "" {
				other = val
			}
		}
		opts = append(opts, iniOption{name, val, from})
	}
	for i := 1; i < len(cmd); i++ {
		a := cmd[i]
		switch {
		case a == "--":
			bare = append(bare, cmd[i+1:]...)
			i = len(cmd)
		case strings.HasPrefix(a, "--"):
			name, val, glued := strings.Cut(a[2:], "=")
			if !glued && !uwsgiNoArg[name] && i+1 < len(cmd) {
				i++
				val = cmd[i]
				if _, config := uwsgiFormat(val); config && !uwsgiArg[name] && !strings.HasPrefix(name, "hook-") && other == "" {
					switch name {
					case "ini", "include", "inherit", "yaml", "yml", "json", "js", "xml", "xmlconfig", "config":
					default:
						// An option graceshim does not know: if it
						// takes no argument, uWSGI loads val.
						other = val
					}
				}
			}
			add(name, val, "--"+name+" "+val)
		case len(a) > 1 && a[0] == '-':
			for j := 1; j < len(a); j++ {
				c := a[j]
				name, ok := uwsgiShort[c]
				if !ok {
					name = string(c)
				}
				if uwsgiShortNoArg[c] {
					add(name, "", "-"+string(c))
					continue
				}
				val := a[j+1:]
				if val == "" && i+1 < len(cmd) {
					i++
					val = cmd[i]
				}
				add(name, val, "-"+string(c)+" "+val)
				break
			}
		default:
			bare = append(bare, a)
		}
	}
	for _, b := range bare {
		if _, config := uwsgiFormat(b); config && !strings.HasPrefix(b, "[") {
			load(b)
		}
	}
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
	return uwsgiIniOptionsIn(root, "", inis)
}

// uwsgiIniOptionsIn is uwsgiIniOptions with relative file names read in
// dir, uWSGI's working directory (see uwsgiOptionsIn).
func uwsgiIniOptionsIn(root, dir string, inis []string) (opts []iniOption, cannot string) {
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
		if !filepath.IsAbs(file) && dir != "" && !strings.ContainsAny(file, "%$") {
			file = filepath.Join(dir, file)
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
			// Files an ini file loads, as the command line's options
			// do (measured with uWSGI 2.0.21: include = FILE.ini,
			// include = FILE.yaml and yaml = FILE each loaded FILE).
			switch format, config := uwsgiFormat(o.value); o.key {
			case "ini":
				inis = append(inis, o.value)
			case "include", "inherit":
				switch {
				case config && format == "":
					inis = append(inis, o.value)
				case config && cannot == "":
					cannot = o.value
				}
			case "yaml", "yml", "json", "js", "xml", "xmlconfig", "config":
				if cannot == "" {
					cannot = o.value
				}
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
	hooked, dieOnTerm, cannot := uwsgiHookedIn(c.opts.Root, SocketOptions{Unit: c.u}.workDir(), c.cmd)
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
	hooked, dieOnTerm, cannot := uwsgiHookedIn(c.opts.Root, SocketOptions{Unit: c.u}.workDir(), c.cmd)
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
func uwsgiConvertWarning(u *Unit, daemon []string) string {
	hooked, _, cannot := uwsgiHookedIn("", SocketOptions{Unit: u}.workDir(), daemon)
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
	return uwsgiNamesSocketIn(root, "", cmd)
}

// uwsgiNamesSocketIn is uwsgiNamesSocket for a uWSGI started in dir.
func uwsgiNamesSocketIn(root, dir string, cmd []string) (named bool, cannot string) {
	opts, cannot := uwsgiOptionsIn(root, dir, cmd)
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
	named, cannot := uwsgiNamesSocketIn("", SocketOptions{Unit: u}.workDir(), daemon)
	switch {
	case named:
		return ""
	case cannot != "":
		return fmt.Sprintf("uwsgi takes its sockets from a socket unit here, and a reload (uWSGI execs itself again) keeps them only where its options name them (socket = or http-socket = with the socket unit's address); graceshim cannot read %s to tell whether it does", cannot)
	}
	return "uwsgi takes its sockets from a socket unit here, and a reload (uWSGI execs itself again) keeps them only where its options name them (socket = or http-socket = with the socket unit's address); its command line and ini name none"
}
