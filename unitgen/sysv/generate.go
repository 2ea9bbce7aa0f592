package sysv

import (
	"bytes"
	"errors"
	"fmt"
	"path"
	"strings"
	"sync"
	"syscall"
	"text/template"

	"github.com/graceshim/graceshim/signals"
)

// Defaults for GenOptions fields left zero.
const (
	DefaultGraceshimPath = "/usr/bin/graceshim"
	// DefaultKillTimeout is graceshim's --kill-timeout in shim mode, in
	// seconds; it matches supervisor.DefaultKillTimeout.
	DefaultKillTimeout = 10
	// shimMargin is added to STOP_TIMEOUT + the kill timeout before the
	// script stops waiting for graceshim and signals it itself.
	shimMargin = 10
)

// GenOptions describe the script Generate writes.
type GenOptions struct {
	Style Style
	// Name is the service name (script, lock file, sysconfig file);
	// empty means the base name of Argv[0].
	Name string
	// Argv is the daemon's command line; Argv[0] should be an absolute
	// path.
	Argv []string
	// Preset gives the graceful, reload and fast signals.
	Preset signals.Preset
	// Shim runs the daemon under graceshim, which translates the stop and
	// watches the drain; otherwise the script signals the daemon itself,
	// which must then daemonize and write PIDFile.
	Shim bool
	// Graceshim is graceshim's path on the target host.
	Graceshim string
	// ShimFlags are graceshim run flags (--preset=nginx, ...) passed on as
	// they are, before --drain-timeout and --kill-timeout.
	ShimFlags []string
	// PIDFile is the daemon's pid file, or in shim mode graceshim's own;
	// empty means /var/run/NAME.pid (shim: /var/run/NAME-graceshim.pid).
	PIDFile string
	// LogFile receives graceshim's output in shim mode; empty means
	// /var/log/NAME-graceshim.log.
	LogFile string
	// StopTimeout is the default STOP_TIMEOUT in seconds (graceshim's
	// --drain-timeout in shim mode); zero means DefaultStopTimeout.
	StopTimeout int
	// KillTimeout is graceshim's --kill-timeout in seconds (shim mode);
	// zero means DefaultKillTimeout.
	KillTimeout int
	// Command is the generating command line, recorded in a comment.
	Command string
}

