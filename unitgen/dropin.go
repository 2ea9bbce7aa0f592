package unitgen

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// CheckDropins refuses to write the unit or drop-in out to path when a
// drop-in of the same service that systemd applies after it would undo it,
// or one before it would be silently replaced.
//
// systemd reads a service's drop-ins, NAME.service.d/*.conf, after the
// unit file, in the order of their file names whatever directory holds
// them (systemd.unit(5), "Along with a unit file foo.service, a "drop-in"
// directory foo.service.d/ may exist"). So `systemctl edit nginx`'s
// override.conf, applied after graceshim.conf, replaces the ExecStart=
// that runs graceshim, and graceshim never runs; or its TimeoutStopSec=
// cuts graceshim's drain (measured with systemd 252's user manager:
// graceshim.conf and override.conf both setting ExecStart= and
// TimeoutStopSec=, the unit ran override.conf's). A drop-in applied before ours that sets
// ExecStart= had the command systemd runs, which ours replaces with the
// unit file's; from, the unit converted, shows whether it was read
// (systemctl cat prints the drop-ins too).
//
// For a whole unit, path is NAME.service and every drop-in of the unit
// comes after it; for a drop-in, path is NAME.service.d/FILE.conf and the
// unit's other drop-ins come before or after it by file name. The
// drop-ins are looked for where systemd looks (see dropinFiles): in the
// directory beside path and along the unit load path LoadPathFor gives.
func CheckDropins(path string, out []byte, from *Unit) error {
	return CheckDropinsIn(path, out, from, LoadPathFor(path))
}

// CheckDropinsIn is CheckDropins with the unit load path given, highest
// priority first (tests give their own).
func CheckDropinsIn(path string, out []byte, from *Unit, loadPath []string) error {
	name, self := filepath.Base(path), ""
	unitDir := filepath.Dir(path)
	if filepath.Ext(path) == ".conf" && strings.HasSuffix(filepath.Dir(path), ".d") {
		name, self = unitBase(filepath.Dir(path)), filepath.Base(path)
		unitDir = filepath.Dir(filepath.Dir(path))
	}
	files, err := dropinFiles(name, unitDir, path, loadPath)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return nil // no drop-ins (or none readable): nothing to undo
	}
	ownDir := filepath.Join(unitDir, name+".d")
	ours, _, err := Parse(path, out)
	if err != nil {
		return nil
	}
	// What graceshim's stop relies on, as ours sets it (last value).
	sets := map[string]string{}
	for _, d := range ours.Directives {
		if d.Section == "Service" && stopDirectives[d.Name] {
			sets[d.Name] = d.Value
		}
	}
	fromStart := ""
	if from != nil {
		if starts := from.List("Service", "ExecStart"); len(starts) > 0 {
			fromStart = starts[len(starts)-1].Value
		}
	}
	for _, file := range files {
		base := filepath.Base(file)
		data, err := os.ReadFile(file)
		if err != nil || len(data) == 0 {
			continue
		}
		other, _, err := Parse(file, data)
		if err != nil {
			continue
		}
		after := self == "" || base > self
		for _, d := range other.Directives {
			switch {
			case after && d.Section == "Service" && stopDirectives[d.Name] && (d.Value != sets[d.Name] || d.Value == "") && !coversTimeouts(d, sets):
				order := "drop-ins apply after the unit file"
				fix := fmt.Sprintf("convert what systemd runs, graceshim unit --from <(systemctl cat %s), and remove %s, or write graceshim's drop-in under a name that sorts after it: --dropin -o %s", name, file, filepath.Join(ownDir, "zz-graceshim.conf"))
				if self != "" {
					order = "drop-ins apply in the order of their names"
					fix = fmt.Sprintf("name graceshim's drop-in so that it sorts after it (e.g. %s) and convert what systemd runs: graceshim unit --from <(systemctl cat %s) --dropin", filepath.Join(ownDir, "zz-graceshim.conf"), name)
				}
				return fmt.Errorf("%s:%d: %s=%s is applied after %s and undoes what graceshim sets there (%s, systemd.unit(5)); %s; nothing written", file, d.Line, d.Name, d.Value, path, order, fix)
			case !after && d.Section == "Service" && d.Name == "ExecStart" && d.Value != "" && d.Value != fromStart:
				return fmt.Errorf("%s:%d: ExecStart=%s is the command systemd runs, but %s was converted from another one; convert what systemd runs: graceshim unit --from <(systemctl cat %s) --dropin; nothing written", file, d.Line, d.Value, path, name)
			}
		}
	}
	return nil
}

