package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/graceshim/graceshim/signals"
	"github.com/graceshim/graceshim/unitgen"
)

// socketPair is what `unit --socket` writes: the service (or its
// drop-in) and NAME.socket.
//
// Without --output both go to standard output, each after a line
// "# ==> FILE <==" (head(1)'s separator of several files), a comment to
// systemd. With --output, the path names the pair: DIR/NAME,
// DIR/NAME.service or DIR/NAME.socket write DIR/NAME.service and
// DIR/NAME.socket; with --dropin the path is the drop-in,
// DIR/NAME.service.d/FILE.conf, and the socket goes to DIR/NAME.socket.
// Both are written or neither: both are checked and staged as temp files
// first, then renamed, and a failed second rename puts the first back.
type socketPair struct {
	name string // the unit name without suffix: nginx
	// svcPath and sockPath are where --output writes, "" for stdout.
	svcPath, sockPath string
	sock              []byte
}

func newSocketPair(c *cli.Context, from string, argv []string) (*socketPair, error) {
	p := &socketPair{}
	out := c.String("output")
	switch {
	case out != "" && c.Bool("dropin"):
		dir := filepath.Dir(out)
		name, ok := strings.CutSuffix(filepath.Base(dir), ".service.d")
		if !ok || name == "" {
			return nil, usageErrorf("--dropin --socket --output %s: the drop-in must be in a NAME.service.d directory, so that NAME.socket goes beside it", out)
		}
		p.name = name
		p.svcPath = out
		p.sockPath = filepath.Join(filepath.Dir(dir), name+".socket")
	case out != "":
		base := filepath.Base(out)
		for _, suf := range []string{".service", ".socket"} {
			base = strings.TrimSuffix(base, suf)
		}
		if base == "" || base == "." || base == "/" {
			return nil, usageErrorf("--socket --output %s: name the pair, DIR/NAME, to write DIR/NAME.service and DIR/NAME.socket", out)
		}
		p.name = base
		p.svcPath = filepath.Join(filepath.Dir(out), base+".service")
		p.sockPath = filepath.Join(filepath.Dir(out), base+".socket")
	case from != "":
		// The unit's file name, or the one systemctl cat's output names
		// (from is then that path): a pipe's name, 63 for
		// /dev/fd/63, would be no unit's.
		base := filepath.Base(from)
		if !strings.HasSuffix(base, ".service") {
			return nil, usageErrorf("--socket: cannot tell the unit's name from %s: pass --output DIR/NAME to name NAME.service and NAME.socket", from)
		}
		p.name = strings.TrimSuffix(base, ".service")
	default:
		p.name = filepath.Base(unitgen.DaemonArgv(argv)[0])
	}
	if p.name == "" || strings.ContainsAny(p.name, "/ \t\n") {
		return nil, usageErrorf("--socket: %q is no unit name; pass --output DIR/NAME", p.name)
	}
	if p.sockPath != "" {
		// A socket unit of the admin's where ours would go: --force
		// would replace it and lose its SocketUser=, SocketMode=, ...
		if data, err := os.ReadFile(p.sockPath); err == nil && !unitgen.Generated(data) {
			return nil, usageErrorf("--socket: %s exists and graceshim did not write it: %s.service has a socket unit already; write the service without --socket (it gets that socket's sockets and graceshim passes them on), or remove %s first", p.sockPath, p.name, p.sockPath)
		}
	}
	return p, nil
}

// socket reads the daemon's sockets and renders the socket unit. A
// daemon that cannot take them is exit 7, nothing written.
// from is the unit converted (--from), nil for a command line.
func (p *socketPair) socket(c *cli.Context, daemon []string, o unitgen.Options, from *unitgen.Unit) error {
	preset := o.Preset
	if (preset.Graceful == 0 || preset.Name == "generic") && !c.IsSet("preset") {
		// The command may wrap the daemon (env X=1 gunicorn ...): the
		// daemon's own preset says how it takes the sockets.
		preset, _ = signals.ForCommand(daemon[0])
	}
	// From a unit (--from), the command is its ExecStart=, where systemd
	// expands specifiers (unix:%t/app.sock).
	ls, err := unitgen.SocketListens(daemon, preset, unitgen.SocketOptions{Root: c.String("root"), Listen: c.StringSlice("listen"), Specifiers: from != nil, Unit: from})
	var se *unitgen.SocketError
	switch {
	case errors.As(err, &se):
		return withCode(exitSockets, err)
	case err != nil:
		return withCode(exitUsage, err)
	case strings.Contains(p.name, "@"):
		// After the daemon's own verdict: a daemon that cannot take
		// sockets at all is told so, not sent to write instances.
		// An instance's socket (NAME@.socket with Accept=no) would need
		// the instance in ListenStream=; graceshim reads one address.
		return usageErrorf("--socket: %s is a template unit; write a unit per instance (--output DIR/NAME-INSTANCE) to get a socket for it", p.name)
	}
	p.sock, err = unitgen.GenerateSocket(unitgen.SocketUnitOptions{
		Service:        p.name + ".service",
		Daemon:         filepath.Base(daemon[0]),
		Listens:        ls,
		SystemdVersion: o.SystemdVersion,
		Wait:           o.QueueWait(),
	})
	if errors.As(err, &se) {
		return withCode(exitSockets, err)
	}
	return withCode(exitUsage, err)
}

