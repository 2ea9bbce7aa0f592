package supervisor

import (
	"context"
	"os"
	"testing"
	"time"
)

// unitJob asks the user manager over its private socket; on this
// machine (systemd 252 user manager, godbus v5.1.0) many calls get no
// answer and time out after fdStoreTimeout, while `systemctl --user show
// -p Job UNIT` answers every time in ~10 ms over the same socket. At a
// stop the event loop waits those 2 s before the graceful signal, and a
// plain stop then leaves the sockets in the fd store.
// Run: XDG_RUNTIME_DIR=/run/user/0 RV_UNIT=<a loaded user unit> go test -run TestReviewUnitJob ./supervisor/
func TestReviewUnitJob(t *testing.T) {
	name := os.Getenv("RV_UNIT")
	if name == "" {
		t.Skip("RV_UNIT not set (a unit of the user manager at $XDG_RUNTIME_DIR)")
	}
	failed := 0
	for i := 0; i < 10; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), fdStoreTimeout)
		start := time.Now()
		_, err := unitJob(ctx, service{name: name, user: true})
		cancel()
		if err != nil {
			failed++
			t.Logf("call %d: %v after %s", i, err, time.Since(start).Round(time.Millisecond))
		}
	}
	if failed > 0 {
		t.Errorf("%d of 10 unitJob calls failed", failed)
	}
}