// stopDirectives are the [Service] settings graceshim's unit relies on
// to start, reload and stop the daemon under graceshim: a drop-in applied
// after the unit that sets one to another value (or resets a list) undoes
// graceshim, and an ExecStop= or ExecReload= it adds runs besides
// graceshim's (list directives add, systemd.service(5)). Anything else a
// later drop-in sets (LimitNOFILE=, Environment=, After=, copied into the
// unit from systemctl cat or not) is the admin's and wins as it did
// before the conversion.
var stopDirectives = map[string]bool{
	"ExecStart": true, "ExecReload": true, "ExecStop": true, "Type": true, "NotifyAccess": true,
	"KillMode": true, "KillSignal": true, "SendSIGKILL": true, "FinalKillSignal": true,
	"TimeoutSec": true, "TimeoutStartSec": true, "TimeoutStopSec": true, "TimeoutAbortSec": true,
	"PIDFile": true, "RemainAfterExit": true, "WatchdogSec": true,
}

// coversTimeouts says whether d, a drop-in's timeout applied after the
// unit, gives each timeout graceshim set at least as much time (or no
// bound): it then still covers graceshim's drain and its start, so it
// undoes nothing. TimeoutSec= sets both TimeoutStartSec= and
// TimeoutStopSec= (systemd.service(5)).
func coversTimeouts(d Directive, sets map[string]string) bool {
	var ours []string
	switch d.Name {
	case "TimeoutSec":
		ours = []string{"TimeoutStartSec", "TimeoutStopSec"}
	case "TimeoutStartSec", "TimeoutStopSec", "TimeoutAbortSec":
		ours = []string{d.Name}
	default:
		return false
	}
	later, laterInf, ok := parseSpan(d.Value)
	if !ok {
		return false
	}
	for _, name := range ours {
		v, set := sets[name]
		if !set || laterInf {
			continue
		}
		mine, inf, ok := parseSpan(v)
		if !ok || inf || later < mine {
			return false
		}
	}
	return true
}

// unitBase is the unit a drop-in directory belongs to: nginx.service for
// /etc/systemd/system/nginx.service.d.
func unitBase(dir string) string {
	return strings.TrimSuffix(filepath.Base(dir), ".d")
}

// SystemLoadPath is the system manager's unit load path of systemd 252,
// highest priority first, as `systemd-analyze unit-paths` prints it on
// Debian 12 (whose systemd also reads /lib/systemd/system) and as
// systemd.unit(5) lists it under "System Unit Search Path".
var SystemLoadPath = []string{
	"/etc/systemd/system.control", "/run/systemd/system.control", "/run/systemd/transient",
	"/run/systemd/generator.early", "/etc/systemd/system", "/etc/systemd/system.attached",
	"/run/systemd/system", "/run/systemd/system.attached", "/run/systemd/generator",
	"/usr/local/lib/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system",
	"/run/systemd/generator.late",
}

// UserLoadPath is a user manager's unit load path of systemd 252
// (systemd.unit(5), "User Unit Search Path"; `systemd-analyze --user
// unit-paths`), from the environment the way systemd reads it: HOME,
// XDG_CONFIG_HOME (~/.config), XDG_CONFIG_DIRS (/etc/xdg),
// XDG_RUNTIME_DIR, XDG_DATA_HOME (~/.local/share) and XDG_DATA_DIRS
// (/usr/local/share:/usr/share).
func UserLoadPath(getenv func(string) string) []string {
	home := getenv("HOME")
	or := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	config := or("XDG_CONFIG_HOME", filepath.Join(home, ".config"))
	data := or("XDG_DATA_HOME", filepath.Join(home, ".local/share"))
	run := getenv("XDG_RUNTIME_DIR")
	var p []string
	add := func(dirs ...string) {
		for _, d := range dirs {
			if d != "" && filepath.IsAbs(d) {
				p = append(p, d)
			}
		}
	}
	inRun := func(sub string) string {
		if run == "" {
			return ""
		}
		return filepath.Join(run, "systemd", sub)
	}
	add(filepath.Join(config, "systemd/user.control"), inRun("user.control"), inRun("transient"), inRun("generator.early"),
		filepath.Join(config, "systemd/user"))
	for _, d := range strings.Split(or("XDG_CONFIG_DIRS", "/etc/xdg"), ":") {
		add(filepath.Join(d, "systemd/user"))
	}
	add("/etc/systemd/user", inRun("user"), "/run/systemd/user", inRun("generator"), filepath.Join(data, "systemd/user"))
	for _, d := range strings.Split(or("XDG_DATA_DIRS", "/usr/local/share:/usr/share"), ":") {
		add(filepath.Join(d, "systemd/user"))
	}
	add("/usr/local/lib/systemd/user", "/usr/lib/systemd/user", inRun("generator.late"))
	return p
}

