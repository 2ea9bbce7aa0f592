package e2e

import (
	"bufio"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReviewFDStoreUnixListen (review): nginx with a "listen unix:PATH"
// under graceshim with FileDescriptorStoreMax=. The first nginx bound the
// unix socket itself, so at its exit it unlinks PATH (nginx deletes the
// files of unix listeners it did not inherit, ngx_close_listening_sockets);
// the store hands the next nginx the same socket, which now has no path:
// after systemctl restart PATH is gone and every client gets ENOENT, at
// each restart after that too.
func TestReviewFDStoreUnixListen(t *testing.T) {
	u := userManager(t)
	bin := needGraceshim(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "site.sock")
	site := newNginxSite(t, nginxOpts{ExtraHTTP: fmt.Sprintf("server { listen unix:%s; location / { return 200 \"ux\\n\"; } }", sock)})
	name := unitName("review-fdstore-unix")
	u.InstallUnit(t, name, addToSection(socketService(bin, "/usr/sbin/nginx -c "+site.Conf), "Service", "FileDescriptorStoreMax=8"))
	u.Start(t, name)
	defer u.Stop(t, name)
	waitServing(t, u, name, site)
	get := func() error {
		c, err := net.DialTimeout("unix", sock, 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		fmt.Fprintf(c, "GET / HTTP/1.0\r\nHost: x\r\n\r\n")
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return err
		}
		if !strings.Contains(line, " 200 ") {
			return fmt.Errorf("answer %q", line)
		}
		return nil
	}
	if !waitFor(10*time.Second, 50*time.Millisecond, func() bool { return get() == nil && u.Show(t, name, "NFileDescriptorStore") == "2" }) {
		t.Fatalf("before the restart: %v, NFileDescriptorStore=%s\nlog:\n%s", get(), u.Show(t, name, "NFileDescriptorStore"), u.UnitLog(t, name))
	}
	u.restart(t, name)
	waitServing(t, u, name, site)
	if err := get(); err != nil {
		t.Errorf("after systemctl restart, the unix listener %s: %v\nlog:\n%s", sock, err, u.UnitLog(t, name))
	}
}
