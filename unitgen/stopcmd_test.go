package unitgen

import (
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestInnerWrapperFlags reads the command out of wrapper command lines:
// which flags take a value decides where the command starts.
func TestInnerWrapperFlags(t *testing.T) {
	for _, tc := range []struct {
		argv    string
		cmd     string // "" when there is none
		at      int
		wantErr string
	}{
		{argv: "/usr/bin/tini -s -- /usr/sbin/nginx -g x", cmd: "/usr/sbin/nginx -g x", at: 3},
		// tini's -g takes no value: the command is the next word.
		{argv: "/usr/bin/tini -g /usr/sbin/nginx", cmd: "/usr/sbin/nginx", at: 2},
		{argv: "/usr/bin/tini -p SIGTERM -e 143 /usr/sbin/nginx", cmd: "/usr/sbin/nginx", at: 5},
		{argv: "/usr/bin/tini -pSIGTERM -sg /usr/sbin/nginx", cmd: "/usr/sbin/nginx", at: 3},
		{argv: "/usr/bin/tini -sp SIGTERM /usr/sbin/nginx", cmd: "/usr/sbin/nginx", at: 3},
		{argv: "/usr/bin/tini -vvv /usr/sbin/nginx", cmd: "/usr/sbin/nginx", at: 2},
		// dumb-init's --rewrite s:r takes a value.
		{argv: "/usr/bin/dumb-init --rewrite 15:3 /usr/bin/gunicorn app:app", cmd: "/usr/bin/gunicorn app:app", at: 3},
		{argv: "/usr/bin/dumb-init -r 15:3 -c /usr/bin/gunicorn", cmd: "/usr/bin/gunicorn", at: 4},
		{argv: "/usr/bin/dumb-init --rewrite=15:3 --single-child /usr/bin/gunicorn", cmd: "/usr/bin/gunicorn", at: 3},
		{argv: "/usr/bin/catatonit -g -- /usr/sbin/nginx", cmd: "/usr/sbin/nginx", at: 3},
		// graceshim's run flags take a value, in both forms.
		{argv: "/usr/bin/graceshim --pidfile /run/x.pid -- /usr/sbin/nginx", cmd: "/usr/sbin/nginx", at: 4},
		// Without --, a word after graceshim's flags is a subcommand
		// (graceshim runs a command only after --).
		{argv: "/usr/bin/graceshim --pidfile /run/x.pid reload 1", at: 5},
		{argv: "/usr/bin/graceshim --drain-timeout=1m --preset nginx -- /usr/sbin/nginx", cmd: "/usr/sbin/nginx", at: 5},
		{argv: "/usr/bin/graceshim reload 1234", at: 3},
		// Unknown flags: the next word may be their value; refuse.
		{argv: "/usr/bin/tini -x /usr/sbin/nginx", wantErr: "tini flag -x is unknown"},
		{argv: "/usr/bin/dumb-init --new-flag 3 /usr/bin/gunicorn", wantErr: "dumb-init flag --new-flag is unknown"},
		{argv: "/usr/bin/graceshim --nope x /usr/sbin/nginx", wantErr: "graceshim flag --nope is unknown"},
		// An unknown flag after -- is the command's own.
		{argv: "/usr/bin/tini -- /usr/sbin/nginx -x", cmd: "/usr/sbin/nginx -x", at: 2},
		{argv: "/usr/sbin/nginx -g x", cmd: "/usr/sbin/nginx -g x", at: 0},
	} {
		argv := strings.Fields(tc.argv)
		cmd, _, at, err := inner(argv)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("inner(%s): err %v, want %q", tc.argv, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("inner(%s): %v", tc.argv, err)
			continue
		}
		if !slices.Equal(cmd, strings.Fields(tc.cmd)) || at != tc.at {
			t.Errorf("inner(%s) = %q at %d, want %q at %d", tc.argv, cmd, at, tc.cmd, tc.at)
		}
	}
}

// TestParseSpan reads systemd time spans (systemd.time(7)); any zero span
// means no timeout, as "0" does.
func TestParseSpan(t *testing.T) {
	for _, tc := range []struct {
		in      string
		d       time.Duration
		inf, ok bool
	}{
		{"0", 0, true, true}, {"0s", 0, true, true}, {"0min", 0, true, true}, {"0 ms", 0, true, true},
		{"infinity", 0, true, true},
		{"90", 90 * time.Second, false, true}, {"1min 30s", 90 * time.Second, false, true},
		{"2w", 14 * 24 * time.Hour, false, true}, {"1 week", 7 * 24 * time.Hour, false, true},
		{"1M", 2629800 * time.Second, false, true}, {"1y", 31557600 * time.Second, false, true},
		{"5000000ns", 5 * time.Millisecond, false, true}, {"3μs", 3 * time.Microsecond, false, true},
		{"3µs", 3 * time.Microsecond, false, true}, {"1h 1s", time.Hour + time.Second, false, true},
		{"5 parsecs", 0, false, false}, {"abc", 0, false, false},
	} {
		d, inf, ok := parseSpan(tc.in)
		if d != tc.d || inf != tc.inf || ok != tc.ok {
			t.Errorf("parseSpan(%q) = %s, %v, %v; want %s, %v, %v", tc.in, d, inf, ok, tc.d, tc.inf, tc.ok)
		}
	}
}

// TestSSDEscalation: what start-stop-daemon --retry sends once its first
// wait is over (start-stop-daemon(8); measured with dpkg 1.21.22: a
// schedule ends without a KILL of its own, a bare timeout ends in KILL).
func TestSSDEscalation(t *testing.T) {
	for _, tc := range []struct {
		args string
		sig  syscall.Signal
		wait time.Duration
		then syscall.Signal
	}{
		{"--stop --retry QUIT/5 --pidfile /run/nginx.pid", syscall.SIGQUIT, 5 * time.Second, 0},
		{"--stop --retry QUIT/5/TERM/5/KILL/5 --pidfile /run/nginx.pid", syscall.SIGQUIT, 5 * time.Second, syscall.SIGTERM},
		{"--stop --retry=TERM/30/KILL/5 --pidfile /run/x.pid", syscall.SIGTERM, 30 * time.Second, syscall.SIGKILL},
		{"--stop --signal QUIT --retry 5 --pidfile /run/x.pid", syscall.SIGQUIT, 5 * time.Second, syscall.SIGKILL},
		{"--stop --retry 10 --pidfile /run/x.pid", syscall.SIGTERM, 10 * time.Second, syscall.SIGKILL},
		{"--stop --retry -QUIT/20/forever/-KILL/5", syscall.SIGQUIT, 20 * time.Second, syscall.SIGKILL},
	} {
		c := classifySSD(strings.Fields(tc.args))
		if !c.Sends || !c.Waits || c.Signal != tc.sig || c.Wait != tc.wait || c.Then != tc.then {
			t.Errorf("%s: signal %v wait %s then %v, want %v %s %v", tc.args, c.Signal, c.Wait, c.Then, tc.sig, tc.wait, tc.then)
		}
	}
}

// TestLintSSDSaysWhoKills: lint names the SIGKILL start-stop-daemon
// sends itself after a bare --retry N, and says a schedule gives up.
func TestLintSSDSaysWhoKills(t *testing.T) {
	for _, tc := range []struct{ retry, want string }{
		{"QUIT/5", "then gives up and returns; systemd then sends KillSignal=SIGTERM"},
		{"5 --signal QUIT", "then sends SIGKILL itself (an immediate kill)"},
	} {
		unit := "[Service]\nExecStart=/usr/sbin/nginx -g 'daemon off;'\nExecStop=/sbin/start-stop-daemon --stop --retry " + tc.retry + " --pidfile /run/nginx.pid\n"
		if got := lintProblems(t, "nginx.service", unit, ""); !strings.Contains(got, tc.want) {
			t.Errorf("--retry %s: lint says\n%s\nwant %q", tc.retry, got, tc.want)
		}
	}
}

// TestPgCtlStop reads the stop modes of pg_ctl and of Debian's
// pg_ctlcluster (postgresql-common), which both default to fast.
func TestPgCtlStop(t *testing.T) {
	for _, tc := range []struct {
		argv string
		sig  syscall.Signal // 0: not a stop
		wait time.Duration
		then syscall.Signal
	}{
		// Debian 12's postgresql@.service ExecStop=.
		{"/usr/bin/pg_ctlcluster --skip-systemctl-redirect -m fast %i stop", syscall.SIGINT, time.Minute, 0},
		{"/usr/bin/pg_ctlcluster 15 main stop", syscall.SIGINT, time.Minute, 0},
		{"/usr/bin/pg_ctlcluster --mode=smart 15 main stop", syscall.SIGTERM, time.Minute, 0},
		{"/usr/bin/pg_ctlcluster -m s 15 main stop", syscall.SIGTERM, time.Minute, 0},
		{"/usr/bin/pg_ctlcluster --force 15 main stop", syscall.SIGINT, time.Minute, syscall.SIGQUIT},
		{"/usr/lib/postgresql/15/bin/pg_ctl stop -D /var/lib/pgsql/data -mi", syscall.SIGQUIT, time.Minute, 0},
		{"/usr/lib/postgresql/15/bin/pg_ctl stop -D /var/lib/pgsql/data -m smart -t 300", syscall.SIGTERM, 5 * time.Minute, 0},
		{"/usr/bin/pg_ctlcluster --skip-systemctl-redirect %i reload", 0, 0, 0},
		{"/usr/bin/pg_ctlcluster -m bogus 15 main stop", 0, 0, 0},
	} {
		got := classifySignalCmd(strings.Fields(tc.argv))
		if got.Sends != (tc.sig != 0) || got.Signal != tc.sig || got.Then != tc.then || (tc.sig != 0 && (!got.Waits || got.Wait != tc.wait)) {
			t.Errorf("%s: got %+v, want signal %v, wait %v, then %v", tc.argv, got, tc.sig, tc.wait, tc.then)
		}
	}
}

// TestConvertPgCtlcluster: pg_ctlcluster start daemonizes postgres, so
// the conversion picks postgres's preset, drops the fast ExecStop= and
// follows the postmaster through the pid file; without one it refuses.
func TestConvertPgCtlcluster(t *testing.T) {
	const unit = "[Service]\nType=forking\nExecStart=-/usr/bin/pg_ctlcluster --skip-systemctl-redirect %i start\nExecStop=/usr/bin/pg_ctlcluster --skip-systemctl-redirect -m fast %i stop\nPIDFile=/run/postgresql/%i.pid\n"
	u, _, err := Parse("postgresql@.service", []byte(unit))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Convert(u, Options{Graceshim: "/usr/bin/graceshim", SystemdVersion: 252}, false)
	if err != nil {
		t.Fatal(err)
	}
	out := string(res.Unit)
	for _, want := range []string{"--preset=postgres -- /usr/bin/pg_ctlcluster --foreground --stdlog --skip-systemctl-redirect %i start\n", "KillMode=mixed"} {
		if !strings.Contains(out, want) {
			t.Errorf("converted unit lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\nExecStop=") || !strings.Contains(strings.Join(res.Notes, "\n"), "postgres's fast stop") {
		t.Errorf("the fast ExecStop= is not dropped as a fast stop:\n%s\nnotes: %q", out, res.Notes)
	}
	if strings.Contains(out, "--pidfile") {
		t.Errorf("postgres in the foreground needs no --pidfile:\n%s", out)
	}
	// pg_ctl itself only starts postgres in the background.
	pgctl := "[Service]\nType=forking\nExecStart=/usr/lib/postgresql/15/bin/pg_ctl start -D /var/lib/postgresql/15/main -w\nExecStop=/usr/lib/postgresql/15/bin/pg_ctl stop -D /var/lib/postgresql/15/main -m fast\nPIDFile=/var/lib/postgresql/15/main/postmaster.pid\n"
	u, _, err = Parse("postgresql.service", []byte(pgctl))
	if err != nil {
		t.Fatal(err)
	}
	if _, err = Convert(u, Options{Graceshim: "/usr/bin/graceshim", SystemdVersion: 252}, false); err == nil || !strings.Contains(err.Error(), "postmaster.pid holds more than the pid") {
		t.Errorf("pg_ctl start with PIDFile=postmaster.pid: %v, want a refusal naming the file's other lines", err)
	}
	ext, _, err := Parse("postgresql.service", []byte(strings.Replace(pgctl, "/var/lib/postgresql/15/main/postmaster.pid", "/run/postgresql/15-main.pid", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if res, err = Convert(ext, Options{Graceshim: "/usr/bin/graceshim", SystemdVersion: 252}, false); err != nil || !strings.Contains(string(res.Unit), "--preset=postgres --pidfile=/run/postgresql/15-main.pid -- /usr/lib/postgresql/15/bin/pg_ctl start") {
		t.Errorf("pg_ctl start with external_pid_file: %v\n%s", err, res.Unit)
	}
	noPid, _, err := Parse("postgresql.service", []byte(strings.Replace(pgctl, "PIDFile=/var/lib/postgresql/15/main/postmaster.pid\n", "", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Convert(noPid, Options{Graceshim: "/usr/bin/graceshim", SystemdVersion: 252}, false); err == nil || !strings.Contains(err.Error(), "runs postgres in the background") {
		t.Errorf("Convert without PIDFile=: %v, want a refusal naming pg_ctl's daemonizing", err)
	}
}

// TestLintPgStopModes: lint names what each of PostgreSQL's stop modes
// does when an ExecStop= gives it.
func TestLintPgStopModes(t *testing.T) {
	for _, tc := range []struct{ mode, want string }{
		{"fast", "sends INT, postgres's fast stop: every session's current transaction is aborted"},
		{"immediate", "sends QUIT, postgres's fast stop: the immediate shutdown"},
		{"smart", ""},
	} {
		unit := "[Service]\nType=forking\nExecStart=/usr/lib/postgresql/15/bin/pg_ctl start -D /var/lib/postgresql/15/main -s -w -t 300\nExecStop=/usr/lib/postgresql/15/bin/pg_ctl stop -D /var/lib/postgresql/15/main -s -m " + tc.mode + "\nPIDFile=/var/lib/postgresql/15/main/postmaster.pid\nTimeoutStopSec=1h\n"
		got := lintProblems(t, "postgresql.service", unit, "ExecStop")
		if tc.want == "" && strings.Contains(got, "fast stop") || tc.want != "" && !strings.Contains(got, tc.want) {
			t.Errorf("-m %s: lint says %q, want %q", tc.mode, got, tc.want)
		}
	}
}

// TestRedisCliShutdown: redis-cli shutdown is Redis's own stop, and lint
// says what shutdown nosave loses.
func TestRedisCliShutdown(t *testing.T) {
	for _, tc := range []struct {
		argv  string
		sends bool
		loses bool
	}{
		{"/usr/bin/redis-cli shutdown", true, false},
		{"/usr/bin/redis-cli -p 6380 SHUTDOWN SAVE", true, false},
		{"/usr/bin/redis-cli -s /run/redis/redis-server.sock shutdown nosave", true, true},
		{"/usr/bin/redis-cli -a shutdown ping", false, false},
		{"/usr/bin/redis-cli ping", false, false},
	} {
		got := classifySignalCmd(strings.Fields(tc.argv))
		if got.Sends != tc.sends || (got.Loses != "") != tc.loses || tc.sends && got.Signal != syscall.SIGTERM {
			t.Errorf("%s: got %+v, want sends %v, loses %v", tc.argv, got, tc.sends, tc.loses)
		}
	}
	// As a unit that stops Redis by its CLI, in the style of the units
	// of redis.io's install notes (Type=notify, --supervised systemd).
	unit := "[Service]\nType=notify\nExecStart=/usr/bin/redis-server /etc/redis/redis.conf --supervised systemd --daemonize no\nExecStop=/usr/bin/redis-cli -s /run/redis/redis-server.sock shutdown nosave\nKillMode=mixed\n"
	if got := lintProblems(t, "redis.service", unit, ""); !strings.Contains(got, "every write since the last save is lost") {
		t.Errorf("lint says\n%s\nwant the lost writes named", got)
	}
}

// TestLintPgControlGroup: without an ExecStop=, systemd's SIGTERM to
// every process of the unit ends every PostgreSQL session at once; with
// KillMode=mixed only the postmaster gets it (the smart shutdown).
func TestLintPgControlGroup(t *testing.T) {
	const unit = "[Service]\nType=forking\nExecStart=-/usr/bin/pg_ctlcluster --skip-systemctl-redirect %i start\nTimeoutStopSec=1h\nPIDFile=/run/postgresql/%i.pid\n"
	for _, tc := range []struct{ extra, want string }{
		{"", "every backend takes it as pg_terminate_backend's signal"},
		{"KillMode=mixed\n", ""},
	} {
		got := lintProblems(t, "postgresql@.service", unit+tc.extra, "")
		if tc.want == "" && strings.Contains(got, "pg_terminate_backend") || tc.want != "" && !strings.Contains(got, tc.want) {
			t.Errorf("%q: lint says\n%s\nwant %q", tc.extra, got, tc.want)
		}
	}
}

// TestLintFastStopNamed: an ExecStop= that gives the daemon's fast stop
// is named with what that stop does to the work in flight.
func TestLintFastStopNamed(t *testing.T) {
	for _, tc := range []struct{ unit, want string }{
		{"[Service]\nType=notify\nExecStart=/usr/sbin/php-fpm8.2 --nodaemonize --fpm-config /etc/php/8.2/fpm/php-fpm.conf\nExecStop=/bin/kill -TERM $MAINPID\n", "php-fpm8.2's fast stop: the master sends every worker SIGTERM"},
		{"[Service]\nType=forking\nExecStart=/usr/sbin/apachectl start\nExecStop=/usr/sbin/apachectl stop\nPIDFile=/run/apache2/apache2.pid\n", "Apache's fast stop: every request in progress is terminated"},
		{"[Service]\nType=forking\nExecStart=/usr/bin/pg_ctlcluster 15 main start\nExecStop=/usr/bin/pg_ctlcluster 15 main stop\nPIDFile=/run/postgresql/15-main.pid\n", "pg_ctlcluster stop -m fast sends INT, postgres's fast stop: every session's current transaction is aborted"},
	} {
		if got := lintProblems(t, "x.service", tc.unit, ""); !strings.Contains(got, tc.want) {
			t.Errorf("lint says\n%s\nwant %q", got, tc.want)
		}
	}
}

// lintProblems parses unit as name and returns the problems lint finds,
// one a line: only those about directive, unless it is "".
func lintProblems(t *testing.T, name, unit, directive string) string {
	t.Helper()
	u, _, err := Parse(name, []byte(unit))
	if err != nil {
		t.Fatal(err)
	}
	var all []string
	for _, f := range Lint(u, LintOptions{SystemdVersion: 252}) {
		if directive == "" || f.Directive == directive {
			all = append(all, f.Problem)
		}
	}
	return strings.Join(all, "\n")
}
