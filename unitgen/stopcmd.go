package unitgen

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/graceshim/graceshim/signals"
)

// signalCmd is what an ExecStop= or ExecReload= command does to the
// daemon, as far as graceshim can tell from its words.
type signalCmd struct {
	// Sends is true when the command signals the daemon.
	Sends bool
	// Signal is the first signal sent; 0 when it cannot tell.
	Signal syscall.Signal
	// Waits is true when the command waits for the daemon to exit
	// (start-stop-daemon --retry, killproc without a signal), Wait for
	// how long at most before it gives up or escalates.
	Waits bool
	Wait  time.Duration
	// Then is the signal the command sends itself once Wait is over
	// (killproc and start-stop-daemon --retry N send SIGKILL); 0 when it
	// gives up and returns instead.
	Then syscall.Signal
	// What names the command for messages ("start-stop-daemon --retry
	// QUIT/5").
	What string
	// Loses says what the command gives up that the daemon's graceful
	// stop keeps, even where its signal is the graceful one ("" when
	// nothing): redis-cli shutdown nosave skips the save.
	Loses string
	// Tested is the command's own config-test subcommand when it tests
	// the configuration before it signals: apachectl graceful runs
	// "$HTTPD -t" first and refuses a broken one (apachectl(8)), where a
	// bare USR1 makes Apache's parent exit.
	Tested string
}

// wrappers are init-like programs that run a command as their child.
// graceshim is one; tini and dumb-init pass signals on unchanged.
var wrappers = map[string]bool{"graceshim": true, "tini": true, "tini-static": true, "dumb-init": true, "catatonit": true}

// wrapperFlags are each wrapper's flags: true for the ones that take a
// value (in the next word, or glued on: -pSIGTERM, --rewrite=15:3), false
// for the ones that take none. A flag not listed makes inner fail rather
// than guess where the command starts.
// The lists are the help texts of Debian 12's packages:
//   - tini 0.19.0 (`tini -h`): only -p SIGNAL and -e EXIT_CODE take a
//     value; -h -s -v -w -g -l and --version take none.
//   - dumb-init 1.2.5 (`dumb-init --help`): -r/--rewrite s:r takes one;
//     -c/--single-child, -v/--verbose, -h/--help, -V/--version none.
//   - catatonit 0.1.7 (`catatonit -h`): -g -h -L -P -V/--version, none
//     with a value.
//   - graceshim: the run flags of main.go (runFlags); every one of them
//     takes a value. Keep this list in step with that one.
var wrapperFlags = map[string]map[string]bool{
	"tini":        tiniFlags,
	"tini-static": tiniFlags,
	"dumb-init": {"-r": true, "--rewrite": true,
		"-c": false, "--single-child": false, "-v": false, "--verbose": false,
		"-V": false, "--version": false, "-h": false, "--help": false},
	"catatonit": {"-g": false, "-h": false, "-L": false, "-P": false, "-V": false, "--version": false},
	"graceshim": {"--preset": true, "--map": true, "--pidfile": true, "--ready": true,
		"--ready-timeout": true, "--drain-timeout": true, "--stop-timeout": true,
		"--stall-timeout": true, "--kill-timeout": true, "--drain-delay": true,
		"--count": true, "--health-listen": true, "--health-check": true,
		"--notify": true, "--log-level": true},
}

var tiniFlags = map[string]bool{"-p": true, "-e": true,
	"-h": false, "-v": false, "-w": false, "-g": false, "-l": false, "-s": false, "--version": false}

