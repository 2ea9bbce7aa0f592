package conns

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"
)

// TestUnixListener: a server on a unix socket (php-fpm's default) is
// found listening, and its connections are counted and drained, on a
// path and on an abstract name, through netlink and /proc/net/unix.
// Another server's unix connections do not count.
func TestUnixListener(t *testing.T) {
	for _, tt := range []struct{ name, addr string }{
		{"path", filepath.Join(t.TempDir(), "fpm.sock")},
		{"abstract", "@graceshim-conns-test-" + strconv.Itoa(os.Getpid())},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := startUnixServer(t, tt.addr)
			other := startUnixServer(t, tt.addr+"-other")
			var cs []net.Conn
			for i := 0; i < 3; i++ {
				c, err := net.Dial("unix", tt.addr)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				cs = append(cs, c)
				o, err := net.Dial("unix", tt.addr+"-other")
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { o.Close() })
			}
			for srv.held() != 3 || other.held() != 3 {
				time.Sleep(10 * time.Millisecond) // until accepted
			}
			trs := trackers(t, ModeListen, srv.pids)
			want := []Endpoint{{Network: "unix", Path: tt.addr}}
			for src, tr := range trs {
				if got := tr.Endpoints(); !slices.Equal(got, want) {
					t.Fatalf("%s: Endpoints() = %v, want %v", src, got, want)
				}
				if s := tr.Endpoints()[0].String(); s != "unix "+tt.addr {
					t.Errorf("String() = %q", s)
				}
			}
			waitCounts(t, trs, nil, Counts{Established: 3})

			for src, tr := range trs {
				d, err := tr.Drain(context.Background(), srv.pids)
				if err != nil {
					t.Fatalf("%s: Drain: %v", src, err)
				}
				defer d.Close()
				if got := next(t, d).Total(); got != 3 {
					t.Fatalf("%s: first count %d, want 3", src, got)
				}
				trs[src] = tr
				defer func(d *Drain) {
					for next(t, d).Total() != 0 {
					}
				}(d)
			}
			for _, c := range cs {
				c.Close()
			}
		})
	}
}
