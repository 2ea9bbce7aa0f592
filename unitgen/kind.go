package unitgen

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// NotAServerError is a unit graceshim cannot run: a socket unit, a unit
// of another type than a service, or a service started once per
// connection. Its message says what the unit is and what to do instead.
type NotAServerError struct{ msg string }

func (e *NotAServerError) Error() string { return e.msg }

func notAServer(format string, args ...any) error {
	return &NotAServerError{msg: fmt.Sprintf(format, args...)}
}

// unitSuffixes are the unit types systemd.unit(5) names by suffix.
var unitSuffixes = []string{".service", ".socket", ".device", ".mount", ".automount", ".swap", ".target", ".path", ".timer", ".slice", ".scope"}

// unitType is u's type: the suffix of its file name (systemd.unit(5)),
// or, for a file named otherwise (a test copy, a drop-in .conf), the
// type its sections say: [Socket] a socket, [Service] a service; "" when
// neither tells.
func unitType(u *Unit) string {
	base := filepath.Base(u.path())
	for _, s := range unitSuffixes {
		if strings.HasSuffix(base, s) {
			return strings.TrimPrefix(s, ".")
		}
	}
	for _, s := range u.Sections {
		switch s {
		case "Socket":
			return "socket"
		case "Service":
			return "service"
		}
	}
	return ""
}

// dropinOf says whether u is a drop-in, NAME.service.d/FILE.conf (or
// any unit type's NAME.TYPE.d/), and of which unit. A drop-in only
// changes the unit it belongs to (systemd.unit(5)): read alone it lacks
// the unit's Type=, PIDFile=, KillSignal= and the rest.
func dropinOf(u *Unit) (string, bool) {
	dir := filepath.Base(filepath.Dir(u.path()))
	if filepath.Ext(u.path()) != ".conf" || !strings.HasSuffix(dir, ".d") {
		return "", false
	}
	return strings.TrimSuffix(dir, ".d"), true
}

// fromHint is how to name u again to --from: its file, or for systemctl
// cat's output through a pipe the same command.
func fromHint(u *Unit) string {
	if u.Path != "" {
		return "<(systemctl cat " + filepath.Base(u.Path) + ")"
	}
	return u.File
}

// unitName is u's file name without its type suffix: nginx for
// nginx.service, sshd@ for sshd@.service.
func unitName(u *Unit) string {
	base := filepath.Base(u.path())
	if i := strings.LastIndexByte(base, '.'); i > 0 {
		return base[:i]
	}
	return base
}

// socketAccepts says whether a socket unit has Accept=yes: systemd then
// accepts each connection itself and starts one instance of NAME@.service
// per connection (systemd.socket(5), Accept=).
func socketAccepts(u *Unit) bool {
	d, ok := u.Get("Socket", "Accept")
	return ok && isYes(d.Value)
}

// socketService is the service a socket unit starts: Service= when set,
// else the unit of the same name, NAME.service, or with Accept=yes the
// template NAME@.service (systemd.socket(5), Service= and Accept=).
func socketService(u *Unit) string {
	if d, ok := u.Get("Socket", "Service"); ok && d.Value != "" {
		// A template socket's Service=NAME@%i.service names the
		// template's instance: the file to convert is NAME@.service.
		return strings.NewReplacer("%i", "", "%I", "").Replace(d.Value)
	}
	if socketAccepts(u) {
		return unitName(u) + "@.service"
	}
	return unitName(u) + ".service"
}