// LoadPathFor is the load path of the manager that reads a unit written
// to path: a user manager's for a file under a systemd/user directory
// (~/.config/systemd/user, /etc/systemd/user, ...), the system manager's
// otherwise.
func LoadPathFor(path string) []string {
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	for _, d := range UserLoadPath(os.Getenv) {
		if strings.HasPrefix(abs, d+"/") {
			return UserLoadPath(os.Getenv)
		}
	}
	if strings.Contains(abs, "/systemd/user/") || strings.Contains(abs, "/systemd/user.control/") {
		return UserLoadPath(os.Getenv)
	}
	return SystemLoadPath
}

// dropinNames are the names whose NAME.d/ directories hold drop-ins for
// the unit name, most specific first (systemd.unit(5), "Description",
// 252): the unit's own; a template's for an instance (foo@.service.d/
// for foo@bar.service); one for each prefix of the name up to a dash
// (foo-bar-.service.d/, foo-.service.d/ for foo-bar-baz.service); and
// the type's (service.d/, for every service); systemd's TEST-15-DROPIN
// checks each. For a template or instance the prefixes are cut from the
// part before '@' only, as the template's and as a plain name: measured
// with systemd 252's user manager, `systemctl --user show -p DropInPaths
// a-x@i-1.service` lists a-.service.d/, a-@.service.d/ and a-x@.service.d/,
// and no a-x@i-.service.d/.
func dropinNames(name string) []string {
	names := []string{name}
	dot := strings.LastIndexByte(name, '.')
	if dot <= 0 {
		return names
	}
	stem, typ := name[:dot], name[dot+1:]
	prefix, at, templated := strings.Cut(stem, "@")
	if templated && at != "" {
		names = append(names, prefix+"@."+typ)
	}
	for i := len(prefix) - 1; i > 0; i-- {
		if prefix[i] != '-' || (i == len(prefix)-1 && !templated) {
			continue
		}
		if templated {
			names = append(names, prefix[:i+1]+"@."+typ)
		}
		names = append(names, prefix[:i+1]+"."+typ)
	}
	return append(names, typ)
}

// dropinFiles lists the .conf drop-ins systemd applies to the unit name,
// besides self (the file being written), from the directory unitDir beside
// it and the load path. systemd.unit(5): drop-ins in /etc take precedence
// over those in /run, which take precedence over those in /usr/lib, and
// "multiple drop-in files with different names are applied in
// lexicographic order, regardless of which of the directories they reside
// in"; of several files of the same name only the one of highest
// priority counts (systemd's conf_files_list). One that would hide self is
// an error: what is written would never apply.
func dropinFiles(name, unitDir, self string, loadPath []string) ([]string, error) {
	// The directories in priority order; unitDir, where -o writes, first
	// when the load path does not have it.
	clean := func(p string) string { return filepath.Clean(p) }
	dirs := append([]string(nil), loadPath...)
	if !slices.ContainsFunc(dirs, func(d string) bool { return clean(d) == clean(unitDir) }) {
		dirs = append([]string{unitDir}, dirs...)
	}
	selfBase := ""
	if filepath.Ext(self) == ".conf" {
		selfBase = filepath.Base(self)
	}
	seen := map[string]bool{}
	var files []string
	for _, d := range dirs {
		if clean(d) == clean(unitDir) && selfBase != "" {
			seen[selfBase] = true // ours, the most specific name here
		}
		for _, n := range dropinNames(name) {
			dir := filepath.Join(d, n+".d")
			entries, err := os.ReadDir(dir)
			if err != nil {
				continue
			}
			for _, e := range entries {
				base := e.Name()
				file := filepath.Join(dir, base)
				if !strings.HasSuffix(base, ".conf") || e.IsDir() || file == clean(self) {
					continue
				}
				if base == selfBase && !seen[base] {
					if clean(d) != clean(unitDir) {
						// Found before ours: it has priority and hides it
						// (even empty or a link to /dev/null: a mask).
						return nil, fmt.Errorf("%s has the same name as %s and is read instead of it (drop-ins in %s take precedence over those in %s, systemd.unit(5)): what graceshim writes would never apply; write it under another name or to %s; nothing written", file, self, d, unitDir, filepath.Join(d, name+".d"))
					}
				}
				if seen[base] {
					continue // hidden by one of the same name found first
				}
				seen[base] = true
				files = append(files, file)
			}
		}
	}
	return files, nil
}
