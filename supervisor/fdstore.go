package supervisor

// Keeping the server's listening sockets in systemd's file descriptor
// store, so that `systemctl restart` refuses no one without a .socket unit.
//
// systemd.service(5), FileDescriptorStoreMax=: file descriptors a service
// sends with "FDSTORE=1" (sd_pid_notify_with_fds(3)) "are passed back to
// the service's main process on the next service restart" as LISTEN_FDS,
// named by LISTEN_FDNAMES (FDNAME=), and "are automatically closed ...
// when the service is fully stopped and no job is queued or being executed
// for it". A restart is one job from the stop through the start, so the
// sockets outlive the old server: clients that connect meanwhile wait in
// the backlog and the next server, handed the same sockets, accepts them.
//
// After the server is ready, graceshim takes its listening sockets with
// pidfd_getfd(2) (Linux 5.6; the caller needs ptrace rights over the
// server, PTRACE_MODE_ATTACH_REALCREDS: the same user, or CAP_SYS_PTRACE)
// and sends them over $NOTIFY_SOCKET with SCM_RIGHTS (go-systemd's daemon
// package sends no fds). On the next start it hands them to the server
// as it hands a .socket unit's (sockets.go).
//
// A plain stop should refuse at once (a stopped server is one a load
// balancer must see gone), but the store keeps the sockets until the stop
// job ends, so clients would queue for the whole drain and then be reset.
// Measured with systemd 252 and a service that stores its listener and
// drains 3 s after TERM: through `systemctl restart` a client that came
// during the drain was served by the next process (LISTEN_FDS=1,
// LISTEN_FDNAMES=its FDNAME); through `systemctl stop` it was queued, then
// reset (ECONNRESET) when the stop ended, and NFileDescriptorStore went
// to 0.
// So at the graceful signal graceshim asks systemd, over D-Bus, which job
// the unit runs: for anything but a restart it removes the sockets from
// the store (FDSTOREREMOVE=1), and the server's closing of its listeners
// refuses new clients as it did without the store.
//
// Only nginx's preset uses the store: nginx picks the inherited sockets
// by address (its listen directives), so a socket the config no longer
// names is noticed and dropped. A daemon that takes every socket it is
// given (sd_listen_fds) would serve a stale one.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	godbus "github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"

	"github.com/graceshim/graceshim/signals"
	"github.com/graceshim/graceshim/supervisor/conns"
	"github.com/graceshim/graceshim/supervisor/proctab"
)

// fdStoreName starts the FDNAME of every socket graceshim stores; the
// socket's inode follows, so each can be removed by name.
const fdStoreName = "graceshim-listen-"

// fdStoreTimeout bounds each exchange with systemd about the store.
const fdStoreTimeout = 2 * time.Second

// fdStore keeps the server's listening sockets in systemd's fd store. The
// loop's goroutine owns it.
type fdStore struct {
	svc    service
	max    int             // FileDescriptorStoreMax of the unit
	stored map[uint64]bool // inodes sent to the store
	held   map[uint64]bool // inodes a .socket unit holds: never stored
	local  map[uint64]bool // inodes of AF_UNIX listeners: never stored (see keepListeners)
	log    *Logger
	failed bool // a failure was logged; the store is left alone since
}

// openFDStore returns the store when graceshim runs nginx as the main
// process of a unit with FileDescriptorStoreMax= above 0; nil otherwise.
// It asks systemctl show, so it must run before the child starts (see
// checkUnit).
func openFDStore(ctx context.Context, p signals.Preset, log *Logger) *fdStore {
	if p.Sockets != signals.SocketsNginxEnv || os.Getenv("NOTIFY_SOCKET") == "" || os.Getenv("INVOCATION_ID") == "" {
		// Only nginx uses the store (see above); for the others not even
		// the unit is asked, which costs a systemctl run at each start.
		return nil
	}
	cg, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil
	}
	svc, ok := serviceOf(string(cg))
	if !ok {
		return nil
	}
	if os.Getenv("MANAGERPID") != "" {
		svc.user = true
	}
	ctx, cancel := context.WithTimeout(ctx, unitCheckTimeout)
	defer cancel()
	args := []string{"show", "--property=FileDescriptorStoreMax", "--value", "--", svc.name}
	if svc.user {
		args = append([]string{"--user"}, args...)
	}
	out, err := exec.CommandContext(ctx, "systemctl", args...).Output()
	if err != nil {
		log.Debugf("cannot read FileDescriptorStoreMax of %s: %v", svc.name, err)
		return nil
	}
	max, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	if max <= 0 {
		return nil
	}
	return &fdStore{svc: svc, max: max, stored: map[uint64]bool{}, held: map[uint64]bool{}, local: map[uint64]bool{}, log: log}
}