// Generate writes a complete init script: chkconfig and LSB headers;
// start, stop, restart, reload, status, condrestart/try-restart (and
// configtest for daemons that have one). Stop sends the graceful signal,
// waits for the process to go (bounded by STOP_TIMEOUT, which
// /etc/sysconfig/NAME or /etc/default/NAME can override), then escalates.
func Generate(o GenOptions) ([]byte, error) {
	if len(o.Argv) == 0 || o.Argv[0] == "" {
		return nil, errors.New("missing command: use graceshim initscript [options] -- COMMAND [ARGS...]")
	}
	if !path.IsAbs(o.Argv[0]) {
		return nil, fmt.Errorf("command %s: an init script needs the absolute path of the daemon", o.Argv[0])
	}
	if o.Name == "" {
		o.Name = path.Base(o.Argv[0])
	}
	if o.Preset.Name == "" {
		o.Preset, _ = signals.ForCommand(o.Argv[0])
	}
	if o.Graceshim == "" {
		o.Graceshim = DefaultGraceshimPath
	}
	if o.StopTimeout <= 0 {
		o.StopTimeout = DefaultStopTimeout
	}
	if o.KillTimeout <= 0 {
		o.KillTimeout = DefaultKillTimeout
	}
	if o.PIDFile == "" {
		o.PIDFile = "/var/run/" + o.Name + ".pid"
		if o.Shim {
			o.PIDFile = "/var/run/" + o.Name + "-graceshim.pid"
		}
	}
	if o.LogFile == "" {
		o.LogFile = "/var/log/" + o.Name + "-graceshim.log"
	}
	for _, s := range []string{o.Name, o.PIDFile, o.LogFile, o.Graceshim} {
		if strings.ContainsAny(s, " \t\n'\"$`\\") {
			return nil, fmt.Errorf("%q: names and paths in a generated script must not need quoting", s)
		}
	}

	d := genData{GenOptions: o}
	d.Exec = o.Argv[0]
	d.Comm = path.Base(o.Argv[0])
	if len(d.Comm) > 15 {
		d.Comm = d.Comm[:15] // /proc/PID/comm, which start-stop-daemon --name compares
	}
	var args []string
	for _, a := range o.Argv[1:] {
		args = append(args, shellQuote(a))
	}
	d.Args = strings.Join(args, " ")
	if !o.Shim && o.Style == StyleRedHat {
		// daemon() runs "$*" through bash -c: quote once more.
		args = args[:0]
		for _, a := range o.Argv[1:] {
			args = append(args, quoteTwice(a))
		}
		d.DaemonArgs = strings.Join(args, " ")
	}
	var flags []string
	for _, f := range o.ShimFlags {
		flags = append(flags, shellQuote(f))
	}
	d.ShimFlags = strings.Join(flags, " ")
	d.Graceful = signals.Name(o.Preset.Graceful)
	if o.Preset.Reload != 0 {
		d.Reload = signals.Name(o.Preset.Reload)
	}
	d.Schedule = fmt.Sprintf("%s/$STOP_TIMEOUT/TERM/5/KILL/5", d.Graceful)
	if o.Preset.Graceful == syscall.SIGTERM {
		d.Schedule = "TERM/$STOP_TIMEOUT/KILL/5"
	}
	switch o.Preset.Name {
	case "nginx", "openresty", "httpd":
		d.ConfigTest = true
	}
	d.StopFunc = strings.TrimSuffix(StopFunc, "\n")
	d.Margin = shimMargin

	tmpl := redhatTmpl()
	if o.Style == StyleLSB {
		tmpl = lsbTmpl()
	}
	var b bytes.Buffer
	if err := tmpl.Execute(&b, d); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// quoteTwice quotes a word for a command line that is itself run through
// bash -c: the word must survive two rounds of parsing.
func quoteTwice(s string) string {
	q := shellQuote(s)
	if q == s {
		return s
	}
	if !strings.ContainsAny(s, `'"$\`+"`") {
		return `"` + q + `"`
	}
	return shellQuote(q)
}

type genData struct {
	GenOptions
	Exec, Comm, Args, DaemonArgs string
	ShimFlags                    string
	Graceful, Reload, Schedule   string
	ConfigTest                   bool
	StopFunc                     string
	Margin                       int
}

var funcs = template.FuncMap{"upper": strings.ToUpper}

// redhatTmpl is parsed on first use: every graceshim start would pay for it
// (most of the package init cost: about 2,000 allocations).
var redhatTmpl = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("redhat").Funcs(funcs).Parse(`#!/bin/bash
#
# {{.Name}}	Start and stop {{.Name}}; stop and restart wait for it to finish
#		in-flight requests ({{.Graceful}}), bounded by STOP_TIMEOUT.
#
# chkconfig: - 85 15
# description: {{.Name}}{{if .Shim}}, run under graceshim,{{end}} stopped gracefully with {{.Graceful}}
# processname: {{if .Shim}}graceshim{{else}}{{.Comm}}{{end}}
# config: /etc/sysconfig/{{.Name}}
# pidfile: {{.PIDFile}}
#
### BEGIN INIT INFO
# Provides: {{.Name}}
# Required-Start: $local_fs $remote_fs $network
# Required-Stop: $local_fs $remote_fs $network
# Default-Start: 2 3 4 5
# Default-Stop: 0 1 6
# Short-Description: start and stop {{.Name}}
# Description: {{.Name}}, stopped with {{.Graceful}} and a bounded wait for
#  in-flight requests before TERM and KILL.
### END INIT INFO
#
# Generated by graceshim initscript{{if .Command}}: {{.Command}}{{end}}
# Set STOP_TIMEOUT (seconds of graceful stop before TERM, then KILL) in
# /etc/sysconfig/{{.Name}}.

# Source function library.
# shellcheck source=/dev/null
. /etc/rc.d/init.d/functions

prog={{.Name}}
exec={{.Exec}}
{{- if .Shim}}
graceshim={{.Graceshim}}
logfile={{.LogFile}}
{{- end}}
pidfile={{.PIDFile}}
lockfile=/var/lock/subsys/{{.Name}}

# shellcheck source=/dev/null
[ -f /etc/sysconfig/$prog ] && . /etc/sysconfig/$prog

STOP_TIMEOUT=${STOP_TIMEOUT:-{{.StopTimeout}}}
case $STOP_TIMEOUT in '' | *[!0-9]*) echo "STOP_TIMEOUT=$STOP_TIMEOUT is not whole seconds; using {{.StopTimeout}}" >&2; STOP_TIMEOUT={{.StopTimeout}} ;; esac

{{.StopFunc}}
{{- if .ConfigTest}}

configtest() {
	"$exec" -t {{.Args}}
}

configtest_q() {
	"$exec" -t {{.Args}} >/dev/null 2>&1
}
{{- end}}

rh_status() {
	status -p "$pidfile" "$prog"
}

rh_status_q() {
	rh_status >/dev/null 2>&1
}

start() {
	[ -x "$exec" ] || exit 5
{{- if .Shim}}
	[ -x "$graceshim" ] || exit 5
{{- end}}
{{- if .ConfigTest}}
	configtest_q || { configtest; return 6; }
{{- end}}
	echo -n $"Starting $prog: "
{{- if .Shim}}
	if rh_status_q; then
		success $"$prog startup"
		echo
		return 0
	fi
	# graceshim does not daemonize: run it in the background in a session
	# of its own and record its pid. It turns TERM into {{.Graceful}}, waits for
	# the connections to drain and escalates after STOP_TIMEOUT.
	setsid nohup "$graceshim" {{if .ShimFlags}}{{.ShimFlags}} {{end}}--drain-timeout="${STOP_TIMEOUT}s" --kill-timeout={{.KillTimeout}}s -- \
		"$exec" {{.Args}} >>"$logfile" 2>&1 </dev/null &
	echo $! >"$pidfile"
	sleep 1
	if rh_status_q; then
		success $"$prog startup"
		retval=0
	else
		failure $"$prog startup"
		rm -f "$pidfile"
		retval=1
	fi
{{- else}}
	daemon --pidfile="$pidfile" "$exec" {{.DaemonArgs}}
	retval=$?
{{- end}}
	echo
	[ $retval -eq 0 ] && touch "$lockfile"
	return $retval
}

stop() {
	echo -n $"Stopping $prog: "
{{- if .Shim}}
	# graceshim bounds the drain by STOP_TIMEOUT and its kill timeout;
	# this wait only matters if graceshim itself hangs. "only": every
	# service run under graceshim is a graceshim process, so only the pid
	# file tells this one apart, never pidof.
	graceshim_stop "$pidfile" "$graceshim" TERM "$((STOP_TIMEOUT + {{.KillTimeout}} + {{.Margin}}))" only
{{- else}}
	graceshim_stop "$pidfile" "$exec" {{.Graceful}} "$STOP_TIMEOUT" only
{{- end}}
	retval=$?
	if [ $retval -eq 0 ]; then
		success $"$prog shutdown"
		rm -f "$lockfile"
	else
		failure $"$prog shutdown"
	fi
	echo
	return $retval
}

restart() {
{{- if .ConfigTest}}
	configtest_q || { configtest; return 6; }
{{- end}}
	stop || return 1
	start
}

reload() {
{{- if .Reload}}
{{- if .ConfigTest}}
	configtest_q || { configtest; return 6; }
{{- end}}
	echo -n $"Reloading $prog: "
{{- if .Shim}}
	# graceshim passes HUP on as {{.Reload}}.
	killproc -p "$pidfile" "$prog" -HUP
{{- else}}
	killproc -p "$pidfile" "$prog" -{{.Reload}}
{{- end}}
	retval=$?
	echo
	return $retval
{{- else}}
	echo $"$prog has no reload signal; use restart"
	return 3
{{- end}}
}

case "$1" in
	start)
		rh_status_q && exit 0
		start
		;;
	stop)
		rh_status_q || exit 0
		stop
		;;
	restart)
		restart
		;;
	reload)
		rh_status_q || exit 7
		reload
		;;
	force-reload)
		{{if .Reload}}reload{{else}}restart{{end}}
		;;
	status)
		rh_status
		;;
	condrestart|try-restart)
		rh_status_q || exit 0
		restart
		;;
{{- if .ConfigTest}}
	configtest)
		configtest
		;;
{{- end}}
	*)
		echo $"Usage: $0 {start|stop|status|restart|condrestart|try-restart|reload|force-reload{{if .ConfigTest}}|configtest{{end}}}"
		exit 2
esac
exit $?
`))
})

