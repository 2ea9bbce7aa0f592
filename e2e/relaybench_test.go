package e2e

// The signal relay's latency, side by side with tini (Debian's tini
// package): the time from kill(2) of the supervisor until the child's
// handler has run, p50 and p99 over b.N signals to each, sent to each in
// turn so that the load of a shared machine weighs on all alike. Issue
// 14's goal: graceshim within 1.5x of tini. The third, "minGo", is the
// least a Go relay does (signal.Notify, then Process.Signal): the floor
// of Go's signal path (runtime handler, the os/signal goroutine, a
// channel), which graceshim cannot go below. Run as
//
//	go test -run '^$' -bench BenchmarkRelayLatency -benchtime 2000x ./e2e/

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
)

// minRelay is the least a Go relay does.
const minRelay = `package main

import (
	"os"
	"os/exec"
	"os/signal"
	"syscall"
)

func main() {
	ch := make(chan os.Signal, 32)
	signal.Notify(ch, syscall.SIGUSR1, syscall.SIGTERM)
	cmd := exec.Command(os.Args[1], os.Args[2:]...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		os.Exit(1)
	}
	for s := range ch {
		cmd.Process.Signal(s)
		if s == syscall.SIGTERM {
			cmd.Wait()
			os.Exit(0)
		}
	}
}
`

// buildMinRelay builds minRelay and returns the binary's path.
func buildMinRelay(b *testing.B) string {
	b.Helper()
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(minRelay), 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module minrelay\n\ngo 1.22\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	build := exec.Command(goTool(), "build", "-o", "minrelay", ".")
	build.Dir = dir
	build.Env = append(os.Environ(), "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("go build minrelay: %v\n%s", err, out)
	}
	return filepath.Join(dir, "minrelay")
}

// sigEcho is a child that writes one byte to the FIFO $ARGV[0] once its
// USR1 handler is in place and one more each time USR1 comes. Perl, which
// Debian always has (perl-base, with POSIX): USR1 stays blocked but in
// sigsuspend(2), so that a signal coming between two waits is not left
// for the next one (perl runs a handler only once the call it interrupted
// returns: perlipc, "Deferred Signals").
const sigEcho = `use POSIX qw(:signal_h);
open(my $f, ">", $ARGV[0]) or die "fifo: $!";
$SIG{USR1} = sub { syswrite($f, "x") };
sigprocmask(SIG_BLOCK, POSIX::SigSet->new(SIGUSR1));
syswrite($f, "r");
my $none = POSIX::SigSet->new();
sigsuspend($none) while 1;`

// echoed is a supervisor running sigEcho, and the read end of its FIFO.
type echoed struct {
	cmd  *exec.Cmd
	fifo *os.File
	lat  []time.Duration
}

// startEchoed runs supervisor... perl sigEcho and waits for the child's
// handler to be in place.
func startEchoed(b *testing.B, perl string, supervisor ...string) *echoed {
	b.Helper()
	fifo := filepath.Join(b.TempDir(), "echo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(supervisor[0], append(supervisor[1:], perl, "-e", sigEcho, fifo)...)
	// graceshim logs every signal it passes on: to a pipe that is read,
	// as the journal's stream is, not to /dev/null.
	logR, logW, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	go io.Copy(io.Discard, logR)
	cmd.Stdout, cmd.Stderr = logW, logW
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	logW.Close()
	b.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		logR.Close()
	})
	f, err := os.OpenFile(fifo, os.O_RDONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	buf := make([]byte, 1)
	if _, err := f.Read(buf); err != nil || buf[0] != 'r' {
		b.Fatalf("%s: the child did not start: %q %v", supervisor[0], buf, err)
	}
	return &echoed{cmd: cmd, fifo: f}
}

// once sends USR1 to the supervisor and waits for the child's byte.
func (e *echoed) once(b *testing.B) {
	buf := make([]byte, 1)
	t0 := time.Now()
	if err := syscall.Kill(e.cmd.Process.Pid, syscall.SIGUSR1); err != nil {
		b.Fatal(err)
	}
	if _, err := e.fifo.Read(buf); err != nil {
		b.Fatalf("%s: %v", e.cmd.Path, err)
	}
	e.lat = append(e.lat, time.Since(t0))
}

func (e *echoed) report(b *testing.B, name string) (p50, p99 time.Duration) {
	slices.Sort(e.lat)
	p50, p99 = e.lat[len(e.lat)/2], e.lat[len(e.lat)*99/100]
	b.ReportMetric(float64(p50.Nanoseconds())/1e3, name+"-p50-us")
	b.ReportMetric(float64(p99.Nanoseconds())/1e3, name+"-p99-us")
	return p50, p99
}

func BenchmarkRelayLatency(b *testing.B) {
	perl := needCmd(b, "perl")
	// -s: a subreaper, as graceshim is, without being PID 1.
	tini := startEchoed(b, perl, needCmd(b, "tini"), "-s", "--")
	shim := startEchoed(b, perl, needGraceshim(b), "--ready=exec", "--notify=off", "--")
	floor := startEchoed(b, perl, buildMinRelay(b))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tini.once(b)
		shim.once(b)
		floor.once(b)
	}
	b.StopTimer()
	t50, _ := tini.report(b, "tini")
	g50, _ := shim.report(b, "graceshim")
	floor.report(b, "minGo")
	b.ReportMetric(float64(g50)/float64(t50), "p50-ratio")
}