// keep stores the listening sockets the server's process tree (below
// self) holds and the store has not got yet, and removes those it no
// longer holds. It runs when the server is ready and after each reload.
// It logs what it did; a failure is logged once and the store is left
// alone from then on.
func (s *fdStore) keep(self int) {
	if s == nil || s.failed {
		return
	}
	if err := s.keepListeners(self); err != nil {
		s.failed = true
		s.log.Warnf("cannot keep the listening sockets in systemd's fd store, a restart refuses connections: %v", err)
	}
}

func (s *fdStore) keepListeners(self int) error {
	listening, err := conns.ListeningInodes()
	if err != nil {
		return err
	}
	table, err := proctab.Read()
	if err != nil {
		return err
	}
	var (
		fds    []int
		names  []string
		inodes []uint64
	)
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	held := map[uint64]bool{}
	for _, pid := range proctab.Descendants(table, self)[1:] {
		fdInodes, err := listeningFDs(pid, listening)
		if err != nil {
			continue // gone, or not ours to read
		}
		for fd, ino := range fdInodes {
			held[ino] = true
			if s.stored[ino] || s.held[ino] || s.local[ino] || containsInode(inodes, ino) {
				continue
			}
			got, err := takeFD(pid, fd)
			if err != nil {
				return err
			}
			if sa, err := unix.Getsockname(got); err == nil {
				if ux, ok := sa.(*unix.SockaddrUnix); ok {
					// A unix listener stays out of the store: nginx
					// deletes the file of a unix socket it bound itself
					// when it exits (src/core/ngx_connection.c
					// ngx_close_listening_sockets: AF_UNIX, not
					// inherited), so after a restart the stored socket
					// would listen on a path nobody can reach, at every
					// restart after that too. The next nginx binds the
					// path again itself; clients of a unix socket are
					// local, and a .socket unit (whose path systemd
					// owns; an inherited socket's file nginx leaves
					// alone while its parent lives) keeps them waiting.
					unix.Close(got)
					s.local[ino] = true
					s.log.Infof("the unix listening socket %s stays out of systemd's fd store: nginx removes its file when it exits, so a restart refuses its clients (a .socket unit keeps them)", orUnnamed(ux.Name))
					continue
				}
			}
			fds = append(fds, got)
			names = append(names, fdStoreName+strconv.FormatUint(ino, 10))
			inodes = append(inodes, ino)
		}
	}
	if len(held) > 0 {
		// A socket the server no longer listens on (a reload dropped its
		// listen directive) leaves the store: kept, it would queue its
		// clients for nothing until the next restart.
		for ino := range s.stored {
			if !held[ino] {
				removeStored(fdStoreName+strconv.FormatUint(ino, 10), s.log)
				delete(s.stored, ino)
				s.log.Infof("a listening socket the server closed left systemd's fd store")
			}
		}
	}
	if len(fds) == 0 {
		return nil
	}
	if len(s.stored)+len(fds) > s.max {
		return fmt.Errorf("%d listening sockets, FileDescriptorStoreMax=%d", len(s.stored)+len(fds), s.max)
	}
	// One message per socket: FDNAME= names every fd of its message.
	for i, fd := range fds {
		if err := notifyFDs("FDSTORE=1\nFDNAME="+names[i], fd); err != nil {
			return err
		}
		s.stored[inodes[i]] = true
	}
	s.log.Infof("kept %d listening sockets in systemd's fd store, for the next start after a restart", len(fds))
	return nil
}

// inherit records the sockets graceshim was given at start: its own from
// the store, which are not stored twice, and a .socket unit's, which
// systemd holds already and are never stored.
func (s *fdStore) inherit(socks []inherited) {
	if s == nil {
		return
	}
	for _, in := range socks {
		var st unix.Stat_t
		if unix.Fstat(int(in.file.Fd()), &st) != nil {
			continue
		}
		if in.stored() {
			s.stored[st.Ino] = true
		} else {
			s.held[st.Ino] = true
		}
	}
}

// release removes graceshim's sockets from the store unless the unit's job
// is a restart, so that a stopped server refuses connections at once. It
// is called at the graceful signal.
func (s *fdStore) release(ctx context.Context) {
	if s == nil || len(s.stored) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, fdStoreTimeout)
	defer cancel()
	job, err := unitJob(ctx, s.svc)
	if err != nil {
		s.log.Warnf("cannot tell a restart from a stop (%v): the listening sockets stay in the fd store until the stop ends", err)
		return
	}
	if job == "restart" || job == "try-restart" || job == "reload-or-restart" {
		s.log.Infof("the job is a %s: the listening sockets stay in systemd's fd store; clients wait for the next start", job)
		return
	}
	for ino := range s.stored {
		removeStored(fdStoreName+strconv.FormatUint(ino, 10), s.log)
	}
	s.log.Infof("the job is a %s, not a restart: the listening sockets leave systemd's fd store, so connections are refused once %d listening sockets close", orNone(job), len(s.stored))
	s.stored = map[uint64]bool{}
}

