package conns

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
)

// TestPHPFPMUnixPool runs Debian's php-fpm with a pool on a unix socket,
// as Debian's default www pool is (listen = /run/php/php8.2-fpm.sock,
// /etc/php/8.2/fpm/pool.d/www.conf): its listener is found, and the
// connections its children accepted are counted and drained. CI installs
// php8.2-fpm (.ci/install-deps).
func TestPHPFPMUnixPool(t *testing.T) {
	bin, err := exec.LookPath("php-fpm8.2")
	if err != nil {
		t.Skip("php-fpm8.2 not installed")
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "php8.2-fpm.sock")
	conf := filepath.Join(dir, "php-fpm.conf")
	// daemonize = no keeps the master our child; pm = static starts both
	// children at once, each accepting one connection and then waiting
	// for its FastCGI request.
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`[global]
pid = %[1]s/php-fpm.pid
error_log = %[1]s/error.log
daemonize = no

[www]
listen = %[2]s
pm = static
pm.max_children = 2
`, dir, sock)), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-n", "-y", conf}
	if os.Geteuid() == 0 {
		args = append([]string{"-R"}, args...) // php-fpm refuses root without it
	}
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})

	tr := NewTracker(Options{})
	want := []Endpoint{{Network: "unix", Path: sock}}
	var pids []int
	deadline := time.Now().Add(countTimeout)
	for {
		if pids, err = TreePids(cmd.Process.Pid); err != nil {
			t.Fatal(err)
		}
		if _, err := tr.Observe(pids); err != nil {
			t.Fatal(err)
		}
		if slices.Equal(tr.Endpoints(), want) && len(pids) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("php-fpm: endpoints %v, pids %v; want %v and a master with 2 children", tr.Endpoints(), pids, want)
		}
		time.Sleep(20 * time.Millisecond)
	}

	var cs []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cs = append(cs, c)
	}
	// Until both children have accepted, a connection waits in the
	// backlog, held by no process: the drain does not count it yet.
	var d *Drain
	for {
		if d, err = tr.Drain(context.Background(), pids); err != nil {
			t.Fatal(err)
		}
		if d.Counts().Total() == 2 {
			break
		}
		d.Close()
		if time.Now().After(deadline) {
			t.Fatalf("drain of php-fpm counts %+v, want 2 connections", d.Counts())
		}
		time.Sleep(20 * time.Millisecond)
	}
	defer d.Close()
	if got := next(t, d).Total(); got != 2 {
		t.Fatalf("first count %d, want 2", got)
	}
	cs[0].Close() // the child reads EOF and closes its end
	for next(t, d).Total() != 1 {
	}
	cs[1].Close()
	for next(t, d).Total() != 0 {
	}
}
