package supervisor

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"time"
)

// unitCheckTimeout bounds the look at the unit's settings: graceshim
// starts the server first and never waits long for systemd to answer.
const unitCheckTimeout = 3 * time.Second

// service is the systemd service graceshim runs in.
type service struct {
	name string // "nginx.service"
	user bool   // a unit of a user manager (systemctl --user)
}

// userManagerRE matches the cgroup of a user manager ("user@1000.service"):
// the units below it belong to that manager.
var userManagerRE = regexp.MustCompile(`^user@[0-9]+\.service$`)

// serviceOf finds the service in the contents of /proc/self/cgroup (cgroups
// v2 "0::/system.slice/nginx.service", or v1's name=systemd hierarchy): the
// last path element that is a .service, and whether a user manager's
// cgroup is above it. ok is false outside a service (a scope, a shell).
func serviceOf(cgroup string) (s service, ok bool) {
	var path string
	sc := bufio.NewScanner(strings.NewReader(cgroup))
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" || parts[1] == "name=systemd" {
			path = parts[2]
		}
	}
	elems := strings.Split(path, "/")
	for i := len(elems) - 1; i >= 0; i-- {
		e := elems[i]
		if !strings.HasSuffix(e, ".service") {
			continue
		}
		if userManagerRE.MatchString(e) {
			// The user manager itself: graceshim runs in the manager's
			// cgroup, not in a unit of it.
			return service{}, false
		}
		s.name = e
		for _, above := range elems[:i] {
			if userManagerRE.MatchString(above) {
				s.user = true
			}
		}
		return s, true
	}
	return service{}, false
}

// showProps reads `systemctl show` output, KEY=VALUE lines, into a map.
func showProps(show string) map[string]string {
	props := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(show))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			props[k] = v
		}
	}
	return props
}

// unitAdvice reads `systemctl show` output (KEY=VALUE lines) for the
// settings that decide whether graceshim can do its work, and says what to
// change, "" when nothing. name is the server's name, for the message.
//
// systemd.kill(5): KillMode=control-group (the default) sends the stop
// signal to every process of the unit, so the server gets systemd's TERM
// straight and graceshim's translation is bypassed (measured: 0/20
// downloads kept with nginx, Result=success); KillMode=process sends
// SIGKILL at the timeout to graceshim alone and leaves the server's
// processes. mixed sends TERM to the main process only and SIGKILL to all.
// systemd.service(5): only Type=notify (and notify-reload) waits for
// READY=1, and NotifyAccess=none drops every notification, EXTEND_TIMEOUT_USEC
// included.
func unitAdvice(show, name string) string {
	props := showProps(show)
	var out []string
	switch props["KillMode"] {
	case "control-group":
		out = append(out, fmt.Sprintf("KillMode=control-group: systemd's stop signal reaches %s directly and bypasses the drain; set KillMode=mixed in [Service]", name))
	case "process":
		out = append(out, fmt.Sprintf("KillMode=process: at the stop timeout systemd kills graceshim alone and %s's processes are left; set KillMode=mixed in [Service]", name))
	}
	if t := props["Type"]; t != "" && t != "notify" && t != "notify-reload" {
		out = append(out, fmt.Sprintf("Type=%s: systemd does not wait for graceshim's READY=1; set Type=notify", t))
	}
	if props["NotifyAccess"] == "none" {
		out = append(out, "NotifyAccess=none: systemd drops graceshim's notifications, stop extensions included; set Type=notify or NotifyAccess=main")
	}
	return strings.Join(out, "; ")
}

// checkUnit looks at the unit graceshim runs in, when it runs under
// systemd (INVOCATION_ID is set for every unit, systemd.exec(5)), and
// returns advice on its settings, "" when they are right or cannot be
// read. It asks `systemctl show`, which reaches the manager over its
// private socket where D-Bus is absent; anything that fails is logged at
// debug level and never stops graceshim.
//
// Run calls it before the child starts: exec's Wait on systemctl would
// race the reaper's wait4(-1) once that runs, and lose (the advice
// silently dropped, systemctl's exit taken for an orphan's).
func checkUnit(ctx context.Context, log *Logger, name string) string {
	if os.Getenv("INVOCATION_ID") == "" {
		return ""
	}
	cg, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		log.Debugf("cannot check the unit's settings: %v", err)
		return ""
	}
	svc, ok := serviceOf(string(cg))
	if !ok {
		return ""
	}
	if os.Getenv("MANAGERPID") != "" {
		// Set only for processes a user manager spawns (systemd.exec(5));
		// its units need not sit below a user@UID.service cgroup (a user
		// manager in a container owns the cgroup root).
		svc.user = true
	}
	ctx, cancel := context.WithTimeout(ctx, unitCheckTimeout)
	defer cancel()
	args := []string{"show", "--property=KillMode,Type,NotifyAccess", "--", svc.name}
	if svc.user {
		args = append([]string{"--user"}, args...)
	}
	out, err := exec.CommandContext(ctx, "systemctl", args...).Output()
	if err != nil {
		log.Debugf("cannot check the settings of %s: systemctl %s: %v", svc.name, strings.Join(args, " "), err)
		return ""
	}
	return unitAdvice(string(out), name)
}

// withUnitAdvice adds the advice on the unit's settings to a STATUS line
// that says the server runs, so that systemctl status shows it for as
// long as it matters.
func (l *loop) withUnitAdvice(state string) string {
	if l.unitAdvice == "" {
		return state
	}
	lines := strings.Split(state, "\n")
	for i, line := range lines {
		if strings.HasPrefix(line, "STATUS=running:") {
			lines[i] = line + "; WARNING: " + l.unitAdvice
		}
	}
	return strings.Join(lines, "\n")
}
