package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/graceshim/graceshim/signals"
	"github.com/graceshim/graceshim/supervisor"
)

// Defaults for Options fields left zero.
const (
	// DefaultPort is the port tried first; when it is taken the next free
	// one is used.
	DefaultPort = 8080
	// DefaultDownloads is how many downloads are in flight at the stop.
	DefaultDownloads = 10
)

// Timing of the demo: each download lasts firstDownload plus
// downloadStep per download before it, and the stop comes serveFor after
// every download has started, so the drain takes a few seconds and the
// whole demo well under ten.
const (
	firstDownload = 2500 * time.Millisecond
	downloadStep  = 250 * time.Millisecond
	downloadKiB   = 64
	serveFor      = time.Second
	stopMargin    = time.Second // the least the first download still has to run at the stop
	// portsTried is how many ports from Options.Port on are tried before
	// one the kernel picks.
	portsTried = 20
)

// Bounds that only guard against hangs.
const (
	startTimeout  = 15 * time.Second
	flightTimeout = 10 * time.Second
	stopTimeout   = time.Minute
	readTimeout   = 5 * time.Second
)

// ErrInterrupted is returned when a signal or the context ended the demo
// before its stop was done.
var ErrInterrupted = errors.New("demo interrupted")

// Options configure Run.
type Options struct {
	// Server is the command that runs the demo server (graceshim's hidden
	// demo-server subcommand); Run adds --listen ADDR and --parent PID.
	Server []string
	// Port is tried first, then the next ones, then any free port. Zero
	// means DefaultPort.
	Port int
	// Downloads in flight at the stop; zero means DefaultDownloads.
	Downloads int
	// Compare passes TERM on as it is, as a unit without graceshim does.
	Compare bool
	// Out receives the demo's lines; Progress redraws one progress line
	// in place (for a terminal).
	Out      io.Writer
	Progress bool
}

// Result is what the demo saw.
type Result struct {
	// Addr is the address the demo server listened on.
	Addr string
	// Downloads were started; Completed of them arrived whole.
	Downloads, Completed int
	// StopTook is the time from the SIGTERM to the supervisor's return.
	StopTook time.Duration
}

// IsTerminal reports whether f is a terminal, for Options.Progress.
func IsTerminal(f *os.File) bool { return isTerminal(f) }

