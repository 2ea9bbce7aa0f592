package supervisor

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"

	"github.com/graceshim/graceshim/supervisor/proctab"
)

// NotifyMode says whether the child gets a notify socket of graceshim's
// own.
type NotifyMode int

const (
	// NotifyAuto relays for presets whose daemon speaks sd_notify itself
	// (Preset.NativeNotify).
	NotifyAuto NotifyMode = iota
	// NotifyRelay relays whatever the preset.
	NotifyRelay
	// NotifyOff gives the child no notify socket at all.
	NotifyOff
)

// ParseNotifyMode reads "auto", "relay" or "off".
func ParseNotifyMode(s string) (NotifyMode, error) {
	switch s {
	case "auto", "":
		return NotifyAuto, nil
	case "relay", "on":
		return NotifyRelay, nil
	case "off":
		return NotifyOff, nil
	}
	return 0, fmt.Errorf("unknown notify mode %q (want auto, relay or off)", s)
}

// relay is the notify socket graceshim gives a child that speaks
// sd_notify(3) itself. Under NotifyAccess=main systemd would drop the
// child's own datagrams (graceshim is the main process), so graceshim
// listens in its place and decides what each line means for the unit:
//
//   - READY=1 is graceshim's READY=1 (instead of the listening-socket
//     guess), and ends a reload;
//   - RELOADING=1 starts a reload systemd hears about;
//   - STATUS= is shown, after graceshim's own words, while the server runs;
//     during a stop graceshim's drain status is shown instead;
//   - WATCHDOG=1 feeds systemd's watchdog, and from the first one on
//     graceshim stops feeding it itself, so a hung daemon starves it;
//   - MAINPID= is dropped (graceshim stays the main process) and
//     STOPPING=1 only logged (graceshim tells systemd when it stops).
//
// The socket is a file in a directory of graceshim's own (mode 0711, a
// random name: a daemon that dropped its privileges can still send, and
// nobody can list it; in
// $RUNTIME_DIRECTORY, $XDG_RUNTIME_DIR or the temporary directory, in
// that order), removed when graceshim ends. sd_notify(3) also allows an
// abstract socket ("@name"), and libsystemd (php-fpm, HAProxy, redis),
// gunicorn, uwsgi and Caddy accept one, but not every client does:
// Debian 12's puma (5.6 with the sd_notify gem 0.1.1) fails to start with
// "Errno::ENOENT connect(2) for UNIX @graceshim/...". A path works with
// every client; the abstract name is the fallback where no directory can
// be made. Any process that can reach the socket may send to it, so each
// datagram's sender is checked (SO_PASSCRED: the kernel attaches the
// sender's pid) to be one of graceshim's descendants.
type relay struct {
	conn *net.UnixConn
	addr string // NOTIFY_SOCKET as the child sees it
	dir  string // the directory holding the socket, "" for an abstract one
	// watchdog is WATCHDOG_USEC systemd gave graceshim, 0 when off: the
	// child gets the same, so that a daemon that feeds the watchdog itself
	// (php-fpm, puma) does.
	watchdog time.Duration
}

// maxNotifyDatagram bounds a datagram read; systemd's own limit for a
// notification is about the same (NOTIFY_BUFFER_MAX, src/core/manager.c).
const maxNotifyDatagram = 4096