func (p *socketPair) write(c *cli.Context, svc []byte) error {
	svcName := p.name + ".service"
	if c.Bool("dropin") {
		svcName = p.name + ".service.d/graceshim.conf"
	}
	if p.svcPath == "" {
		text := "# ==> " + svcName + " <==\n" + string(svc) + "\n# ==> " + p.name + ".socket <==\n" + string(p.sock)
		if _, err := c.App.Writer.Write([]byte(text)); err != nil {
			return withCode(exitWrite, fmt.Errorf("cannot write the units to standard output: %w", err))
		}
		return nil
	}
	return withCode(exitWrite, writeBoth(c, []string{p.svcPath, p.sockPath}, [][]byte{svc, p.sock}, c.Bool("force")))
}

// writeBoth writes every file or none: each path is checked (an existing
// one needs force and is kept as .bak), each file staged as a synced
// temp file beside its path, then renamed in turn; when a rename fails,
// the ones done are undone.
func writeBoth(c *cli.Context, paths []string, data [][]byte, force bool) error {
	exists := make([]bool, len(paths))
	for i, path := range paths {
		fi, err := os.Lstat(path)
		exists[i] = err == nil
		switch {
		case exists[i] && !fi.Mode().IsRegular():
			return fmt.Errorf("cannot write %s: it exists and is not a regular file; nothing written", path)
		case exists[i] && !force:
			return fmt.Errorf("%s exists: use --force to replace it; nothing written", path)
		case err != nil && !errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("cannot write %s: %w; nothing written", path, unitgen.UnwrapPath(err))
		}
	}
	tmps := make([]string, len(paths))
	cleanup := func() {
		for _, t := range tmps {
			if t != "" {
				os.Remove(t)
			}
		}
	}
	for i, path := range paths {
		t, err := stage(path, data[i])
		if err != nil {
			cleanup()
			return fmt.Errorf("cannot write %s: %w; nothing written", path, err)
		}
		tmps[i] = t
	}
	baks := make([]string, len(paths))
	for i, path := range paths {
		if !exists[i] {
			continue
		}
		bak := path + ".bak"
		for n := 1; ; n++ {
			if _, err := os.Lstat(bak); errors.Is(err, fs.ErrNotExist) {
				break
			}
			bak = path + ".bak." + strconv.Itoa(n)
		}
		if err := os.Link(path, bak); err != nil {
			for _, b := range baks {
				if b != "" {
					os.Remove(b)
				}
			}
			cleanup()
			return fmt.Errorf("cannot keep the old %s as %s: %w; nothing written", path, bak, unitgen.UnwrapPath(err))
		}
		baks[i] = bak
	}
	for i, path := range paths {
		if err := os.Rename(tmps[i], path); err != nil {
			// Undo: the renamed ones get their old file back or go.
			for j := 0; j < i; j++ {
				if baks[j] != "" {
					os.Rename(baks[j], paths[j])
				} else {
					os.Remove(paths[j])
				}
			}
			for j := i; j < len(paths); j++ {
				if baks[j] != "" {
					os.Remove(baks[j])
				}
			}
			tmps = tmps[i:]
			cleanup()
			return fmt.Errorf("cannot write %s: %w; nothing written", path, unitgen.UnwrapPath(err))
		}
	}
	for i, path := range paths {
		if baks[i] != "" {
			fmt.Fprintf(c.App.ErrWriter, "graceshim: kept the old %s as %s\n", path, baks[i])
		}
	}
	return nil
}

// stage writes data to a synced temp file beside path, mode 0644.
func stage(path string, data []byte) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return "", unitgen.UnwrapPath(err)
	}
	name := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
		return "", unitgen.UnwrapPath(err)
	}
	return name, nil
}
