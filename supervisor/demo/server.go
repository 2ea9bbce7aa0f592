package demo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Bounds of one download the server accepts, so a stray request cannot
// hold the server for long.
const (
	maxDownloadTime = time.Minute
	maxDownloadKiB  = 4096
)

// ServerOptions configure Serve.
type ServerOptions struct {
	// Listen is the address to listen on, host:port.
	Listen string
	// Parent, when not zero, is the pid the server must be the child of: it
	// exits at once when the parent is gone already and is killed when the
	// parent dies, so a killed demo leaves nothing behind.
	Parent int
}

// Serve runs the demo server until a stop signal: QUIT drains (stops
// accepting and returns once every download is done), TERM and INT return
// at once, and the caller exits, cutting every download, as nginx's fast
// stop does.
func Serve(opts ServerOptions) error {
	if opts.Parent > 0 {
		// The parent-death signal is tied to the thread that forked us
		// (golang/go#27505): under graceshim that is a thread the Go
		// runtime keeps, and graceshim's own stop kills us anyway. It
		// covers a demo killed with SIGKILL.
		if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0, 0, 0); err != nil {
			return fmt.Errorf("cannot ask to die with the demo: %w", err)
		}
		if os.Getppid() != opts.Parent {
			return fmt.Errorf("the demo (pid %d) is gone already", opts.Parent)
		}
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGQUIT, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)

	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w", opts.Listen, err)
	}
	srv := &http.Server{Handler: Handler(), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	drained := make(chan error, 1)
	for {
		select {
		case sig := <-sigs:
			if sig != syscall.SIGQUIT {
				return nil // fast stop: exiting cuts every connection
			}
			// Graceful stop: Shutdown closes the listener and returns once
			// every connection is idle, that is every download is done.
			// A TERM while it drains still stops at once.
			go func() { drained <- srv.Shutdown(context.Background()) }()
		case err := <-drained:
			return err
		case err := <-served:
			if !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("demo server: %w", err)
			}
			served = nil // Shutdown closed the listener; wait for the drain
		}
	}
}

// Handler serves /download?ms=N&kib=K: K KiB sent evenly over N
// milliseconds, with a Content-Length so a client can tell a cut download
// from a whole one.
func Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintln(w, "graceshim demo server: GET /download?ms=3000&kib=64 sends 64 KiB over 3 s")
	})
	mux.HandleFunc("/download", serveDownload)
	return mux
}

func serveDownload(w http.ResponseWriter, r *http.Request) {
	ms, err1 := strconv.Atoi(r.URL.Query().Get("ms"))
	kib, err2 := strconv.Atoi(r.URL.Query().Get("kib"))
	d := time.Duration(ms) * time.Millisecond
	if err1 != nil || err2 != nil || d < 0 || d > maxDownloadTime || kib < 1 || kib > maxDownloadKiB {
		http.Error(w, fmt.Sprintf("want ms in 0..%d and kib in 1..%d", maxDownloadTime.Milliseconds(), maxDownloadKiB), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(kib*1024))
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	if flusher != nil {
		flusher.Flush() // the client sees the headers at once: in flight
	}
	chunk := make([]byte, 1024)
	for i := range chunk {
		chunk[i] = byte('a' + i%26)
	}
	tick := time.NewTicker(max(d/time.Duration(kib), time.Millisecond))
	defer tick.Stop()
	for sent := 0; sent < kib; sent++ {
		select {
		case <-tick.C:
		case <-r.Context().Done():
			return
		}
		if _, err := w.Write(chunk); err != nil {
			return
		}
		if flusher != nil {
			flusher.Flush()
		}
	}
}