// openRelay makes the child's notify socket.
func openRelay() (*relay, error) {
	dir, addr := "", ""
	for _, base := range []string{os.Getenv("RUNTIME_DIRECTORY"), os.Getenv("XDG_RUNTIME_DIR"), os.TempDir()} {
		// RUNTIME_DIRECTORY may list several, separated by colons
		// (systemd.exec(5)); the first will do.
		base, _, _ = strings.Cut(base, ":")
		if base == "" {
			continue
		}
		if d, err := os.MkdirTemp(base, "graceshim-notify-"); err == nil {
			dir, addr = d, filepath.Join(d, "notify")
			break
		}
	}
	if addr == "" {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("cannot name the notify socket: %w", err)
		}
		addr = fmt.Sprintf("@graceshim/%d/notify/%s", os.Getpid(), hex.EncodeToString(b[:]))
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		if dir != "" {
			os.RemoveAll(dir)
		}
		return nil, fmt.Errorf("cannot listen on notify socket %s: %w", addr, err)
	}
	r := &relay{conn: conn, addr: addr, dir: dir}
	if dir != "" {
		// The socket's own mode follows the umask; the sender check
		// below is what keeps strangers out.
		err = errors.Join(os.Chmod(dir, 0o711), os.Chmod(addr, 0o666))
	}
	if err == nil {
		err = setSockopts(conn)
	}
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("cannot set up notify socket %s: %w", addr, err)
	}
	if every, err := daemon.SdWatchdogEnabled(false); err == nil && every > 0 {
		r.watchdog = every
	}
	return r, nil
}

// setSockopts asks the kernel for each datagram's sender (SO_PASSCRED)
// and the time it was queued (SO_TIMESTAMPNS): a READY=1 queued before a
// reload's signal was sent must not end that reload (php-fpm repeats
// READY=1 in every heartbeat, sapi/fpm/fpm/fpm_systemd.c).
func setSockopts(c *net.UnixConn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1)
		if serr == nil {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
		}
	}); err != nil {
		return err
	}
	return serr
}

// prepare gives the command its notify socket and, when systemd's
// watchdog is on, the watchdog variables.
//
// The watchdog is per process: sd_watchdog_enabled(3) returns 0 in any
// process whose pid is not WATCHDOG_PID, and treats an unset WATCHDOG_PID
// as "for whoever reads it" (src/libsystemd/sd-daemon/sd-daemon.c), which
// keeps workers that inherit the variables from pinging. So WATCHDOG_PID
// must be the master's pid:
//
//   - a daemon that stays in the foreground is its own master, known once
//     it runs: a shell sets WATCHDOG_PID and execs the command, as
//     passSockets does for LISTEN_PID;
//   - a daemon graceshim is told daemonizes (daemonizes: --pidfile) forks
//     its master and the process started exits, so no pid known at exec
//     is the master's (naming the first one, as systemd does for
//     Type=forking, makes the master's sd_watchdog_enabled return 0 and
//     its watchdog silently off). It gets no WATCHDOG_PID, and graceshim
//     applies the per-process rule itself: it relays WATCHDOG=1 from the
//     master it follows only (onChildNote), as systemd accepts only the
//     main pid's under NotifyAccess=main.
//
// php-fpm reads WATCHDOG_USEC alone (sapi/fpm/fpm/fpm_systemd.c) and
// pings only when it is above 2 s.
func (r *relay) prepare(cmd *exec.Cmd, daemonizes bool) {
	env := make([]string, 0, len(cmd.Env)+2)
	for _, kv := range cmd.Env {
		if !strings.HasPrefix(kv, "NOTIFY_SOCKET=") {
			env = append(env, kv)
		}
	}
	env = append(env, "NOTIFY_SOCKET="+r.addr)
	if r.watchdog > 0 {
		env = append(env, "WATCHDOG_USEC="+strconv.FormatInt(r.watchdog.Microseconds(), 10))
		if !daemonizes {
			cmd.Args = append([]string{"sh", "-c", `WATCHDOG_PID=$$; export WATCHDOG_PID; exec "$0" "$@"`, cmd.Path}, cmd.Args[1:]...)
			cmd.Path = "/bin/sh"
		}
	}
	cmd.Env = env
}

func (r *relay) Close() error {
	err := r.conn.Close()
	if r.dir != "" {
		// The child may run as another user (User= is graceshim's too,
		// but a daemon may drop privileges): the directory is graceshim's
		// and removing it never depends on the child.
		os.RemoveAll(r.dir)
	}
	return err
}

// childNote is one datagram from the child's tree, or graceshim's own
// reload marker read back (mark != 0).
type childNote struct {
	pid   int       // the sender
	at    time.Time // when the kernel queued it (zero: unknown)
	lines []string  // its assignments, in order ("READY=1")
	mark  uint64    // a reload marker of graceshim's (reloadSeq), 0 for the child's
}