// inner returns the command a wrapper runs, the wrapper's name ("" when
// argv is not a wrapper) and the index of the inner command in argv. It
// fails on a wrapper flag it does not know: the word after it may be the
// flag's value or the command.
func inner(argv []string) (cmd []string, wrapper string, at int, err error) {
	if len(argv) == 0 {
		return nil, "", 0, nil
	}
	base := filepath.Base(argv[0])
	if !wrappers[base] {
		return argv, "", 0, nil
	}
	flags := wrapperFlags[base]
	for i := 1; i < len(argv); i++ {
		a := argv[i]
		if a == "--" {
			return argv[i+1:], base, i + 1, nil
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			if base == "graceshim" {
				// A graceshim subcommand is not a wrapped command.
				return nil, base, len(argv), nil
			}
			return argv[i:], base, i, nil
		}
		if strings.HasPrefix(a, "--") {
			name, _, glued := strings.Cut(a, "=")
			value, known := flags[name]
			if !known {
				return nil, base, len(argv), fmt.Errorf("%s flag %s is unknown to graceshim unit: cannot tell where its command starts (put -- before the command)", base, name)
			}
			if value && !glued {
				i++
			}
			continue
		}
		if base == "graceshim" {
			// Single-dash long flags (-pidfile) as Go's flag syntax allows.
			name, _, glued := strings.Cut(a, "=")
			if value, known := flags["-"+name]; known {
				if value && !glued {
					i++
				}
				continue
			}
			return nil, base, len(argv), fmt.Errorf("graceshim flag %s is unknown to graceshim unit: cannot tell where its command starts (put -- before the command)", name)
		}
		// getopt short flags, possibly grouped (-sg) or with the value
		// glued on (-pSIGTERM).
		for j := 1; j < len(a); j++ {
			value, known := flags["-"+a[j:j+1]]
			if !known {
				return nil, base, len(argv), fmt.Errorf("%s flag -%s is unknown to graceshim unit: cannot tell where its command starts (put -- before the command)", base, a[j:j+1])
			}
			if value {
				if j == len(a)-1 {
					i++
				}
				break
			}
		}
	}
	return nil, base, len(argv), nil
}

// classifySignalCmd reads an ExecStop=/ExecReload= command.
func classifySignalCmd(argv []string) signalCmd {
	if len(argv) == 0 {
		return signalCmd{}
	}
	base := filepath.Base(argv[0])
	args := argv[1:]
	if (base == "sh" || base == "bash" || base == "dash") && len(args) >= 2 && args[0] == "-c" {
		// A shell line: read its first command. "$(cat /run/x.pid)" and
		// friends are only pid arguments here.
		words := strings.Fields(args[1])
		if len(words) == 0 {
			return signalCmd{}
		}
		c := classifySignalCmd(words)
		return c
	}
	switch base {
	case "kill", "pkill", "killall":
		sig := syscall.SIGTERM
		for i := 0; i < len(args); i++ {
			a := args[i]
			switch {
			case (a == "-s" || a == "--signal") && i+1 < len(args):
				if s, err := signals.Parse(args[i+1]); err == nil {
					sig = s
				}
				i++
			case strings.HasPrefix(a, "-") && len(a) > 1:
				if s, err := signals.Parse(a[1:]); err == nil {
					sig = s
				}
			}
		}
		return signalCmd{Sends: true, Signal: sig, What: base + " -" + signals.Name(sig)}
	case "start-stop-daemon":
		return classifySSD(args)
	case "killproc":
		sig := syscall.Signal(0)
		for _, a := range args {
			if strings.HasPrefix(a, "-") && len(a) > 1 && a != "-p" && a != "-b" && a != "-d" {
				if s, err := signals.Parse(a[1:]); err == nil {
					sig = s
				}
			}
		}
		if sig == 0 {
			return signalCmd{Sends: true, Signal: syscall.SIGTERM, Waits: true, Wait: 3 * time.Second, Then: syscall.SIGKILL, What: "killproc (TERM, 3 s, KILL)"}
		}
		return signalCmd{Sends: true, Signal: sig, What: "killproc -" + signals.Name(sig)}
	case "pg_ctlcluster", "pg_ctl":
		return classifyPgCtl(base, args)
	case "redis-cli":
		// redis-cli [options] shutdown [nosave|save] [now] [force]:
		// SHUTDOWN stops Redis as SIGTERM does, saving the RDB when
		// save points are set; "NOSAVE will prevent a DB saving
		// operation even if one or more save points are configured"
		// (https://redis.io/docs/latest/commands/shutdown/). It
		// returns when the server has gone (its connection closes).
		for i, a := range args {
			if !strings.EqualFold(a, "shutdown") || i > 0 && strings.HasPrefix(args[i-1], "-") && !strings.HasPrefix(args[i-1], "--") {
				continue // a -h/-p/-a value named shutdown is not the command
			}
			c := signalCmd{Sends: true, Signal: syscall.SIGTERM, What: "redis-cli shutdown"}
			for _, m := range args[i+1:] {
				if strings.EqualFold(m, "nosave") {
					c.What = "redis-cli shutdown nosave"
					c.Loses = "it skips the save that Redis's SIGTERM makes when save points are set, so every write since the last save is lost (SHUTDOWN NOSAVE)"
				}
			}
			return c
		}
		return signalCmd{}
	case "apachectl", "apache2ctl":
		for _, a := range args {
			switch a {
			case "graceful-stop":
				return signalCmd{Sends: true, Signal: syscall.SIGWINCH, What: base + " graceful-stop"}
			case "stop":
				return signalCmd{Sends: true, Signal: syscall.SIGTERM, What: base + " stop"}
			case "graceful":
				return signalCmd{Sends: true, Signal: syscall.SIGUSR1, What: base + " graceful", Tested: "configtest"}
			case "restart":
				return signalCmd{Sends: true, Signal: syscall.SIGHUP, What: base + " restart", Tested: "configtest"}
			}
		}
	}
	// httpd -k graceful-stop|stop (Red Hat's and Arch's ExecStop=). -k
	// graceful is left alone: httpd reads its configuration before it
	// signals, so that reload is kept as it is.
	for i, a := range args {
		if a == "-k" && i+1 < len(args) {
			switch args[i+1] {
			case "graceful-stop":
				return signalCmd{Sends: true, Signal: syscall.SIGWINCH, What: base + " -k graceful-stop"}
			case "stop":
				return signalCmd{Sends: true, Signal: syscall.SIGTERM, What: base + " -k stop"}
			}
		}
	}
	// nginx -s quit|stop|reload|reopen and the same for openresty.
	for i, a := range args {
		if a == "-s" && i+1 < len(args) {
			sig := map[string]syscall.Signal{"quit": syscall.SIGQUIT, "stop": syscall.SIGTERM, "reload": syscall.SIGHUP, "reopen": syscall.SIGUSR1}[args[i+1]]
			if sig != 0 {
				return signalCmd{Sends: true, Signal: sig, What: base + " -s " + args[i+1]}
			}
		}
	}
	return signalCmd{}
}