// CheckServer says, as a *NotAServerError, why u is no unit of a
// server graceshim can run, or nil when it may be one:
//
//   - a socket unit: graceshim runs the service it starts; the message
//     names that service, or, with Accept=yes, says that there is none to
//     drain;
//   - a drop-in given alone (NAME.service.d/FILE.conf), which lacks the
//     unit it changes;
//   - a unit of another type (timer, mount, target, ...);
//   - a Type=oneshot job, which runs to completion;
//   - a service that systemd starts once per connection: a template whose
//     standard input or output is the socket (StandardInput=socket, which
//     systemd.exec(5) allows only from a socket with Accept=yes or a single
//     socket: inetd style), or whose socket unit beside it, NAME.socket for
//     NAME@.service, has Accept=yes. Each instance serves one connection
//     and exits; it has no listening socket and nothing else in flight, so
//     a graceful stop has nothing to wait for, and graceshim's wait for a
//     listener before READY=1 would only hold every connection's start.
func CheckServer(u *Unit) error {
	if of, ok := dropinOf(u); ok {
		return notAServer("%s is a drop-in of %s: it changes that unit and cannot be read alone (systemd.unit(5)); read the unit with its drop-ins as systemd does: graceshim unit --from <(systemctl cat %s)", u.File, of, of)
	}
	switch t := unitType(u); t {
	case "socket":
		svc := socketService(u)
		if socketAccepts(u) {
			return notAServer("%s is a socket unit with Accept=yes: systemd accepts each connection itself and starts one %s per connection, which serves it and exits; no server outlives its connections, so there is no drain for graceshim to run (graceshim is for a server that accepts connections itself, Accept=no)", u.File, svc)
		}
		return notAServer("%s is a socket unit: graceshim runs the server, so convert the service it starts, %s (graceshim unit --from %s); that service gets these sockets and graceshim passes them on", u.File, svc, filepath.Join(filepath.Dir(u.path()), svc))
	case "service", "":
	default:
		return notAServer("%s is a %s unit, not a service: graceshim runs the server of a .service unit", u.File, t)
	}
	if d, why, ok := notAServerService(u); ok {
		if d.Line > 0 {
			return notAServer("%s:%d: %s", u.File, d.Line, why)
		}
		return notAServer("%s: %s", u.File, why)
	}
	return nil
}

// notAServerService says whether the service u runs no server: a job
// (Type=oneshot runs to completion; systemd.service(5)) or a service
// started once per connection (perConnection); why, and the directive
// that says so.
func notAServerService(u *Unit) (Directive, string, bool) {
	if d, ok := u.Get("Service", "Type"); ok && d.Value == "oneshot" {
		why := "Type=oneshot: a job that runs to completion (often from a timer), not a server: it holds no connections to drain on stop, and under graceshim its start would wait for a listening socket it never opens"
		if umbrella := umbrellaOf(u); umbrella != "" {
			return d, why + umbrella, true
		}
		if r, ok := u.Get("Service", "RemainAfterExit"); ok && isYes(r.Value) {
			why += "; where its command starts a daemon that stays (RemainAfterExit=yes), write a unit for the daemon itself: graceshim unit -- DAEMON ARGS"
		}
		return d, why, true
	}
	if d, why, ok := containerRun(u); ok {
		return d, why, true
	}
	return perConnection(u)
}

// containerEngines are the CLIs that run a container: the process they
// start is the container's, a child of the engine's shim (conmon,
// containerd-shim), not of the command the unit runs.
var containerEngines = map[string]bool{"podman": true, "docker": true, "nerdctl": true, "docker-compose": true, "podman-compose": true}