// A datagram socket's queue is first in, first out, whoever the senders
// are, and the relay hands datagrams to the event loop in the order it
// reads them. So graceshim orders a reload's evidence against its signal
// without clocks: just before the reload signal goes out it sends a
// marker datagram to the notify socket itself; whatever the loop reads
// after the marker was sent after it. (The kernel's SCM_TIMESTAMPNS is
// wall-clock time, which may step; it is only the fallback for a marker
// that could not be queued.)
//
// That alone does not make a READY=1 the end of a reload: php-fpm repeats
// "READY=1\nSTATUS=Processes active: ..." as a heartbeat every
// systemd_interval (10 s by default), and one can fire after the signal
// and before the reload is done (sapi/fpm/fpm/fpm_systemd.c,
// fpm_systemd_heartbeat; its USR2 reload re-executes the master, whose
// start-up sends "READY=1\nSTATUS=Ready to handle connections\nMAINPID=",
// and it never says RELOADING=1). A daemon seen repeating READY=1 while
// nothing reloads is taken as one that heartbeats; for it a reload is
// done only on RELOADING=1 then READY=1, on a READY=1 that announces a
// start (with MAINPID=), or on its new workers (pollReload), all after
// the marker. So is a daemon whose first READY=1 came with MAINPID=, as
// php-fpm's does: its restarts announce themselves the same way, and its
// first heartbeat may come only after the first reload (10 s after its
// start).

// markerKey starts graceshim's marker datagram.
const markerKey = "GRACESHIM_RELOAD_MARK="

// reloadSeq is what the notify socket showed of a reload under way.
type reloadSeq struct {
	mark       uint64 // the marker sent before the reload's signal, 0: none could be sent
	past       bool   // the marker was read back: later datagrams came after the signal
	reloading  bool   // RELOADING=1 came after the marker
	heartbeats bool   // the daemon repeats READY=1 while nothing reloads
	announces  bool   // the daemon's first READY=1 came with MAINPID=: its (re)starts say so
	last       uint64 // the last marker's number
}

// sendMark queues marker n on the notify socket, without blocking: the
// loop that sends it is the one that drains what the relay read, so a
// full queue must fail rather than wait.
func (r *relay) sendMark(n uint64) error {
	raw, err := r.conn.SyscallConn()
	if err != nil {
		return err
	}
	to := &unix.SockaddrUnix{Name: r.addr}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.Sendto(int(fd), []byte(markerKey+strconv.FormatUint(n, 10)), unix.MSG_DONTWAIT, to)
	}); err != nil {
		return err
	}
	return serr
}

// serve reads datagrams until ctx ends and passes on those sent by a
// descendant of graceshim (pid self).
func (r *relay) serve(ctx context.Context, self int, log *Logger, out chan<- childNote) {
	go func() {
		<-ctx.Done()
		r.conn.Close()
	}()
	buf := make([]byte, maxNotifyDatagram)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred)+unix.CmsgSpace(16)+unix.CmsgSpace(4*253))
	for {
		n, oobn, _, _, err := r.conn.ReadMsgUnix(buf, oob)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			log.Warnf("notify socket: %v", err)
			continue
		}
		pid, at, ok := senderPID(oob[:oobn])
		if !ok {
			log.Debugf("notify socket: a datagram without credentials, dropped")
			continue
		}
		if pid == self {
			// graceshim's own reload marker.
			if v, ok := strings.CutPrefix(string(buf[:n]), markerKey); ok {
				if mark, err := strconv.ParseUint(v, 10, 64); err == nil && mark != 0 {
					select {
					case out <- childNote{pid: pid, at: at, mark: mark}:
					case <-ctx.Done():
						return
					}
				}
			}
			continue
		}
		if !inTree(self, pid) {
			log.Warnf("notify socket: a datagram from pid %d, not a process of graceshim's tree, dropped", pid)
			continue
		}
		note := childNote{pid: pid, at: at, lines: parseNotify(string(buf[:n]))}
		select {
		case out <- note:
		case <-ctx.Done():
			return
		}
	}
}

