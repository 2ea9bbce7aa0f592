package conns_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/graceshim/graceshim/supervisor/conns"
)

// A drain loop: learn the listeners while the server runs, then poll
// after the graceful signal until nothing is left.
func Example() {
	const masterPid = 1234 // the server's master process

	tr := conns.NewTracker(conns.Options{Mode: conns.ModeListen})
	pids, err := conns.TreePids(masterPid)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := tr.Observe(pids); err != nil {
		log.Fatal(err)
	}
	if name, why := tr.Source(); why != nil {
		log.Printf("counting connections through %s: %v", name, why)
	}

	// ... SIGQUIT sent to the master; it closes its listeners ...

	for range time.Tick(time.Second) {
		c, err := tr.Count(context.Background(), pids)
		if err != nil {
			log.Fatal(err)
		}
		if c.Total() == 0 {
			break
		}
		fmt.Printf("%d connections left\n", c.Total())
	}
}

func ExampleCounts_Total() {
	c := conns.Counts{Established: 40, CloseWait: 2, HalfClosed: 1, SynRecv: 7}
	fmt.Println(c.Total())
	// Output: 43
}

func ExampleParseMode() {
	for _, s := range []string{"listen", "all", "inbound"} {
		m, err := conns.ParseMode(s)
		fmt.Println(m, err)
	}
	// Output:
	// listen <nil>
	// all <nil>
	// listen unknown connection mode "inbound" (want "listen" or "all")
}
