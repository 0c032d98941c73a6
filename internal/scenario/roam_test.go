package scenario

import (
	"context"
	"testing"
	"time"

	"github.com/punchd/punchd/internal/control"
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
			r, wctx := startPinged(t, RoamOptions(punchdBinary), 2*time.Minute)
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

// While relayed, ICE restarts on a backoff, so a direct path that only
// fresh candidates can find is found. A's network drops all UDP to the
// peer and to the rendezvous (a firewall that lets only TCP out for a
// while): the new attempt has no server-reflexive candidate of A and
// relays over TURN/TCP. When UDP is back, the relayed attempt's pairs
// cannot go direct (B's NAT filters A, and B never learnt A's public
// address); only a restart that gathers again can.
func TestRelayedRestartFindsDirect(t *testing.T) {
	lab.RequireRoot(t)
	if testing.Short() {
		t.Skip("blocks UDP and waits for a backoff restart (~25 s); skipped with -short")
	}
	r, wctx := startPinged(t, RoamOptions(punchdBinary), 2*time.Minute)
	if _, err := waitPath(wctx, r, "direct", 5*time.Second); err != nil {
		t.Fatalf("before the cut: %v\n%s", err, r.Logs())
	}
	natA, natB := r.A.Host.Router, r.B.Host.Router
	if err := natA.CutUDP(wctx, natB.WANAddr, r.R.Addr); err != nil {
		t.Fatal(err)
	}
	_, _, err := waitStatus(wctx, r, r.A, 20*time.Second, "relayed over TURN/TCP", func(st control.Status) bool {
		p, ok := onePeer(st)
		return ok && p.State == "connected" && p.Path == "relay" && p.LocalCandidate != nil && p.LocalCandidate.RelayProtocol == "tcp"
	})
	if err != nil {
		t.Fatalf("with UDP cut: %v\n%s", err, r.Logs())
	}
	time.Sleep(time.Second) // the relayed attempt is the one in place
	if err := natA.RestoreUDP(wctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	deadline := start.Add(40 * time.Second) // the backoff reaches 16 s
	last := ""
	for i := 0; i < 800 && time.Now().Before(deadline); i++ {
		ok, why := r.directTo(wctx, natA.WANAddr)
		if ok {
			t.Logf("direct again %v after UDP came back (%s)", time.Since(start).Round(time.Millisecond), why)
			return
		}
		last = why
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("not direct again within 40 s of UDP coming back; last: %s\n%s", last, r.Logs())
}

// startPinged starts a run of opts (in the test's temporary directory) and
// waits for the first ping through the tunnel. The context it returns
// ends with the test's timeout or as soon as a daemon exits.
func startPinged(t *testing.T, opts Options, timeout time.Duration) (*Run, context.Context) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	opts.Dir = t.TempDir()
	r, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	wctx, stop := r.Watch(ctx)
	t.Cleanup(stop)
	pctx, cancelPing := context.WithTimeout(wctx, 30*time.Second)
	defer cancelPing()
	if _, err := FirstPing(pctx, r.A.Host, r.B.Overlay4, 10*time.Millisecond); err != nil {
		t.Fatalf("first ping: %v\n%s", err, r.Logs())
	}
	return r, wctx
}