// Run runs the demo: it starts the demo server under supervisor.Run in
// this process, starts the downloads, sends this process SIGTERM and
// shows the stop until the server and everything it started are gone. A
// SIGINT (Ctrl-C) or a cancelled ctx stops the server at once and returns
// ErrInterrupted; nothing is left running either way.
func Run(ctx context.Context, o Options) (Result, error) {
	if len(o.Server) == 0 {
		return Result{}, errors.New("demo: no server command given")
	}
	if o.Port == 0 {
		o.Port = DefaultPort
	}
	if o.Downloads <= 0 {
		o.Downloads = DefaultDownloads
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	// Caught for the whole demo, not only while the supervisor runs: the
	// TERM we send ourselves must not kill us if the supervisor has
	// returned already, and a Ctrl-C before it starts must still end the
	// demo cleanly.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)

	r := newRenderer(o.Out, o.Progress, time.Now)
	defer r.done()
	addr, err := pickAddr(o.Port)
	if err != nil {
		return Result{}, err
	}
	res := Result{Addr: addr.String(), Downloads: o.Downloads}
	preset, err := signals.Lookup("nginx")
	if err != nil {
		return res, err
	}
	m := signals.Map{syscall.SIGTERM: syscall.SIGQUIT, syscall.SIGINT: syscall.SIGTERM}
	if o.Compare {
		m[syscall.SIGTERM] = syscall.SIGTERM
		r.Printf("graceshim demo --compare: %d downloads from a slow server that stops like nginx; then SIGTERM,", o.Downloads)
		r.Printf("passed on as it is, as a unit without graceshim does (TERM is nginx's fast shutdown).")
	} else {
		r.Printf("graceshim demo: %d downloads from a slow server that stops like nginx (QUIT drains, TERM cuts);", o.Downloads)
		r.Printf("then graceshim gets SIGTERM, as from systemctl stop, sends QUIT and shows the drain.")
	}

	if port := addr.Port; port != o.Port {
		r.Printf("port %d is taken; the demo server uses %d", o.Port, port)
	}
	argv := append(append([]string(nil), o.Server...), "--listen", addr.String(), "--parent", strconv.Itoa(os.Getpid()))
	runCtx, stopRun := context.WithCancel(context.Background())
	defer stopRun()
	clientCtx, cancelClients := context.WithCancel(context.Background())
	defer cancelClients()
	d := &driver{
		r:             r,
		sigs:          sigs,
		ctxDone:       ctx.Done(),
		runDone:       make(chan error, 1),
		events:        make(chan event, 2*o.Downloads),
		ready:         r.ready,
		stopRun:       stopRun,
		cancelClients: cancelClients,
	}
	if o.Progress {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		d.ticks = t.C
	}
	go func() {
		d.runDone <- supervisor.Run(runCtx, supervisor.Options{
			Argv:         argv,
			Preset:       preset,
			Map:          m,
			ReadyTimeout: startTimeout,
			DrainTimeout: stopTimeout / 2,
			KillTimeout:  2 * time.Second,
			Log:          supervisor.NewLogger(r, supervisor.LevelInfo),
			Notifier:     r,
		})
	}()

	// 1. The server listens.
	if !d.until(startTimeout, func() bool { return d.isReady }) {
		return res, d.abort("the demo server did not start listening on %s", addr)
	}
	r.Printf("demo server listening on http://%s/", addr)

	// 2. Every download is in flight.
	r.setPhase("downloading")
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	for i := 0; i < o.Downloads; i++ {
		took := firstDownload + time.Duration(i)*downloadStep
		url := fmt.Sprintf("http://%s/download?ms=%d&kib=%d", addr, took.Milliseconds(), downloadKiB)
		go fetch(clientCtx, client, i+1, url, d.events)
	}
	if !d.until(flightTimeout, func() bool { return d.started+d.lostEarly == o.Downloads }) {
		return res, d.abort("the downloads did not start")
	}
	if d.lostEarly > 0 {
		return res, d.abort("%d downloads failed before the stop", d.lostEarly)
	}
	// The stop comes serveFor after the last download started, but never
	// later than stopMargin before the first ends: each download's time runs from
	// its arrival, so on a machine slow to start them all the first would
	// otherwise end before the stop it is there to show.
	wait := min(serveFor, time.Until(d.firstStart.Add(firstDownload-stopMargin)))
	when := "now"
	if wait > 0 {
		when = "in " + round(wait)
	}
	r.Printf("%d downloads in flight, %s to %s each; SIGTERM %s", o.Downloads, round(firstDownload), round(firstDownload+time.Duration(o.Downloads-1)*downloadStep), when)
	if d.until(max(wait, 0), func() bool { return false }); d.interrupted || d.runEnded {
		return res, d.abort("the demo server exited before the stop")
	}

	// 3. The stop, as systemd starts it: SIGTERM to graceshim.
	r.setPhase("stopping")
	r.Printf("sending SIGTERM to graceshim (pid %d)", os.Getpid())
	d.selfTerm = true
	began := time.Now()
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		return res, d.abort("cannot send SIGTERM: %v", err)
	}
	d.until(stopTimeout, func() bool { return d.runEnded })
	if !d.runEnded {
		return res, d.abort("the stop took longer than %s", stopTimeout)
	}
	res.StopTook = d.endedAt.Sub(began)
	if d.interrupted {
		return res, d.abort("")
	}
	// Whatever the server sent is in our sockets now; read the rest.
	d.until(readTimeout, func() bool { return d.finished == o.Downloads })
	cancelClients()
	d.until(readTimeout, func() bool { return d.finished == o.Downloads })
	res.Completed = d.completed
	r.setPhase("stopped")
	r.done()
	if d.runErr != nil {
		r.Printf("graceshim: %v", d.runErr)
	}
	line := fmt.Sprintf("%d/%d in-flight requests completed, stop took %s", res.Completed, res.Downloads, round(res.StopTook))
	if o.Compare {
		line += " (a plain TERM is nginx's fast shutdown)"
	}
	fmt.Fprintln(o.Out, line)
	if o.Compare {
		fmt.Fprintln(o.Out, "graceshim demo (without --compare) stops the same server with graceshim: TERM becomes QUIT and the downloads finish.")
	} else {
		fmt.Fprintln(o.Out, "graceshim demo --compare shows the same stop with a plain TERM.")
	}
	return res, nil
}

// pickAddr finds a loopback address for the demo server: port if it is
// free, else one of the next ones, else any. The server listens on it a
// moment later; the port could be taken in between, and the demo then
// says the server did not start.
func pickAddr(port int) (*net.TCPAddr, error) {
	for p := port; p < port+portsTried && p <= 65535; p++ {
		if a, err := tryListen(p); err == nil {
			return a, nil
		}
	}
	a, err := tryListen(0)
	if err != nil {
		return nil, fmt.Errorf("no free port on 127.0.0.1 for the demo server: %w", err)
	}
	return a, nil
}

func tryListen(port int) (*net.TCPAddr, error) {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return nil, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr), nil
}

