package unitgen

import (
	"fmt"
	"os"
	"path/filepath"
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
// For a whole unit, path is NAME.service and every drop-in of
// NAME.service.d/ comes after it; for a drop-in, path is
// NAME.service.d/FILE.conf and its siblings come before or after it by
// name. Only the drop-in directory beside path is read: drop-ins under
// /run or /usr/lib are not seen here.
func CheckDropins(path string, out []byte, from *Unit) error {
	dir, self := path+".d", ""
	if filepath.Ext(path) == ".conf" && strings.HasSuffix(filepath.Dir(path), ".d") {
		dir, self = filepath.Dir(path), filepath.Base(path)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil // no drop-ins here (or none readable): nothing to undo
	}
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
	for _, e := range entries {
		name := e.Name()
		if name == self || !strings.HasSuffix(name, ".conf") || e.IsDir() {
			continue
		}
		file := filepath.Join(dir, name)
		data, err := os.ReadFile(file)
		if err != nil || len(data) == 0 {
			continue
		}
		other, _, err := Parse(file, data)
		if err != nil {
			continue
		}
		after := self == "" || name > self
		for _, d := range other.Directives {
			switch {
			case after && d.Section == "Service" && stopDirectives[d.Name] && (d.Value != sets[d.Name] || d.Value == "") && !coversTimeouts(d, sets):
				order := "drop-ins apply after the unit file"
				fix := fmt.Sprintf("convert what systemd runs, graceshim unit --from <(systemctl cat %s), and remove %s, or write graceshim's drop-in under a name that sorts after it: --dropin -o %s", unitBase(dir), file, filepath.Join(dir, "zz-graceshim.conf"))
				if self != "" {
					order = "drop-ins apply in the order of their names"
					fix = fmt.Sprintf("name graceshim's drop-in so that it sorts after it (e.g. %s) and convert what systemd runs: graceshim unit --from <(systemctl cat %s) --dropin", filepath.Join(dir, "zz-graceshim.conf"), unitBase(dir))
				}
				return fmt.Errorf("%s:%d: %s=%s is applied after %s and undoes what graceshim sets there (%s, systemd.unit(5)); %s; nothing written", file, d.Line, d.Name, d.Value, path, order, fix)
			case !after && d.Section == "Service" && d.Name == "ExecStart" && d.Value != "" && d.Value != fromStart:
				return fmt.Errorf("%s:%d: ExecStart=%s is the command systemd runs, but %s was converted from another one; convert what systemd runs: graceshim unit --from <(systemctl cat %s) --dropin; nothing written", file, d.Line, d.Value, path, unitBase(dir))
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