// pgModes are PostgreSQL's shutdown modes and the signal pg_ctl sends
// the postmaster for each (PostgreSQL docs, "Shutting Down the Server":
// SIGTERM smart, SIGINT fast, SIGQUIT immediate; pg_ctl(1) -m).
var pgModes = map[string]syscall.Signal{"smart": syscall.SIGTERM, "fast": syscall.SIGINT, "immediate": syscall.SIGQUIT}

// classifyPgCtl reads a stop by pg_ctl or by Debian's pg_ctlcluster
// (postgresql-common), which runs pg_ctl. Both default to the fast mode:
// pg_ctlcluster(1) "-m ... default is fast" (its `my $mode = 'fast'`),
// and pg_ctl since PostgreSQL 9.5. A mode is written -m MODE, --mode MODE,
// --mode=MODE or by its first letter (-m f); pg_ctl also takes -mf.
// pg_ctl stop waits for the server to go (-w, the default since 10),
// at most -t seconds, 60 by default (pg_ctl(1), PGCTLTIMEOUT), and then
// gives up and returns; pg_ctlcluster --force then stops it again in the
// immediate mode (pg_ctlcluster's stop()).
func classifyPgCtl(base string, args []string) signalCmd {
	mode, stop, force := "fast", false, false
	wait := 60 * time.Second
	for i := 0; i < len(args); i++ {
		a := args[i]
		val := func() string { return optValue(args, &i) }
		switch {
		case a == "stop":
			stop = true
		case a == "-f" || a == "--force":
			force = base == "pg_ctlcluster"
		case a == "-m" || a == "--mode" || strings.HasPrefix(a, "--mode="):
			mode = val()
		case strings.HasPrefix(a, "-m") && base == "pg_ctl":
			mode = a[2:]
		case a == "-t" || a == "--timeout" || strings.HasPrefix(a, "--timeout="):
			if n, err := strconv.Atoi(val()); err == nil {
				wait = time.Duration(n) * time.Second
			}
		}
	}
	if !stop {
		return signalCmd{}
	}
	for name := range pgModes {
		if mode != "" && strings.HasPrefix(name, mode) {
			mode = name
		}
	}
	sig, ok := pgModes[mode]
	if !ok {
		return signalCmd{}
	}
	c := signalCmd{Sends: true, Signal: sig, Waits: true, Wait: wait, What: base + " stop -m " + mode}
	if force {
		c.Signal, c.Then = syscall.SIGINT, syscall.SIGQUIT
		c.What = base + " stop --force (fast, then immediate)"
	}
	return c
}