// event is a download's progress: its headers arrived (start), or it ended.
type event struct {
	start bool
	d     download
}

// download is one request's outcome.
type download struct {
	n         int
	started   bool // the headers arrived: it was in flight
	got, want int64
	took      time.Duration
	err       error
}

func (d download) complete() bool { return d.err == nil && d.want > 0 && d.got == d.want }

func (d download) errText() string {
	switch {
	case d.err == nil:
		return "short"
	case errors.Is(d.err, io.ErrUnexpectedEOF):
		return "the server closed the connection mid-download"
	case errors.Is(d.err, syscall.ECONNRESET):
		return "the server reset the connection"
	case errors.Is(d.err, context.Canceled):
		return "the demo gave up on it"
	}
	return d.err.Error()
}

// fetch runs one download and reports its start and end on events.
func fetch(ctx context.Context, client *http.Client, n int, url string, events chan<- event) {
	t0 := time.Now()
	d := download{n: n}
	defer func() {
		d.took = time.Since(t0)
		events <- event{d: d}
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		d.err = err
		return
	}
	resp, err := client.Do(req)
	if err != nil {
		d.err = err
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		d.err = fmt.Errorf("HTTP status %s", resp.Status)
		return
	}
	d.started, d.want = true, resp.ContentLength
	events <- event{start: true, d: download{n: n}}
	d.got, d.err = io.Copy(io.Discard, resp.Body)
}

// driver is the demo's event loop; one goroutine (Run's) owns every field.
type driver struct {
	r             *renderer
	sigs          <-chan os.Signal
	ctxDone       <-chan struct{}
	runDone       chan error
	events        chan event
	ready         <-chan struct{}
	ticks         <-chan time.Time
	stopRun       func()
	cancelClients func()

	isReady     bool
	selfTerm    bool // the SIGTERM we sent ourselves is still to come
	interrupted bool
	runEnded    bool
	runErr      error
	endedAt     time.Time

	firstStart                   time.Time // the first download's headers arrived
	started, finished, completed int
	lostEarly                    int // downloads that ended before they were in flight
}

// until handles events until cond holds or limit passes; it returns early
// when the supervisor returns or the demo is interrupted, and reports
// whether cond held.
func (d *driver) until(limit time.Duration, cond func() bool) bool {
	timer := time.NewTimer(limit)
	defer timer.Stop()
	for !cond() {
		ended, interrupted := d.runEnded, d.interrupted
		select {
		case <-d.ticks:
			d.r.tick()
		case <-d.ready:
			d.ready = nil
			d.isReady = true
		case ev := <-d.events:
			d.onEvent(ev)
		case err := <-d.runDone:
			d.runEnded, d.runErr, d.endedAt = true, err, time.Now()
		case sig := <-d.sigs:
			if sig == syscall.SIGTERM && d.selfTerm {
				d.selfTerm = false
				continue
			}
			d.interrupt(fmt.Sprintf("received %s", signals.Name(sig.(syscall.Signal))))
		case <-d.ctxDone:
			d.ctxDone = nil
			d.interrupt("cancelled")
		case <-timer.C:
			return cond()
		}
		if d.runEnded != ended || d.interrupted != interrupted {
			return cond()
		}
	}
	return true
}

func (d *driver) onEvent(ev event) {
	if ev.start {
		if d.started == 0 {
			d.firstStart = time.Now()
		}
		d.started++
		d.r.started()
		return
	}
	d.finished++
	if ev.d.complete() {
		d.completed++
	}
	if !ev.d.started {
		d.lostEarly++
	}
	d.r.finished(ev.d)
}

// interrupt ends the demo early: the supervisor stops the server (it
// caught the same SIGINT and sends the fast signal; a cancelled context
// asks it for a stop too) and the downloads are abandoned.
func (d *driver) interrupt(why string) {
	if d.interrupted {
		return
	}
	d.interrupted = true
	d.r.Printf("demo %s: stopping the demo server", why)
	d.stopRun()
	d.cancelClients()
}

// abort stops the server if it still runs, waits until it and everything
// it started are gone, and returns the error for why (ErrInterrupted when
// the demo was interrupted).
func (d *driver) abort(format string, a ...any) error {
	d.stopRun()
	d.cancelClients()
	deadline := time.Now().Add(stopTimeout)
	for !d.runEnded && time.Now().Before(deadline) {
		d.until(time.Until(deadline), func() bool { return d.runEnded })
	}
	d.r.done()
	if d.interrupted {
		return ErrInterrupted
	}
	err := fmt.Errorf(format, a...)
	if d.runErr != nil {
		err = fmt.Errorf("%w: %v", err, d.runErr)
	}
	return err
}