// containerRun says whether u's command runs a container (podman run,
// docker run, docker start, podman kube play ...), why graceshim does not
// apply, and its ExecStart=. The server then runs inside the container,
// under the engine's shim: podman run -d exits once it started it
// (Podman's Quadlet units, podman-systemd.unit(5): --sdnotify=conmon,
// NotifyAccess=all), and an attached docker run only relays signals to
// it. graceshim would see no listener of its own to wait for or drain,
// and could only signal the CLI. The container's stop is set where it
// runs: its stop signal and timeout (run --stop-signal, --stop-timeout,
// in podman-run(1) and docker run's reference).
func containerRun(u *Unit) (Directive, string, bool) {
	starts := u.List("Service", "ExecStart")
	if len(starts) == 0 {
		return Directive{}, "", false
	}
	d := starts[len(starts)-1]
	line, err := SplitExec(d.Value)
	if err != nil {
		return Directive{}, "", false
	}
	argv := DaemonArgv(line.Argv())
	if len(argv) == 0 || !containerEngines[filepath.Base(argv[0])] {
		return Directive{}, "", false
	}
	engine := filepath.Base(argv[0])
	// The subcommand: run, container run, kube play, compose up, after
	// global options and their values (-H HOST, -f FILE).
	var words []string
	cmd, optValue := "", false
	for _, a := range argv[1:] {
		if strings.HasPrefix(a, "-") {
			optValue = !strings.Contains(a, "=")
			continue
		}
		switch {
		case a == "run" || a == "start" || a == "up" || a == "play":
			cmd = strings.Join(append(words, a), " ")
		case a == "container" || a == "compose" || a == "kube":
			words = append(words, a)
			optValue = false
			continue
		case optValue:
			optValue = false
			continue
		}
		break
	}
	how := engine + " run --stop-signal=SIGNAL --stop-timeout=SECONDS"
	if strings.HasSuffix(cmd, "up") {
		// Compose's service keys (the Compose file reference).
		how = "stop_signal: and stop_grace_period: in the compose file"
	}
	switch cmd {
	case "run", "start", "container run", "container start", "kube play", "compose up", "up":
		return d, fmt.Sprintf("%s %s runs a container: the server in it is a child of %s's shim, outside the process tree of the command systemd starts, so graceshim could only signal the %s command and would see no connection of the server's to wait for or drain; make the container's own stop graceful instead (%s, with the daemon's graceful signal, e.g. SIGQUIT for nginx), or run graceshim inside the container as its entrypoint", engine, cmd, engine, engine, how), true
	}
	return Directive{}, "", false // another command (podman system service, ...)
}

// umbrellaOf is the rest of CheckServer's message for a oneshot whose
// every ExecStart= is true(1): it runs nothing itself and only groups
// other units, as Debian's postgresql-common postgresql.service does
// (ExecStart=/bin/true with RemainAfterExit=on; its clusters,
// postgresql@VERSION-NAME.service, are PartOf= it). When a template
// NAME@.service lies beside it, its instances are the servers to
// convert. "" when u runs something.
func umbrellaOf(u *Unit) string {
	starts := u.List("Service", "ExecStart")
	if len(starts) == 0 {
		return ""
	}
	for _, s := range starts {
		line, err := SplitExec(s.Value)
		if err != nil || len(line.Words) == 0 || filepath.Base(line.Words[0].Raw) != "true" {
			return ""
		}
	}
	why := "; it runs nothing itself (ExecStart=/bin/true) and only groups other units that start and stop with it"
	tmpl := strings.TrimSuffix(unitName(u), "@") + "@.service"
	if _, err := os.Stat(filepath.Join(filepath.Dir(u.path()), tmpl)); err == nil {
		why += fmt.Sprintf(": the servers are the instances of %s (as Debian's postgresql@VERSION-CLUSTER of postgresql.service); convert one as systemd reads it: graceshim unit --from <(systemctl cat %s)", tmpl, strings.TrimSuffix(tmpl, "@.service")+"@INSTANCE")
	}
	return why
}

// perConnection says whether u is a service systemd starts once per
// connection (see CheckServer), why, and the directive that says so
// (line 0 when it is the socket beside it).
func perConnection(u *Unit) (Directive, string, bool) {
	if !strings.HasSuffix(unitName(u), "@") {
		return Directive{}, "", false
	}
	for _, name := range []string{"StandardInput", "StandardOutput"} {
		if d, ok := u.Get("Service", name); ok && d.Value == "socket" {
			return d, fmt.Sprintf("%s=socket: systemd starts this service once per connection (from a socket with Accept=yes) and hands it that one connection, inetd style; it has no listening socket and no other connection to drain, so graceshim does not apply", name), true
		}
	}
	sock := filepath.Join(filepath.Dir(u.path()), strings.TrimSuffix(unitName(u), "@")+".socket")
	data, err := os.ReadFile(sock)
	if err != nil {
		// No socket beside it, or none readable: nothing says it is
		// per connection.
		return Directive{}, "", false
	}
	s, _, err := Parse(sock, data)
	if err != nil || !socketAccepts(s) {
		return Directive{}, "", false
	}
	return Directive{Section: "Service", Name: "Service"}, fmt.Sprintf("its socket %s has Accept=yes: systemd starts one instance per connection and hands it that connection; no instance outlives its connection, so there is no drain for graceshim to run", sock), true
}

