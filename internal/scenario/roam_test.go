package scenario

import (
	"context"
	"testing"
	"time"

	"github.com/punchd/punchd/internal/lab"
)

// A link follows a moving host. For each drill (the NAT's public address
// changes, the host moves to another network, the NAT reboots) with a TCP
// transfer in flight: the tunnel must be direct again on a pair that
// reaches the host where it is now, and the transfer's checksum must
// match. The bound is generous (the figure to beat, 5 s, comes from
// `punchd-lab roam`, not from this test).
func TestRoaming(t *testing.T) {
	lab.RequireRoot(t)
	if testing.Short() {
		t.Skip("three drills of ~20 s each; skipped with -short")
	}
	for _, d := range AllDrills() {
		t.Run(string(d), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			opts := RoamOptions(punchdBinary)
			opts.Dir = t.TempDir()
			r, err := Start(ctx, opts)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close() })
			wctx, stop := r.Watch(ctx)
			defer stop()
			pctx, cancelPing := context.WithTimeout(wctx, 30*time.Second)
			_, err = FirstPing(pctx, r.A.Host, r.B.Overlay4, 10*time.Millisecond)
			cancelPing()
			if err != nil {
				t.Fatalf("first ping: %v\n%s", err, r.Logs())
			}
			if _, err := waitPath(wctx, r, "direct", 5*time.Second); err != nil {
				t.Fatalf("before the drill: %v\n%s", err, r.Logs())
			}
			took, path, err := r.RoamUnderLoad(wctx, d, 20*time.Second)
			if err != nil {
				t.Fatalf("%v\n%s", err, r.Logs())
			}
			t.Logf("%s: direct again after %v (%s), transfer intact", d, took.Round(time.Millisecond), path)
		})
	}
}