// senderPID reads the sender's pid and the time the datagram was queued
// from its control messages, and closes any descriptors the sender passed
// (FDSTORE=1): graceshim keeps none, and an unclosed one would leak.
func senderPID(oob []byte) (int, time.Time, bool) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return 0, time.Time{}, false
	}
	pid, ok := 0, false
	var at time.Time
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) >= 16 {
			// struct timespec: two native longs (64-bit Linux).
			sec := int64(binary.NativeEndian.Uint64(m.Data[0:8]))
			nsec := int64(binary.NativeEndian.Uint64(m.Data[8:16]))
			at = time.Unix(sec, nsec)
			continue
		}
		if fds, err := unix.ParseUnixRights(&m); err == nil {
			for _, fd := range fds {
				unix.Close(fd)
			}
			continue
		}
		if cred, err := unix.ParseUnixCredentials(&m); err == nil {
			pid, ok = int(cred.Pid), cred.Pid > 0
		}
	}
	return pid, at, ok
}

// inTree reports whether pid is a descendant of self, walking up its
// parents (one /proc/PID/stat read each; a daemon's sender is its master or
// a worker, one or two steps from graceshim) rather than reading the whole
// process table: BenchmarkInTree measures both. A sender that exited
// before the datagram was read is no longer anyone's descendant: its
// datagram is dropped, as systemd drops one from a pid it cannot place.
func inTree(self, pid int) bool {
	if pid == self {
		return false
	}
	// The depth bound guards against a cycle seen through pids reused
	// while walking.
	for depth := 0; pid > 1 && depth < 64; depth++ {
		ppid, ok := proctab.Parent(pid)
		if !ok {
			return false
		}
		if ppid == self {
			return true
		}
		pid = ppid
	}
	return false
}

// inTreeByTable is inTree over the whole process table, kept as the
// benchmark's alternative.
func inTreeByTable(self, pid int) bool {
	if pid == self {
		return false
	}
	table, err := proctab.Read()
	if err != nil {
		return false
	}
	return slices.Contains(proctab.Descendants(table, self), pid)
}

// parseNotify splits a datagram into its newline-separated assignments
// (sd_notify(3)), dropping empty lines.
func parseNotify(s string) []string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if line != "" {
			out = append(out, line)
		}
	}
	return out
}