// lintNotAServer is lint's word on a unit CheckServer refuses: a note,
// since such a unit loses nothing on stop that graceshim could keep.
// A socket unit gets its own notes (lintSocket).
func lintNotAServer(u *Unit) []Finding {
	if of, ok := dropinOf(u); ok {
		return []Finding{{File: u.File, Line: 1, Directive: "drop-in", Severity: SeverityNote,
			Problem: fmt.Sprintf("a drop-in of %s: it changes that unit and cannot be judged alone (the KillSignal=, ExecStop= and timeouts in force may be the unit's)", of),
			Fix:     fmt.Sprintf("lint the unit with its drop-ins as systemd reads them: graceshim lint <(systemctl cat %s)", of)}}
	}
	if unitType(u) == "socket" {
		return lintSocket(u)
	}
	d, why, ok := notAServerService(u)
	if !ok {
		return nil
	}
	if d.Line == 0 {
		d.Line = 1
	}
	fix := "nothing to change for graceshim, which is for a server that accepts connections and can drain them"
	if _, _, ok := containerRun(u); ok {
		fix = "give the container the daemon's graceful stop signal and a stop timeout that covers its longest request, where the container is defined (see the problem)"
	}
	return []Finding{{File: u.File, Line: d.Line, Directive: d.Name, Severity: SeverityNote,
		Problem: why,
		Fix:     fix}}
}

// lintSocket: a socket unit has no stop of its own to drain; say so, and
// which service decides what a stop loses.
func lintSocket(u *Unit) []Finding {
	svc := socketService(u)
	if socketAccepts(u) {
		d, _ := u.Get("Socket", "Accept")
		return []Finding{{File: u.File, Line: d.Line, Directive: "Accept", Severity: SeverityNote,
			Problem: fmt.Sprintf("Accept=yes: systemd accepts each connection itself and starts one %s per connection, which serves it and exits; no server outlives its connections, so there is no drain for graceshim to run", svc),
			Fix:     "nothing to change for a graceful stop; graceshim is for a server that accepts on the socket itself (Accept=no, as graceshim unit --socket writes)"}}
	}
	line := 1
	for _, d := range u.Directives {
		if d.Section == "Socket" && strings.HasPrefix(d.Name, "Listen") {
			line = d.Line
			break
		}
	}
	return []Finding{{File: u.File, Line: line, Directive: "Socket", Severity: SeverityNote,
		Problem: fmt.Sprintf("a socket unit has no stop of its own to drain: stopping it closes its listening sockets; what a stop or restart does to requests in flight is up to the service it starts, %s", svc),
		Fix:     fmt.Sprintf("lint that service: graceshim lint %s", filepath.Join(filepath.Dir(u.path()), svc))}}
}

// generatedMark starts every unit graceshim writes (generate.go,
// socket.go): a socket unit beside a service that starts with it is
// graceshim's own, from an earlier unit --socket.
const generatedMark = "# Generated by graceshim"

// Generated says whether data is a unit graceshim wrote.
func Generated(data []byte) bool {
	return strings.HasPrefix(string(data), generatedMark)
}