// optValue is the value of the option args[*i]: after "=" in a long
// option (--mode=fast), else the next word, which it consumes.
func optValue(args []string, i *int) string {
	if k, v, ok := strings.Cut(args[*i], "="); ok && strings.HasPrefix(k, "--") {
		return v
	}
	if *i+1 < len(args) {
		*i++
		return args[*i]
	}
	return ""
}

var retryStep = regexp.MustCompile(`^\d+$`)

// classifySSD reads start-stop-daemon's --stop, --signal and --retry.
// Without --retry it sends one signal and returns; with a schedule it
// waits for the process to go, up to the timeouts. start-stop-daemon(8):
// a bare timeout N means SIGNAL/N/KILL/N, but a schedule is run as
// written, and "If the end of the schedule is reached and forever is not
// specified, then start-stop-daemon exits with error status 2": QUIT/5
// sends no KILL (measured with dpkg 1.21.22 from Debian 12: --retry
// QUIT/2 on a process that ignores QUIT exits 2 after 2 s, "refused to
// die", and leaves it running; --retry 1 --signal QUIT kills it).
func classifySSD(args []string) signalCmd {
	stop := false
	sig := syscall.SIGTERM
	retry := ""
	for i := 0; i < len(args); i++ {
		a := args[i]
		val := func() string { return optValue(args, &i) }
		switch {
		case a == "--stop" || a == "-K":
			stop = true
		case a == "--signal" || a == "-s" || strings.HasPrefix(a, "--signal="):
			if s, err := signals.Parse(val()); err == nil {
				sig = s
			}
		case a == "--retry" || a == "-R" || strings.HasPrefix(a, "--retry="):
			retry = val()
		}
	}
	if !stop {
		return signalCmd{}
	}
	if retry == "" {
		return signalCmd{Sends: true, Signal: sig, What: "start-stop-daemon --stop (one signal, no wait)"}
	}
	steps := strings.Split(retry, "/")
	if len(steps) == 1 && retryStep.MatchString(steps[0]) {
		// "--retry N" means SIGNAL/N/KILL/N.
		n, _ := strconv.Atoi(steps[0])
		return signalCmd{Sends: true, Signal: sig, Waits: true, Wait: time.Duration(n) * time.Second, Then: syscall.SIGKILL,
			What: "start-stop-daemon --retry " + retry}
	}
	c := signalCmd{Sends: true, Signal: sig, Waits: true, What: "start-stop-daemon --retry " + retry}
	first := true
	for _, st := range steps {
		if n, err := strconv.Atoi(st); err == nil {
			if first {
				c.Wait = time.Duration(n) * time.Second
				first = false
			}
			continue
		}
		if st == "forever" {
			continue
		}
		s, err := signals.Parse(strings.TrimPrefix(st, "-"))
		switch {
		case err != nil:
		case first && c.Wait == 0:
			c.Signal = s
		case !first && c.Then == 0:
			c.Then = s
		}
	}
	return c
}

