package unitgen

import (
	"errors"
	"strings"
	"testing"

	"github.com/graceshim/graceshim/signals"
)

// TestSocketHAProxyFiles: `unit --socket` reads the files haproxy loads,
// found as haproxy 2.6 finds them (haproxyconf.Files): a directory's
// *.cfg files (not 30-api.cfg.disabled, not .40-admin.cfg, each of which
// would bind its own port), the words after "--", and names relative to
// -C DIR. Checked once against haproxy 2.6.12 with the files of
// socketRoot: `systemd-socket-activate -l 127.0.0.1:P1 -l 127.0.0.1:P2
// haproxy -db ARGS` (ARGS as in each case, the paths under socketRoot)
// served both ports (503 from the down backend) and bound nothing of its
// own (ss -ltn: no :8080, no :8404), for all three command lines.
func TestSocketHAProxyFiles(t *testing.T) {
	preset, _ := signals.Lookup("haproxy")
	listen := []string{"0.0.0.0:80", "0.0.0.0:8080"}
	for _, tc := range []struct {
		name string
		argv []string
	}{
		{"-f FILE -f DIR", []string{"/usr/sbin/haproxy", "-Ws", "-f", "/etc/haproxy/base.cfg", "-f", "/etc/haproxy/conf.d", "-p", "/run/haproxy.pid"}},
		{"-C DIR, relative names", []string{"/usr/sbin/haproxy", "-Ws", "-C", "/etc/haproxy", "-f", "base.cfg", "-f", "conf.d"}},
		{"files after --", []string{"/usr/sbin/haproxy", "-Ws", "-f", "/etc/haproxy/base.cfg", "--", "/etc/haproxy/conf.d"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ls, err := SocketListens(tc.argv, preset, SocketOptions{Root: socketRoot, Listen: listen})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, l := range ls {
				got = append(got, l.Addr+" "+l.From+" "+itoa(l.Backlog))
			}
			want := []string{
				"0.0.0.0:80 --listen, for bind fd@3 at /etc/haproxy/conf.d/10-web.cfg:3 0",
				"0.0.0.0:8080 --listen, for bind fd@4 at /etc/haproxy/conf.d/20-api.cfg:3 1024",
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

// TestSocketHAProxyFilesRefused: command lines whose files haproxy reads
// otherwise than they look. Checked once with haproxy 2.6.12: "-f/x.cfg
// -p F" fails with "Cannot open configuration file/directory -p" (the
// word after a flag is its argument, whatever is glued to the flag), and
// "-- haproxy.cfg" loads haproxy.cfg, whose bind :80 haproxy binds itself.
func TestSocketHAProxyFilesRefused(t *testing.T) {
	preset, _ := signals.Lookup("haproxy")
	for _, tc := range []struct {
		name string
		argv []string
		want string
	}{
		{"-fFILE", []string{"/usr/sbin/haproxy", "-Ws", "-f/etc/haproxy/fd.cfg", "-p", "/run/haproxy.pid"}, "write -f /etc/haproxy/fd.cfg"},
		{"own binds after --", []string{"/usr/sbin/haproxy", "-Ws", "--", "/etc/haproxy/haproxy.cfg"}, `/etc/haproxy/haproxy.cfg:18 "bind :80" to "bind fd@3"`},
		{"-C DIR that is not there", []string{"/usr/sbin/haproxy", "-Ws", "-C", "/etc/haproxy2", "-f", "fd.cfg"}, "cannot read HAProxy's configuration /etc/haproxy2/fd.cfg"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := SocketListens(tc.argv, preset, SocketOptions{Root: socketRoot, Listen: []string{"0.0.0.0:80"}})
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("err = %v, want one line with %q", err, tc.want)
			}
			var se *SocketError
			if tc.name == "-fFILE" && !errors.As(err, &se) {
				t.Errorf("not a SocketError (exit 7): %v", err)
			}
		})
	}
}

// TestSocketHAProxyOldListen: "listen NAME ADDR" is refused by haproxy
// 2.6 (measured with 2.6.12: "please use the 'bind' keyword for listening
// addresses"), so unit --socket says so instead of reading ADDR as a bind.
func TestSocketHAProxyOldListen(t *testing.T) {
	_, err := haproxyFileBinds("/etc/haproxy/haproxy.cfg", "defaults\n\tmode tcp\n\nlisten app 127.0.0.1:8080\n\tserver a 127.0.0.1:8000\n")
	var se *SocketError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "haproxy.cfg:4") || !strings.Contains(err.Error(), "bind line") {
		t.Errorf("err = %v, want a SocketError at haproxy.cfg:4 naming the bind line", err)
	}
}

// TestSocketHAProxyWorkingDirectory: haproxy reads a relative -f in its
// working directory, the unit's WorkingDirectory= (haproxy opens the
// name as given: measured with 2.6.12, "-f a.cfg" run in DIR loads
// DIR/a.cfg, as the -C cases of TestFiles show with -C).
func TestSocketHAProxyWorkingDirectory(t *testing.T) {
	u, _, err := Parse("haproxy.service", []byte("[Service]\nWorkingDirectory=/etc/haproxy\nExecStart=/usr/sbin/haproxy -Ws -f base.cfg -f conf.d\n"))
	if err != nil {
		t.Fatal(err)
	}
	preset, _ := signals.Lookup("haproxy")
	ls, err := SocketListens([]string{"/usr/sbin/haproxy", "-Ws", "-f", "base.cfg", "-f", "conf.d"}, preset, SocketOptions{Root: socketRoot, Listen: []string{"0.0.0.0:80", "0.0.0.0:8080"}, Unit: u})
	if err != nil || len(ls) != 2 || !strings.Contains(ls[1].From, "/etc/haproxy/conf.d/20-api.cfg:3") {
		t.Errorf("SocketListens = %v, %v; want the binds of /etc/haproxy/conf.d", ls, err)
	}
}