// CheckNoSocketYet says, as an error, that u is socket-activated already,
// for unit --socket, which would write a second socket unit for it:
// the service names a socket unit (Sockets=, or Requires=, Wants=,
// BindsTo=, Requisite= on a .socket of its own, see activates, as
// gunicorn's and Django deployment guides write it), or a socket unit of its name lies beside
// it (NAME.socket, or NAME@.socket for a template, as Debian's uwsgi
// ships uwsgi-app@.socket), which systemd pairs with it without any
// directive (systemd.socket(5): a socket activates the service of the
// same name). That service gets the socket's listening sockets already
// and graceshim passes them on, so it is converted without --socket; a
// second socket unit would bind the same addresses, and replacing the
// unit's own would lose its SocketUser=, SocketMode= and the rest.
// A unit graceshim converted with --socket before (its ExecStart= runs
// graceshim, its socket beside it is graceshim's) passes.
func CheckNoSocketYet(u *Unit) error {
	ours := false
	if starts := u.List("Service", "ExecStart"); len(starts) > 0 {
		if line, err := SplitExec(starts[len(starts)-1].Value); err == nil {
			_, wrapper, _, _ := inner(line.Argv())
			ours = wrapper == "graceshim"
		}
	}
	again := fmt.Sprintf("convert it without --socket (graceshim unit --from %s): it gets that socket's listening sockets and graceshim passes them on", fromHint(u))
	if !ours {
		for _, d := range u.Directives {
			var names []string
			switch {
			case d.Section == "Service" && d.Name == "Sockets":
				names = strings.Fields(d.Value)
			case d.Section == "Unit" && (d.Name == "Requires" || d.Name == "Wants" || d.Name == "BindsTo" || d.Name == "Requisite"):
				for _, n := range strings.Fields(d.Value) {
					if strings.HasSuffix(n, ".socket") && activates(u, n) {
						names = append(names, n)
					}
				}
			}
			if len(names) > 0 {
				return fmt.Errorf("%s:%d: %s=%s: the service is socket-activated already; %s", u.File, d.Line, d.Name, d.Value, again)
			}
		}
	}
	sock := filepath.Join(filepath.Dir(u.path()), unitName(u)+".socket")
	data, err := os.ReadFile(sock)
	if err != nil || Generated(data) {
		return nil
	}
	return fmt.Errorf("%s: %s beside it activates it already (systemd pairs a socket with the service of its name); %s", u.File, sock, again)
}

// activates says whether the socket unit named in u's dependencies is
// u's own: a socket activates the service of its name, or the one its
// Service= names (systemd.socket(5)). A dependency on another service's
// socket (Wants=dbus.socket, as systemd-logind.service has) pairs it
// with nothing. A socket of another name that is not beside u, where
// its Service= could be read, is taken as another service's.
func activates(u *Unit, sock string) bool {
	name := strings.TrimSuffix(sock, ".socket")
	own := unitName(u)
	if name == own || strings.HasSuffix(own, "@") && strings.HasPrefix(name, own) {
		return true // NAME.socket, or NAME@%i.socket for a template
	}
	path := filepath.Join(filepath.Dir(u.path()), sock)
	data, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	s, _, err := Parse(path, data)
	if err != nil {
		return false
	}
	return socketService(s) == filepath.Base(u.path())
}

// dropinsBeside is a note when the unit has drop-ins (systemctl edit's
// override.conf in /etc/systemd/system/NAME.service.d/, a package's
// under /usr/lib, a prefix or service.d/ drop-in: see dropinFiles):
// systemd applies them after the file, so what lint judged may not be
// what runs. They are looked for beside the file and along o.LoadPath.
func dropinsBeside(u *Unit, o LintOptions) (Finding, bool) {
	if _, ok := dropinOf(u); ok || u.Path != "" {
		return Finding{}, false // a drop-in itself, or systemctl cat's output, which has them
	}
	loadPath := o.LoadPath
	if loadPath == nil {
		for _, d := range LoadPathFor(u.File) {
			loadPath = append(loadPath, filepath.Join("/", o.Root, d))
		}
	}
	name := filepath.Base(u.File)
	files, err := dropinFiles(name, filepath.Dir(u.File), u.File, loadPath)
	if err != nil || len(files) == 0 {
		return Finding{}, false
	}
	return Finding{File: u.File, Line: 1, Directive: "drop-in", Severity: SeverityNote,
		Problem: fmt.Sprintf("%s has drop-ins that systemd applies after this file (%s), and lint read this file only: what runs may differ", name, strings.Join(files, ", ")),
		Fix:     fmt.Sprintf("lint the unit as systemd reads it: graceshim lint <(systemctl cat %s)", name)}, true
}
