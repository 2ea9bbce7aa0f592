package sysv

// StopFunc is the shell function a fix inserts and generated scripts use.
// It needs only a POSIX shell, kill, sleep (fractional, as GNU coreutils
// and busybox have) and readlink, so a fixed script runs on a CentOS 6 host
// without graceshim installed.
//
// It signals the master named in the pid file (never its workers), waits
// for it to go, bounded by the timeout, then sends TERM and waits 5 s, then
// KILL. A process counts as gone when kill -0 fails or /proc/PID/exe no
// longer names the executable it had when the stop began: a zombie waiting
// for its parent, or a pid the kernel has since given to something else.
// Variables are prefixed rather than local, because local is not POSIX.
const StopFunc = `# graceshim_stop PIDFILE SIGNAL TIMEOUT [BINARY] (added by graceshim initscript):
# send SIGNAL to the master named in PIDFILE, wait up to TIMEOUT seconds
# for it to exit, then send TERM and wait 5 s, then KILL. Returns 0 once the
# process is gone (removing PIDFILE), 1 if it is still there. With BINARY, a
# pid whose command line does not name it is a stale pid file's: left alone.
graceshim_runs() {
	[ -n "$2" ] && [ -r "/proc/$1/cmdline" ] || return 0
	case " $(tr '\000' ' ' <"/proc/$1/cmdline" 2>/dev/null) " in
	*"${2##*/}"*) return 0 ;;
	esac
	return 1
}
graceshim_alive() {
	kill -0 "$1" 2>/dev/null || return 1
	[ -z "$2" ] || [ "$(readlink "/proc/$1/exe" 2>/dev/null)" = "$2" ]
}
graceshim_wait() {
	_gs_ticks=$(($3 * 5))
	while graceshim_alive "$1" "$2"; do
		[ "$_gs_ticks" -gt 0 ] || return 1
		sleep 0.2
		_gs_ticks=$((_gs_ticks - 1))
	done
	return 0
}
graceshim_stop() {
	_gs_pid=
	_gs_timeout=$3
	case "$_gs_timeout" in '' | *[!0-9]*) _gs_timeout=300 ;; esac
	# Every command that may fail is guarded: scripts run under set -e.
	if [ -f "$1" ]; then
		read -r _gs_pid _ <"$1" || :
	fi
	case "$_gs_pid" in '' | *[!0-9]*) rm -f "$1"; return 0 ;; esac
	if ! kill -0 "$_gs_pid" 2>/dev/null; then
		rm -f "$1"
		return 0
	fi
	if ! graceshim_runs "$_gs_pid" "$4"; then
		echo "pid $_gs_pid in $1 is not ${4##*/}: a stale pid file; removing it" >&2
		rm -f "$1"
		return 0
	fi
	_gs_exe=$(readlink "/proc/$_gs_pid/exe" 2>/dev/null) || _gs_exe=
	kill -"$2" "$_gs_pid" 2>/dev/null || :
	if ! graceshim_wait "$_gs_pid" "$_gs_exe" "$_gs_timeout"; then
		echo "pid $_gs_pid still running ${_gs_timeout}s after $2: sending TERM" >&2
		kill -TERM "$_gs_pid" 2>/dev/null || :
		if ! graceshim_wait "$_gs_pid" "$_gs_exe" 5; then
			echo "pid $_gs_pid still running 5s after TERM: sending KILL" >&2
			kill -KILL "$_gs_pid" 2>/dev/null || :
			graceshim_wait "$_gs_pid" "$_gs_exe" 5 || return 1
		fi
	fi
	rm -f "$1"
	return 0
}
`