// lsbTmpl is parsed on first use: every graceshim start would pay for it
// (most of the package init cost: about 2,000 allocations).
var lsbTmpl = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("lsb").Funcs(funcs).Parse(`#!/bin/sh
### BEGIN INIT INFO
# Provides:          {{.Name}}
# Required-Start:    $local_fs $remote_fs $network $syslog
# Required-Stop:     $local_fs $remote_fs $network $syslog
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
# Short-Description: start and stop {{.Name}}
# Description:       {{.Name}}{{if .Shim}}, run under graceshim,{{end}} stopped with {{.Graceful}} and a
#                    bounded wait for in-flight requests before TERM and KILL.
### END INIT INFO
#
# chkconfig: - 85 15
# description: {{.Name}}, stopped gracefully with {{.Graceful}}
#
# Generated by graceshim initscript{{if .Command}}: {{.Command}}{{end}}
# Set STOP_TIMEOUT (seconds of graceful stop before TERM, then KILL) in
# /etc/default/{{.Name}}.

PATH=/sbin:/usr/sbin:/bin:/usr/bin
NAME={{.Name}}
DESC={{.Name}}
DAEMON={{.Exec}}
{{- if .Shim}}
GRACESHIM={{.Graceshim}}
LOGFILE={{.LogFile}}
{{- end}}
PIDFILE={{.PIDFile}}

[ -x "$DAEMON" ] || exit 0
{{- if .Shim}}
[ -x "$GRACESHIM" ] || exit 0
{{- end}}

# shellcheck source=/dev/null
[ -r /etc/default/$NAME ] && . /etc/default/$NAME

STOP_TIMEOUT=${STOP_TIMEOUT:-{{.StopTimeout}}}
case $STOP_TIMEOUT in '' | *[!0-9]*) echo "STOP_TIMEOUT=$STOP_TIMEOUT is not whole seconds; using {{.StopTimeout}}" >&2; STOP_TIMEOUT={{.StopTimeout}} ;; esac

# shellcheck source=/dev/null
. /lib/lsb/init-functions
{{- if .ConfigTest}}

do_configtest() {
	"$DAEMON" -t {{.Args}}
}
{{- end}}

# Return 0 if started, 1 if already running, 2 if it could not be started.
do_start() {
{{- if .ConfigTest}}
	do_configtest >/dev/null 2>&1 || return 2
{{- end}}
{{- if .Shim}}
	start-stop-daemon --start --quiet --pidfile "$PIDFILE" --exec "$GRACESHIM" --test >/dev/null || return 1
	# graceshim does not daemonize: run it in the background in a session
	# of its own and record its pid. It turns TERM into {{.Graceful}}, waits for
	# the connections to drain and escalates after STOP_TIMEOUT.
	setsid nohup "$GRACESHIM" {{if .ShimFlags}}{{.ShimFlags}} {{end}}--drain-timeout="${STOP_TIMEOUT}s" --kill-timeout={{.KillTimeout}}s -- \
		"$DAEMON" {{.Args}} >>"$LOGFILE" 2>&1 </dev/null &
	echo $! >"$PIDFILE"
	sleep 1
	start-stop-daemon --status --pidfile "$PIDFILE" --exec "$GRACESHIM" || { rm -f "$PIDFILE"; return 2; }
{{- else}}
	start-stop-daemon --start --quiet --pidfile "$PIDFILE" --exec "$DAEMON" --test >/dev/null || return 1
	start-stop-daemon --start --quiet --pidfile "$PIDFILE" --exec "$DAEMON" -- {{.Args}} || return 2
{{- end}}
}

# Return 0 if stopped, 1 if it was not running, 2 if it could not be
# stopped. The pid file is removed only once the process is gone.
do_stop() {
{{- if .Shim}}
	# graceshim bounds the drain by STOP_TIMEOUT and its kill timeout;
	# this schedule only matters if graceshim itself hangs.
	start-stop-daemon --stop --quiet --retry "TERM/$((STOP_TIMEOUT + {{.KillTimeout}} + {{.Margin}}))/KILL/5" --pidfile "$PIDFILE" --exec "$GRACESHIM"
{{- else}}
	start-stop-daemon --stop --quiet --retry "{{.Schedule}}" --pidfile "$PIDFILE" --name {{.Comm}}
{{- end}}
	RETVAL=$?
	[ "$RETVAL" = 2 ] && return 2
	rm -f "$PIDFILE"
	return "$RETVAL"
}
{{- if .Reload}}

do_reload() {
{{- if .ConfigTest}}
	do_configtest >/dev/null 2>&1 || return 1
{{- end}}
{{- if .Shim}}
	# graceshim passes HUP on as {{.Reload}}.
	start-stop-daemon --stop --signal HUP --quiet --pidfile "$PIDFILE" --exec "$GRACESHIM"
{{- else}}
	start-stop-daemon --stop --signal {{.Reload}} --quiet --pidfile "$PIDFILE" --name {{.Comm}}
{{- end}}
}
{{- end}}

case "$1" in
	start)
		log_daemon_msg "Starting $DESC" "$NAME"
		do_start
		case "$?" in
			0|1) log_end_msg 0 ;;
			*) log_end_msg 1 ;;
		esac
		;;
	stop)
		log_daemon_msg "Stopping $DESC" "$NAME"
		do_stop
		case "$?" in
			0|1) log_end_msg 0 ;;
			*) log_end_msg 1 ;;
		esac
		;;
	restart)
		log_daemon_msg "Restarting $DESC" "$NAME"
{{- if .ConfigTest}}
		if ! do_configtest >/dev/null 2>&1; then
			log_end_msg 1
			exit 1
		fi
{{- end}}
		do_stop
		case "$?" in
			0|1)
				do_start
				case "$?" in
					0) log_end_msg 0 ;;
					*) log_end_msg 1 ;;
				esac
				;;
			*) log_end_msg 1 ;;
		esac
		;;
	try-restart|condrestart)
		if start-stop-daemon --status --pidfile "$PIDFILE"; then
			"$0" restart
			exit $?
		fi
		;;
	reload{{if .Reload}}|force-reload{{end}})
{{- if .Reload}}
		log_daemon_msg "Reloading $DESC configuration" "$NAME"
		do_reload
		log_end_msg $?
{{- else}}
		log_warning_msg "$NAME has no reload signal; use restart"
		exit 3
{{- end}}
		;;
{{- if not .Reload}}
	force-reload)
		"$0" restart
		exit $?
		;;
{{- end}}
	status)
		status_of_proc -p "$PIDFILE" "{{if .Shim}}$GRACESHIM{{else}}$DAEMON{{end}}" "$NAME" && exit 0 || exit $?
		;;
{{- if .ConfigTest}}
	configtest)
		do_configtest
		exit $?
		;;
{{- end}}
	*)
		echo "Usage: $0 {start|stop|status|restart|try-restart|reload|force-reload{{if .ConfigTest}}|configtest{{end}}}" >&2
		exit 3
		;;
esac

exit 0
`))
})