// onChildNote acts on one datagram of the child's.
func (l *loop) onChildNote(now time.Time, n childNote) {
	log := l.opts.Log
	if n.mark != 0 {
		if n.mark == l.seq.mark {
			l.seq.past = true
		}
		return
	}
	var pass []string // relayed to systemd as they are
	ready, reloading, watchdog, mainpid := false, false, false, false
	status, hasStatus := "", false
	for _, line := range n.lines {
		key, val, _ := strings.Cut(line, "=")
		switch key {
		case "READY":
			ready = val == "1"
		case "RELOADING":
			reloading = val == "1"
		case "STATUS":
			status, hasStatus = val, true
		case "WATCHDOG":
			if val == "1" && n.pid != l.main {
				// The watchdog is the master's (prepare): a worker's
				// ping would keep a hung master's service alive.
				log.Debugf("ignoring WATCHDOG=1 from pid %d: only the master (pid %d) feeds the watchdog", n.pid, l.main)
			} else if val == "1" {
				watchdog = true
			} else {
				pass = append(pass, line) // WATCHDOG=trigger: the daemon asks for the watchdog action
			}
		case "WATCHDOG_USEC", "EXTEND_TIMEOUT_USEC", "ERRNO", "BUSERROR":
			pass = append(pass, line)
		case "MAINPID":
			mainpid = true
			// graceshim stays the main process: systemd's signals and
			// MAINPID must reach graceshim, which follows the master.
			log.Debugf("ignoring %s from pid %d: graceshim stays the main process", line, n.pid)
		case "STOPPING":
			if !l.stop.stopping() {
				log.Infof("%s (pid %d) says it is stopping", l.name, n.pid)
			}
		case "MONOTONIC_USEC":
			// Comes with RELOADING=1; graceshim sends its own.
		default:
			log.Debugf("ignoring %q from pid %d", line, n.pid)
		}
	}
	log.Debugf("notify from pid %d: %q", n.pid, n.lines)
	l.childSpoke = true
	if hasStatus {
		l.childStatus = status
	}
	if len(pass) > 0 {
		l.notify(strings.Join(pass, "\n"))
	}
	if watchdog {
		if !l.childFeeds {
			l.childFeeds = true
			log.Infof("%s feeds the systemd watchdog itself: graceshim relays its pings and no longer sends its own", l.name)
		}
		if l.opts.HealthCheck == nil || l.healthy {
			l.notify("WATCHDOG=1")
		}
	}
	switch {
	case !reloading:
	case !l.ready:
		// HAProxy -Ws says RELOADING=1 at start, before its first
		// READY=1 (measured with haproxy 2.6): part of its start-up.
		log.Debugf("%s says RELOADING=1 while starting: ignored", l.name)
	case l.reload == nil && !l.stop.stopping():
		l.childReloads(now, n.at)
	case l.seq.past || (l.seq.mark == 0 && !n.at.IsZero() && !n.at.Before(l.reloadSent)):
		l.seq.reloading = true
	}
	statusSent := false
	if ready && !l.stop.stopping() {
		if l.ready && l.childReady && l.reload == nil && l.upgrade == nil && !reloading && !mainpid && !l.seq.heartbeats {
			// READY=1 again while nothing reloads: a heartbeat.
			l.seq.heartbeats = true
			log.Infof("%s repeats READY=1 while nothing reloads (a heartbeat, as php-fpm's): its reloads are done on RELOADING=1 then READY=1, a READY=1 with MAINPID= (a restart), or new workers", l.name)
		}
		if !l.childReady && mainpid {
			l.seq.announces = true
		}
		if !l.childReady && l.reexec == nil {
			// Started, with no re-exec of its own to wait for: how
			// it takes its signals from now on (reexec.go).
			l.noteSteady()
		}
		l.childReady = true
		if l.reload != nil && !l.reloadUntil.IsZero() && l.reloadDoneBy(n, mainpid) {
			l.reloadShown(fmt.Sprintf("reloaded: %s said READY=1", l.name))
			statusSent = true
		}
		if !l.ready && l.opts.HealthCheck == nil {
			// The daemon's word, not a guess: it is ready when it says
			// so (redis once its data set is loaded, php-fpm once its
			// pools run), whatever it listens on.
			l.markReady("%s", l.runningStatus())
			statusSent = true
		}
	}
	if ready && l.stop.stopping() && l.reload != nil && !l.reloadUntil.IsZero() && l.reloadDoneBy(n, mainpid) {
		// A stop waits for this reload (its signals are held): the
		// daemon's word ends it.
		l.reloadShown(fmt.Sprintf("reloaded: %s said READY=1", l.name))
	}
	if hasStatus && !statusSent && l.ready && !l.stop.stopping() && l.reload == nil && l.upgrade == nil {
		l.notify("STATUS=" + l.runningStatus())
	}
}

// runningStatus is the STATUS= text while the server runs: graceshim's
// words, then the daemon's own status when it gave one.
func (l *loop) runningStatus() string {
	s := fmt.Sprintf("running: %s (pid %d)", l.name, l.main)
	if l.childStatus != "" {
		s += ": " + l.childStatus
	}
	return s
}

