package supervisor

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// reaperEnv makes the test binary run reap alone in a process of its own
// (see reaperProcess): wait4(-1) in the test process would take other
// tests' children.
const reaperEnv = "GRACESHIM_TEST_REAPER"

func init() {
	if n, err := strconv.Atoi(os.Getenv(reaperEnv)); err == nil {
		reaperProcess(n)
		os.Exit(0)
	}
}

// reaperProcess starts n children that exit at once, and prints a line
// for everything reap publishes: "reaped PID", or "none" when it found no
// children at all. Each "none" after the last child went is a wake-up of
// an idle reaper.
func reaperProcess(n int) {
	chld := make(chan os.Signal, 1)
	signal.Notify(chld, syscall.SIGCHLD)
	out := make(chan exited, 64)
	go reap(context.Background(), chld, out)
	go func() {
		for i := 0; i < n; i++ {
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), "GRACESHIM_TEST_CHILD=exit:0", reaperEnv+"=")
			if err := cmd.Start(); err != nil {
				fmt.Printf("error %v\n", err)
				os.Exit(1)
			}
		}
	}()
	for e := range out {
		if e.pid != 0 {
			fmt.Printf("reaped %d\n", e.pid)
		} else {
			fmt.Println("none")
		}
	}
}

// TestReaperSIGCHLDAlone: children exiting together (their SIGCHLDs
// coalesce) are all reaped on SIGCHLD alone, and once none is left the
// reaper sleeps: its backstop poll does not wake an idle graceshim every
// second. The wait below cannot make the test fail wrongly (the backstop
// is a minute); it gives a one-second poll the time to fire several times.
func TestReaperSIGCHLDAlone(t *testing.T) {
	const n = 50
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), reaperEnv+"="+strconv.Itoa(n))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	lines := make(chan string, 2*n)
	go func() {
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			lines <- s.Text()
		}
		close(lines)
	}()
	guard := time.After(30 * time.Second) // shorter than the backstop: an exit missed by SIGCHLD fails
	read := func() string {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("the reaper process ended")
			}
			return l
		case <-guard:
			t.Fatal("the reaper process hangs")
		}
		return ""
	}
	for reaped := 0; reaped < n; {
		switch l := read(); {
		case strings.HasPrefix(l, "reaped "):
			reaped++
		case l == "none": // between starts, none may be left for a moment
		default:
			t.Fatalf("reaper process: %s", l)
		}
	}
	if l := read(); l != "none" {
		t.Fatalf("after the last child: %q, want none", l)
	}
	time.Sleep(3500 * time.Millisecond)
	// One late wake-up is a SIGCHLD that arrived after the loop had
	// already reaped its child (signals coalesce and lag); a one-second
	// backstop would wake three times or more.
	if k := len(lines); k > 1 {
		t.Errorf("an idle reaper woke %d times in 3.5s with no SIGCHLD", k)
	}
}
