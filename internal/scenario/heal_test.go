package scenario

import (
	"context"
	"testing"
	"time"

	"github.com/punchd/punchd/internal/control"
	"github.com/punchd/punchd/internal/lab"
)

// A link heals itself. While a TCP transfer is in flight: the direct path
// breaks (UDP between the two NATs cut) and the tunnel moves to the relay;
// the path comes back and the tunnel moves back to direct; a NAT forgets
// its mappings and the tunnel finds the new ones. The transfer's checksum
// must match at the end.
func TestSelfHealing(t *testing.T) {
	lab.RequireRoot(t)
	if testing.Short() {
		t.Skip("breaks and heals paths for half a minute; skipped with -short")
	}
	tests := []struct {
		name       string
		natA, natB lab.NATType
		fault      func(ctx context.Context, t *testing.T, r *Run)
	}{
		{"direct path cut, relay, direct again", lab.NATPortRestricted, lab.NATPortRestricted, cutAndRestore},
		{"symmetric NAT forgets its mappings", lab.NATSymmetric, lab.NATFullCone, flushMappings},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			r, err := Start(ctx, Options{Binary: punchdBinary, NATA: tt.natA, NATB: tt.natB, Dir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close() })
			wctx, stop := r.Watch(ctx)
			defer stop()
			fail := func(format string, args ...any) {
				t.Helper()
				t.Fatalf(format+"\n%s", append(args, r.Logs())...)
			}
			pctx, cancelPing := context.WithTimeout(wctx, 30*time.Second)
			_, err = FirstPing(pctx, r.A.Host, r.B.Overlay4, 10*time.Millisecond)
			cancelPing()
			if err != nil {
				fail("first ping: %v", err)
			}
			if _, err := waitPath(wctx, r, "direct", 5*time.Second); err != nil {
				fail("before the fault: %v", err)
			}

			// 2 MB/s for 12 s: in flight through every phase below.
			xfer := make(chan error, 1)
			go func() {
				_, err := TransferAt(wctx, r.A.Host, r.B.Host, r.B.Overlay4, 24<<20, 2<<20)
				xfer <- err
			}()
			tt.fault(wctx, t, r)
			select {
			case err := <-xfer:
				if err != nil {
					fail("TCP transfer across the fault: %v", err)
				}
			case <-wctx.Done():
				fail("TCP transfer across the fault: %v", context.Cause(wctx))
			}
		})
	}
}

// cutAndRestore breaks UDP between the two NAT routers (the rendezvous and
// the relay stay reachable) and brings it back.
func cutAndRestore(ctx context.Context, t *testing.T, r *Run) {
	time.Sleep(time.Second) // let the transfer get going
	natA, natB := r.A.Host.Router, r.B.Host.Router
	if err := natA.CutUDP(ctx, natB.WANAddr); err != nil {
		t.Fatal(err)
	}
	took, err := waitPath(ctx, r, "relay", 15*time.Second)
	if err != nil {
		t.Fatalf("after the direct path broke: %v\n%s", err, r.Logs())
	}
	t.Logf("direct path cut: relayed after %v", took.Round(time.Millisecond))
	time.Sleep(time.Second) // some of the transfer goes through the relay
	if err := natA.RestoreUDP(ctx); err != nil {
		t.Fatal(err)
	}
	if took, err = waitPath(ctx, r, "direct", 15*time.Second); err != nil {
		t.Fatalf("after the direct path came back: %v\n%s", err, r.Logs())
	}
	t.Logf("direct path restored: direct again after %v", took.Round(time.Millisecond))
}

// flushMappings makes host A's NAT forget every mapping, as a router
// reboot does.
func flushMappings(ctx context.Context, t *testing.T, r *Run) {
	time.Sleep(time.Second)
	before, err := r.Status(ctx, r.A)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.A.Host.Router.FlushMappings(); err != nil {
		t.Fatal(err)
	}
	// The path is healed when a pair answers again; on a symmetric NAT
	// the new mapping has a new port, so the pair changes.
	start := time.Now()
	st, took, err := waitStatus(ctx, r, r.A, 15*time.Second, "a new direct path after the mapping flush", func(st control.Status) bool {
		p, ok := onePeer(st)
		return ok && p.State == "connected" && p.Path == "direct" && p.ConnectedAt != nil && p.ConnectedAt.After(start)
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, r.Logs())
	}
	t.Logf("mappings flushed: direct again after %v (was %s, now %s)", took.Round(time.Millisecond),
		before.Peers[0].LocalCandidate.Address, st.Peers[0].LocalCandidate.Address)
}

// waitPath waits until A's peer is connected over path and says how long
// that took.
func waitPath(ctx context.Context, r *Run, path string, timeout time.Duration) (time.Duration, error) {
	_, took, err := waitStatus(ctx, r, r.A, timeout, "connected over "+path, func(st control.Status) bool {
		p, ok := onePeer(st)
		return ok && p.State == "connected" && p.Path == path
	})
	return took, err
}