func orUnnamed(path string) string {
	if path == "" {
		return "(unnamed)"
	}
	return path
}

func orNone(job string) string {
	if job == "" {
		return "stop without a job"
	}
	return job
}

// removeStored asks systemd to close the stored fds named name.
func removeStored(name string, log *Logger) {
	if err := notifyFDs("FDSTOREREMOVE=1\nFDNAME=" + name); err != nil {
		log.Warnf("cannot remove %s from systemd's fd store: %v", name, err)
	}
}

func containsInode(list []uint64, ino uint64) bool {
	for _, x := range list {
		if x == ino {
			return true
		}
	}
	return false
}

// listeningFDs maps pid's fds that are listening sockets to their inodes.
func listeningFDs(pid int, listening map[uint64]bool) (map[int]uint64, error) {
	dir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := map[int]uint64{}
	for _, e := range ents {
		link, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		ino, ok := strings.CutPrefix(link, "socket:[")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(ino, "]"), 10, 64)
		if err != nil || !listening[n] {
			continue
		}
		fd, err := strconv.Atoi(e.Name())
		if err == nil {
			out[fd] = n
		}
	}
	return out, nil
}

// takeFD duplicates fd of process pid into graceshim (pidfd_getfd(2)).
func takeFD(pid, fd int) (int, error) {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return -1, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(pidfd)
	got, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		return -1, fmt.Errorf("pidfd_getfd of fd %d of pid %d (needs Linux 5.6 and ptrace rights over it: the same user or CAP_SYS_PTRACE): %w", fd, pid, err)
	}
	return got, nil
}

// notifyFDs sends state to $NOTIFY_SOCKET with fds attached (SCM_RIGHTS),
// as sd_pid_notify_with_fds(3) does.
func notifyFDs(state string, fds ...int) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return fmt.Errorf("NOTIFY_SOCKET is not set")
	}
	if path[0] == '@' {
		path = "\x00" + path[1:] // an abstract socket
	}
	sock, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("cannot make a socket for the notify socket: %w", err)
	}
	defer unix.Close(sock)
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if err := unix.Sendmsg(sock, []byte(state), oob, &unix.SockaddrUnix{Name: path}, 0); err != nil {
		return fmt.Errorf("cannot send %q to the notify socket: %w", strings.ReplaceAll(state, "\n", " "), err)
	}
	return nil
}

// unitJob returns the type of the job systemd runs for the unit ("stop",
// "restart", ...), "" when none, asking the manager over its private D-Bus
// socket (no bus daemon needed): the unit's Job property, then the job's
// JobType (org.freedesktop.systemd1(5)).
func unitJob(ctx context.Context, svc service) (string, error) {
	path := "/run/systemd/private"
	if svc.user {
		path = filepath.Join(os.Getenv("XDG_RUNTIME_DIR"), "systemd", "private")
	}
	conn, err := godbus.Dial("unix:path="+path, godbus.WithContext(ctx))
	if err != nil {
		return "", fmt.Errorf("cannot reach systemd at %s: %w", path, err)
	}
	defer conn.Close()
	if err := conn.Auth([]godbus.Auth{godbus.AuthExternal(strconv.Itoa(os.Getuid()))}); err != nil {
		return "", fmt.Errorf("cannot authenticate to systemd at %s: %w", path, err)
	}
	var unitPath godbus.ObjectPath
	mgr := conn.Object("org.freedesktop.systemd1", "/org/freedesktop/systemd1")
	if err := mgr.CallWithContext(ctx, "org.freedesktop.systemd1.Manager.GetUnit", 0, svc.name).Store(&unitPath); err != nil {
		return "", fmt.Errorf("cannot find unit %s: %w", svc.name, err)
	}
	v, err := conn.Object("org.freedesktop.systemd1", unitPath).GetProperty("org.freedesktop.systemd1.Unit.Job")
	if err != nil {
		return "", fmt.Errorf("cannot read the job of %s: %w", svc.name, err)
	}
	// The Job property is a struct (uo): the job's id, 0 for none, and
	// its object path.
	fields, ok := v.Value().([]any)
	if !ok || len(fields) != 2 {
		return "", fmt.Errorf("unexpected Job property of %s: %s", svc.name, v)
	}
	var job struct {
		ID   uint32
		Path godbus.ObjectPath
	}
	job.ID, _ = fields[0].(uint32)
	job.Path, _ = fields[1].(godbus.ObjectPath)
	if job.ID == 0 {
		return "", nil
	}
	t, err := conn.Object("org.freedesktop.systemd1", job.Path).GetProperty("org.freedesktop.systemd1.Job.JobType")
	if err != nil {
		return "", fmt.Errorf("cannot read job %d of %s: %w", job.ID, svc.name, err)
	}
	s, _ := t.Value().(string)
	return s, nil
}
