package sysv

// StopFunc is the shell function a fix inserts and generated scripts use.
// It needs only a POSIX shell, kill, sleep, cat, tr, readlink and pidof,
// and /proc, so a fixed script runs on a CentOS 6 host without graceshim
// installed, and with BusyBox's applets: it reads parents from
// /proc/PID/stat rather than with ps (BusyBox's ps has neither -p nor
// --ppid), and a sleep that refuses a fraction (BusyBox built without
// FEATURE_FLOAT_SLEEP: "invalid number") makes it poll once a second. It is kept short on purpose:
// whoever reviews the fix in a config-management diff reads it whole.
//
// It finds the daemon's processes the way CentOS 6's killproc does
// (/etc/rc.d/init.d/functions, __pids_var_run and __pids_pidof): every pid
// on every line of the pid file (HAProxy with nbproc writes one a line),
// and when the file is missing or names nothing that runs, pidof of the
// binary. Unlike killproc it keeps only pids whose /proc/PID/exe has the
// binary's base name, or whose argv[0] does (an interpreted daemon such
// as unicorn runs as ruby; a stale pid file's pid, since given to another
// process, is never signalled) and, from pidof, only masters (a process
// whose parent runs the same binary is a worker), saying so on stderr.
// That fallback finds every instance of the binary on the host, as
// killproc without -p does, so it is for rewriting such a killproc only:
// every call whose original stop named a pid file passes "only" (killproc
// -p with a missing or stale pid file returns failure without pidof), as
// generated scripts do. pidof -c keeps processes with the caller's root
// and -o omits the script and its parent (sysvinit's pidof(8), which
// CentOS 6 and Debian ship; busybox's pidof lacks -c and finds nothing
// here, so the fallback does nothing). A pid is
// alive while /proc/PID/stat exists and its state is not Z (zombie) or X.
// /proc/PID/exe of a process under another uid is unreadable without
// CAP_SYS_PTRACE (proc(5), "ptrace access mode"; Docker drops that
// capability), so argv[0] from /proc/PID/cmdline, which anyone may read,
// decides then; a live pid from the pid file that neither confirms is
// reported, not signalled, and the stop fails keeping the pid file, since
// it cannot be told from a daemon still running.
//
// The bound is time since boot (/proc/uptime, proc(5)), not a count of
// polls, so a loaded machine does not stretch it, and not the wall clock
// (date +%s), which an NTP step or an operator's date -s moves forward or
// back mid-stop; whole seconds, so a wait lasts at least TIMEOUT and less
// than a second more. The timeout reads as killproc
// -d does: N or N.M (rounded up to whole seconds), with s, m, h or d;
// leading zeros are dropped, since the shell reads 08 as bad octal and 010
// as 8. One it cannot read (or of 9 digits and more, which would overflow
// once multiplied) gets a warning and DefaultStopTimeout's 60 s: refusing
// it would leave the daemon running, a worse stop than a default bound.
//
// Variables are prefixed rather than local, because local is not POSIX;
// every command that may fail is guarded, because scripts run under set -e
// and set -u.
const StopFunc = `# graceshim_stop PIDFILE BINARY SIGNAL TIMEOUT [only] (added by graceshim initscript):
# send SIGNAL to BINARY's masters (every pid in PIDFILE that runs BINARY; if
# none and no "only", pidof BINARY without its workers), wait up to TIMEOUT
# (N, Ns, Nm, Nh), then TERM and 5 s, then KILL. 0 once all are gone, else 1;
# _gs_none is 1 when nothing was running.
graceshim_is() { # PID BINARY: 0 runs BINARY (by exe or argv[0]), 1 gone, a zombie or another program, 2 runs but exe unreadable
	_gs_exe=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	case ${_gs_exe##*) } in Z* | X*) return 1 ;; esac
	if _gs_exe=$(readlink "/proc/$1/exe" 2>/dev/null); then
		_gs_exe=${_gs_exe% (deleted)} _gs_ok=1
		[ "${_gs_exe##*/}" != "${2##*/}" ] || return 0
	else _gs_ok=2; fi
	_gs_exe=$(tr '\000' ' ' <"/proc/$1/cmdline" 2>/dev/null) || return 1
	_gs_exe=${_gs_exe%% *} # argv[0]; nginx and php-fpm write "nginx: master process"
	_gs_exe=${_gs_exe%:}
	[ "${_gs_exe##*/}" != "${2##*/}" ] || return 0
	return $_gs_ok
}
graceshim_uptime() { # whole seconds since boot into _gs_now (/proc/uptime: the wall clock may jump)
	read -r _gs_now _gs_x </proc/uptime
	_gs_now=${_gs_now%%.*}
}
graceshim_ppid() { # PID: its parent's pid into _gs_pp, 0 when gone (/proc/PID/stat: "PID (comm) S PPID ...")
	_gs_pp=$(cat "/proc/$1/stat" 2>/dev/null) || _gs_pp='x) x 0'
	_gs_pp=${_gs_pp##*) }
	_gs_pp=${_gs_pp#* }
	_gs_pp=${_gs_pp%% *}
}
graceshim_wait() { # SECONDS: 0 once none of $_gs_pids runs $_gs_bin
	graceshim_uptime
	_gs_end=$((_gs_now + $1))
	while :; do
		_gs_left=
		for _gs_p in $_gs_pids; do
			if graceshim_is "$_gs_p" "$_gs_bin" || [ $? = 2 ]; then _gs_left="$_gs_left $_gs_p"; fi
		done
		_gs_pids=$_gs_left
		[ -n "$_gs_pids" ] || return 0
		graceshim_uptime
		[ "$_gs_now" -le "$_gs_end" ] || return 1
		sleep 0.2 2>/dev/null || sleep 1
	done
}
graceshim_stop() {
	_gs_bin=$2 _gs_t=${4%[smhd]} _gs_pids='' _gs_unsure='' _gs_up=0 _gs_none=
	_gs_u=${4#"$_gs_t"}
	case $_gs_t in *.*[1-9]*) _gs_up=1 ;; esac # killproc -d 1.5: round up
	_gs_t=${_gs_t%%.*}
	while case $_gs_t in 0?*) ;; *) false ;; esac; do _gs_t=${_gs_t#0}; done # 08 is not octal
	case $_gs_t in *[!0-9]* | ?????????* | '') # 9+ digits would overflow
		[ "$_gs_t$_gs_up" = 1 ] || {
			echo "graceshim_stop: timeout '$4' is not N, N.N, Ns, Nm, Nh or Nd: waiting 60 s" >&2
			_gs_t=60 _gs_u='' _gs_up=0
		} ;;
	esac
	_gs_t=$((${_gs_t:-0} + _gs_up))
	case $_gs_u in m) _gs_t=$((_gs_t * 60)) ;; h) _gs_t=$((_gs_t * 3600)) ;; d) _gs_t=$((_gs_t * 86400)) ;; esac
	# shellcheck disable=SC2013 # pids, one a line or several on one
	[ ! -r "$1" ] || for _gs_p in $(cat "$1"); do
		if graceshim_is "$_gs_p" "$2"; then _gs_pids="$_gs_pids $_gs_p"; elif [ $? = 2 ]; then
			echo "pid $_gs_p in $1 runs, but /proc/$_gs_p/exe is unreadable and argv[0] is not ${2##*/}: not signalling it" >&2
			_gs_unsure=1
		fi
	done
	if [ -z "$_gs_pids$_gs_unsure" ] && [ "${5:-}" != only ]; then
		for _gs_p in $(pidof -c -o $$ -o "$PPID" "$2" 2>/dev/null || :); do
			graceshim_ppid "$_gs_p"
			if graceshim_is "$_gs_p" "$2" && ! graceshim_is "$((_gs_pp + 0))" "$2"; then _gs_pids="$_gs_pids $_gs_p"; fi
		done
		[ -z "$_gs_pids" ] || echo "no ${2##*/} in $1: stopping the ${2##*/} masters pidof finds:$_gs_pids" >&2
	fi
	[ -n "$_gs_pids$_gs_unsure" ] || _gs_none=1 # nothing ran: a caller may still say "not running"
	# shellcheck disable=SC2086 # a list of pids
	if [ -n "$_gs_pids" ]; then
		kill -"$3" $_gs_pids 2>/dev/null || :
		if ! graceshim_wait "$_gs_t"; then
			echo "${2##*/} (pid$_gs_pids) still running ${_gs_t}s after $3: sending TERM" >&2
			kill -TERM $_gs_pids 2>/dev/null || :
			if ! graceshim_wait 5; then
				echo "${2##*/} (pid$_gs_pids) still running 5s after TERM: sending KILL" >&2
				# workers a KILLed master leaves behind keep its listening sockets
				for _gs_s in /proc/[0-9]*/stat; do
					_gs_p=${_gs_s#/proc/}
					_gs_p=${_gs_p%/stat}
					graceshim_ppid "$_gs_p"
					case " $_gs_pids " in *" $_gs_pp "*) graceshim_is "$_gs_p" "$2" && _gs_pids="$_gs_pids $_gs_p" ;; esac
				done
				kill -KILL $_gs_pids 2>/dev/null || :
				graceshim_wait 5 || return 1
			fi
		fi
	fi
	[ -z "$_gs_unsure" ] || return 1
	rm -f "$1"
}
`