// startRelay gives cmd a notify socket of graceshim's own when opts ask
// for one, and returns it (nil: none, the child gets no NOTIFY_SOCKET).
// With --notify=relay READY=1 waits for the child's own (ReadyNotify)
// unless --ready=exec said otherwise. With --notify=auto some daemons of
// a NativeNotify preset speak only when told to (haproxy -Ws, redis
// --supervised systemd, puma with its sd_notify gem): READY=1 is the
// daemon's when it speaks, and its listening socket's when it has said
// nothing at all by notifyGrace after it listens (deferToChild). A relay that cannot be made is logged and
// graceshim goes on without one: the service matters more.
func startRelay(opts *Options, cmd *exec.Cmd) *relay {
	switch {
	case opts.Notify == NotifyOff:
		return nil
	case opts.Notify == NotifyAuto && !opts.Preset.NativeNotify:
		return nil
	}
	r, err := openRelay()
	if err != nil {
		opts.Log.Warnf("%v; %s gets no notify socket and readiness is guessed from its listening sockets", err, cmd.Args[0])
		return nil
	}
	r.prepare(cmd, opts.PIDFile != "")
	if opts.Ready == ReadyListen && opts.Notify == NotifyRelay {
		// Asked for: the daemon's word alone.
		opts.Ready = ReadyNotify
	}
	opts.Log.Infof("%s gets graceshim's notify socket %s: its READY=1, STATUS=, RELOADING=1 and WATCHDOG=1 are relayed", opts.Argv[0], r.addr)
	return r
}

// notifyGrace is how long, under --notify=auto, a daemon that listens but
// has said nothing on its notify socket may take to say something before
// its listening socket is taken as its readiness. A variable for tests.
var notifyGrace = time.Second

// notifyAuto reports whether the child got a notify socket because its
// preset speaks sd_notify (not because --notify=relay asked for it).
func (l *loop) notifyAuto() bool {
	return l.opts.Notify == NotifyAuto && l.opts.Preset.NativeNotify
}

// deferToChild decides, when the child's tree first listens, whether its
// readiness is the child's to say: it reports true when READY=1 must not
// be sent for the listener now. A child that has spoken on its notify
// socket is waited for; one that has said nothing gets notifyGrace.
func (l *loop) deferToChild(now time.Time, listening []string) bool {
	if !l.notifyAuto() {
		return false
	}
	if l.childSpoke {
		l.opts.Log.Infof("%s speaks sd_notify: its READY=1, not its listening socket, says when it is ready", l.name)
		return true
	}
	l.listening = listening
	l.graceTimer = time.NewTimer(notifyGrace)
	l.graceC = l.graceTimer.C
	return true
}

// onNotifyGrace ends the grace a listening child had to speak.
func (l *loop) onNotifyGrace() {
	l.graceC = nil
	if l.ready || l.childSpoke || l.stop.stopping() {
		return
	}
	l.opts.Log.Infof("%s said nothing on its notify socket within %s of listening: ready by its listening socket (start it with its sd_notify option, e.g. haproxy -Ws or redis --supervised systemd, for READY=1 on its own terms; --notify=off gives it no socket)", l.name, notifyGrace)
	l.markReady("running: %s (pid %d), listening on %s", l.name, l.main, strings.Join(l.listening, ", "))
}

// reloadDoneBy reports whether READY=1 in n ends the reload under way.
// It must have been sent after the reload's signal: after graceshim's
// marker, or, when no marker could be queued, stamped by the kernel no
// earlier than the signal. A daemon that heartbeats must also have said
// RELOADING=1 since, or announce a restart (MAINPID=).
func (l *loop) reloadDoneBy(n childNote, mainpid bool) bool {
	after := l.seq.past
	if l.seq.mark == 0 {
		after = n.at.IsZero() || !n.at.Before(l.reloadSent)
	}
	if !after {
		return false
	}
	return !(l.seq.heartbeats || l.seq.announces) || l.seq.reloading || mainpid
}

// markReload starts the notify socket's part of a reload: the marker
// goes out before the reload's signal, so every datagram read after it
// was sent after the signal.
func (l *loop) markReload() {
	l.seq = reloadSeq{heartbeats: l.seq.heartbeats, announces: l.seq.announces, last: l.seq.last + 1}
	if l.rel == nil {
		return
	}
	if err := l.rel.sendMark(l.seq.last); err != nil {
		l.opts.Log.Warnf("cannot queue the reload marker on the notify socket (%v): the kernel's timestamps order the reload's READY=1 instead", err)
		return
	}
	l.seq.mark = l.seq.last
}