// parseSpan reads a systemd time span ("5", "90s", "1min 30s", "5min",
// "infinity"), with the units of systemd.time(7). ok is false for what it
// cannot read; inf for "infinity" and any zero span ("0", "0s", "0min"):
// systemd disables a timeout set to zero, whatever its unit
// (systemd.service(5), TimeoutStartSec=).
func parseSpan(s string) (d time.Duration, inf, ok bool) {
	s = strings.TrimSpace(s)
	if s == "infinity" {
		return 0, true, true
	}
	if s == "" {
		return 0, false, true // an empty assignment resets the setting; it is not a zero span
	}
	// systemd's USEC_PER_MONTH and USEC_PER_YEAR (src/basic/time-util.h):
	// 30.44 and 365.25 days.
	const day = 24 * time.Hour
	units := []struct {
		names []string
		d     time.Duration
	}{
		{[]string{"nsec", "ns"}, time.Nanosecond},
		{[]string{"usec", "us", "µs", "μs"}, time.Microsecond},
		{[]string{"msec", "ms"}, time.Millisecond},
		{[]string{"seconds", "second", "sec", "s"}, time.Second},
		{[]string{"minutes", "minute", "min", "m"}, time.Minute},
		{[]string{"hours", "hour", "hr", "h"}, time.Hour},
		{[]string{"days", "day", "d"}, day},
		{[]string{"weeks", "week", "w"}, 7 * day},
		{[]string{"months", "month", "M"}, 2629800 * time.Second},
		{[]string{"years", "year", "y"}, 31557600 * time.Second},
	}
	rest := s
	for rest != "" {
		rest = strings.TrimLeft(rest, " ")
		i := 0
		for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.') {
			i++
		}
		if i == 0 {
			return 0, false, false
		}
		n, err := strconv.ParseFloat(rest[:i], 64)
		if err != nil {
			return 0, false, false
		}
		rest = strings.TrimLeft(rest[i:], " ")
		unit := time.Second
		j := 0
		// Letters, and the bytes of µ and μ.
		for j < len(rest) && (rest[j] >= 'a' && rest[j] <= 'z' || rest[j] >= 'A' && rest[j] <= 'Z' || rest[j] >= 0x80) {
			j++
		}
		if j > 0 {
			found := false
			for _, u := range units {
				for _, name := range u.names {
					if rest[:j] == name {
						unit, found = u.d, true
					}
				}
			}
			if !found {
				return 0, false, false
			}
		}
		d += time.Duration(n * float64(unit))
		rest = rest[j:]
	}
	if d == 0 {
		return 0, true, true
	}
	return d, false, true
}

// daemonArgv returns the daemon a command line runs when it runs it
// through env(1), bundle exec, rbenv exec or a shell that execs it
// (`sh -c 'exec nginx ...'`), so that the daemon's preset is picked
// rather than the generic one. The command graceshim runs stays as it
// was: each of these replaces itself with the daemon in the same pid.
func daemonArgv(argv []string) []string {
	for range 4 { // env sh -c 'exec env X=1 gunicorn' and no deeper
		if len(argv) == 0 {
			return argv
		}
		switch filepath.Base(argv[0]) {
		case "env":
			argv = envCommand(argv[1:])
		case "systemd-memcached-wrapper":
			// Debian's memcached.service runs this Perl script, which
			// reads /etc/memcached.conf into memcached's options and
			// execs /usr/bin/memcached in the same process (its
			// `exec "$memcached $params"`; measured: the pid's exe is
			// /usr/bin/memcached). Its options live in that file.
			return []string{"/usr/bin/memcached"}
		case "pg_ctlcluster", "pg_ctl":
			// Debian's postgresql@.service runs `pg_ctlcluster
			// --skip-systemctl-redirect %i start`, which runs pg_ctl
			// start: pg_ctl starts postgres in the background and
			// exits once it is up (pg_ctl(1)), so the postmaster is
			// not in this pid but an orphan graceshim adopts; it
			// follows it only through --pidfile (see pgDaemonizes;
			// Convert adds --foreground to pg_ctlcluster, which then
			// execs postgres in its own pid). Its signals are
			// postgres's.
			if slices.Contains(argv[1:], "start") {
				return []string{"postgres"}
			}
			return argv
		case "bundle", "bundler":
			// `bundle exec puma ...`, the way Rails apps start puma,
			// unicorn and sidekiq: Bundler execs the command in the
			// same process (bundler/cli/exec.rb, kernel_exec; a Ruby
			// script it loads in place, kernel_load), so the daemon
			// keeps the pid. Options go before the command
			// (--keep-file-descriptors, --gemfile=FILE).
			if len(argv) < 3 || argv[1] != "exec" {
				return argv
			}
			argv = argv[2:]
			for len(argv) > 0 && strings.HasPrefix(argv[0], "-") {
				if argv[0] == "--gemfile" && len(argv) > 1 {
					argv = argv[1:]
				}
				argv = argv[1:]
			}
		case "rbenv":
			// `rbenv exec bundle exec puma ...`, as capistrano-rbenv
			// makes every Bundler command: rbenv-exec ends in
			// `exec -a "$RBENV_COMMAND" "$RBENV_COMMAND_PATH" "$@"`
			// (rbenv/rbenv libexec/rbenv-exec), so the command keeps
			// the pid.
			if len(argv) < 3 || argv[1] != "exec" {
				return argv
			}
			argv = argv[2:]
		case "sh", "bash", "dash", "ash", "zsh":
			script, ok := shellScript(argv[1:])
			if !ok {
				return argv
			}
			// The last command of the script is the one that may become
			// the daemon: `ulimit -n 65536; exec nginx ...`.
			cmds := shellCommands(script)
			if len(cmds) == 0 {
				return argv
			}
			words := cmds[len(cmds)-1]
			for len(words) > 0 && isAssignment(words[0]) {
				words = words[1:]
			}
			if len(words) < 2 || words[0] != "exec" {
				return argv // not a shell that becomes the daemon
			}
			argv = words[1:]
			for len(argv) > 0 && strings.HasPrefix(argv[0], "-") { // exec -a NAME, exec -l
				if argv[0] == "-a" && len(argv) > 1 {
					argv = argv[1:]
				}
				argv = argv[1:]
			}
		default:
			return argv
		}
	}
	return argv
}

// pgDaemonizes says whether argv starts postgres through pg_ctl, which
// leaves it running in the background: pg_ctl start, and pg_ctlcluster
// start without --foreground ("Start postgres in foreground, without
// daemonizing via pg_ctl", pg_ctlcluster(1)).
func pgDaemonizes(argv []string) bool {
	if len(argv) == 0 || !slices.Contains(argv[1:], "start") {
		return false
	}
	switch filepath.Base(argv[0]) {
	case "pg_ctl":
		return true
	case "pg_ctlcluster":
		return !slices.Contains(argv[1:], "--foreground")
	}
	return false
}

// envCommand skips env(1)'s options and NAME=VALUE words.
func envCommand(args []string) []string {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return args[i+1:]
		case a == "-u" || a == "--unset" || a == "-C" || a == "--chdir" || a == "-S" || a == "--split-string":
			i++
		case strings.HasPrefix(a, "-"):
		case isAssignment(a):
		default:
			return args[i:]
		}
	}
	return nil
}

// shellScript returns the script of `sh -c SCRIPT` (also -lc, -ec, ...).
func shellScript(args []string) (string, bool) {
	for i, a := range args {
		if strings.HasPrefix(a, "-") && !strings.HasPrefix(a, "--") && strings.HasSuffix(a, "c") {
			if i+1 < len(args) {
				return args[i+1], true
			}
			return "", false
		}
		if !strings.HasPrefix(a, "-") {
			return "", false
		}
	}
	return "", false
}

func isAssignment(w string) bool {
	k, _, ok := strings.Cut(w, "=")
	return ok && envName.MatchString(k)
}

// shellCommands splits a POSIX shell script into its simple commands'
// words: quotes and backslashes are honoured, expansions are kept as
// text, and ';', '&', '|' and newlines separate commands.
func shellCommands(s string) [][]string {
	var cmds [][]string
	var words []string
	var cur strings.Builder
	in := false
	flush := func() {
		if in {
			words = append(words, cur.String())
			cur.Reset()
			in = false
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			flush()
		case c == ';' || c == '&' || c == '|' || c == '\n':
			flush()
			if len(words) > 0 {
				cmds = append(cmds, words)
			}
			words = nil
		case c == '\'':
			in = true
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				cur.WriteString(s[i+1:])
				i = len(s)
				break
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
		case c == '"':
			in = true
			for i++; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
		case c == '\\' && i+1 < len(s):
			in = true
			i++
			cur.WriteByte(s[i])
		default:
			in = true
			cur.WriteByte(c)
		}
	}
	flush()
	if len(words) > 0 {
		cmds = append(cmds, words)
	}
	return cmds
}

// cannotStop reports whether a signal stops nothing by itself: SIGCONT
// (which units use as a KillSignal= that does nothing, so that systemd
// waits after ExecStop=, as Red Hat's SCL httpd units do), the stop
// signals (the process is suspended, not ended) and those whose default
// action is to be ignored (signal(7)). WINCH is left out: httpd stops on
// it, and a unit that names it for another daemon presumably knows.
func cannotStop(sig syscall.Signal) bool {
	switch sig {
	case 0, syscall.SIGCONT, syscall.SIGSTOP, syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGCHLD, syscall.SIGURG:
		return true
	}
	return false
}

// GraceshimFlag reports whether the conversion knows graceshim's run flag
// name ("--pidfile") and that it takes a value: main's tests hold the
// list above to the CLI's own.
func GraceshimFlag(name string) (takesValue, known bool) {
	takesValue, known = wrapperFlags["graceshim"][name]
	return takesValue, known
}
