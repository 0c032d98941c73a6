package scenario

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/punchd/punchd/internal/lab"
)

// Drill is something that happens to a moving host; host A of a run
// suffers it. The roaming test and `punchd-lab roam` share them.
type Drill string

const (
	// DrillRebind: A's NAT gets a new public IPv4 address (ISP lease).
	DrillRebind Drill = "rebind"
	// DrillMove: A leaves its LAN for another router's (Wi-Fi to LTE):
	// its own address and default route change.
	DrillMove Drill = "move"
	// DrillReboot: A's NAT reboots: WAN address and every mapping gone
	// for a second, then the same address back.
	DrillReboot Drill = "reboot"
)

// AllDrills lists the drills in the order the test runs them.
func AllDrills() []Drill { return []Drill{DrillRebind, DrillMove, DrillReboot} }

// rebootDown is how long a rebooting NAT is away.
const rebootDown = time.Second

// Roam applies drill d to host A and waits until the tunnel is direct
// again on a path that reaches A where it is now. It returns how long that
// took from the moment a direct path was possible again (the fault's end),
// and what the direct path is. "Direct again" means: both daemons report
// a direct path, B's remote candidate is at A's current public address,
// and a ping through the tunnel answers. Bounded by timeout.
func (r *Run) Roam(ctx context.Context, d Drill, timeout time.Duration) (time.Duration, string, error) {
	a := r.A.Host
	if a.Router == nil {
		return 0, "", errors.New("roam: host A has no NAT (use a NATed pairing)")
	}
	switch d {
	case DrillRebind:
		if _, err := r.Lab.Rebind(ctx, a.Router); err != nil {
			return 0, "", err
		}
	case DrillMove:
		lte, err := r.Lab.AddNAT("natlte", a.Router.Type)
		if err != nil {
			return 0, "", err
		}
		if err := r.Lab.MoveHost(ctx, a, lte); err != nil {
			return 0, "", err
		}
	case DrillReboot:
		if err := a.Router.Reboot(ctx, rebootDown); err != nil {
			return 0, "", err
		}
	default:
		return 0, "", fmt.Errorf("unknown drill %q", d)
	}
	start := time.Now()
	public := a.Router.WANAddr
	deadline := start.Add(timeout)
	last := "no status yet"
	for i := 0; i < 2000 && time.Now().Before(deadline); i++ {
		if err := ctx.Err(); err != nil {
			return 0, "", err
		}
		ok, why := r.directTo(ctx, public)
		if ok {
			return time.Since(start), why, nil
		}
		last = why
		time.Sleep(50 * time.Millisecond)
	}
	return 0, "", fmt.Errorf("%s: not direct again within %v; last: %s", d, timeout, last)
}

// directTo reports whether both daemons are direct, B toward public, and
// a ping through the tunnel answers; else what is missing.
func (r *Run) directTo(ctx context.Context, public netip.Addr) (bool, string) {
	stA, err := r.Status(ctx, r.A)
	if err != nil {
		return false, err.Error()
	}
	stB, err := r.Status(ctx, r.B)
	if err != nil {
		return false, err.Error()
	}
	if len(stA.Peers) != 1 || len(stB.Peers) != 1 {
		return false, "a daemon has no peer in its status"
	}
	pa, pb := stA.Peers[0], stB.Peers[0]
	if pa.Path != "direct" || pb.Path != "direct" {
		return false, fmt.Sprintf("A %s over %s (%s), B %s over %s (%s)", pa.State, pa.Path, pa.Reason, pb.State, pb.Path, pb.Reason)
	}
	if pb.RemoteCandidate == nil {
		return false, "B reports no remote candidate"
	}
	rc, err := netip.ParseAddrPort(pb.RemoteCandidate.Address)
	if err != nil || rc.Addr() != public {
		return false, fmt.Sprintf("B is direct to %s, not to A's public address %s", pb.RemoteCandidate.Address, public)
	}
	if _, err := r.A.Host.Ping(ctx, r.B.Overlay4, 300*time.Millisecond); err != nil {
		return false, "direct, but no ping answer through the tunnel"
	}
	return true, fmt.Sprintf("%s %s -> %s %s", pb.LocalCandidate.Type, pb.LocalCandidate.Address, pb.RemoteCandidate.Type, pb.RemoteCandidate.Address)
}

// RoamUnderLoad runs drill d while a 2 MB/s TCP transfer with a SHA-256
// check crosses the tunnel from A to B (started a second before the
// fault, so the fault hits it in flight), and returns Roam's figures once
// the transfer has arrived intact.
func (r *Run) RoamUnderLoad(ctx context.Context, d Drill, timeout time.Duration) (time.Duration, string, error) {
	xctx, cancel := context.WithCancel(ctx)
	defer cancel()
	xfer := make(chan error, 1)
	go func() {
		_, err := TransferAt(xctx, r.A.Host, r.B.Host, r.B.Overlay4, 32<<20, 2<<20)
		xfer <- err
	}()
	t := time.NewTimer(time.Second)
	select {
	case <-t.C:
	case err := <-xfer:
		return 0, "", fmt.Errorf("TCP transfer ended before the fault: %v", err)
	}
	took, path, err := r.Roam(ctx, d, timeout)
	if err != nil {
		return 0, "", err
	}
	select {
	case err := <-xfer:
		if err != nil {
			return took, path, fmt.Errorf("TCP transfer across the %s: %w", d, err)
		}
	case <-ctx.Done():
		return took, path, fmt.Errorf("TCP transfer across the %s: %w", d, context.Cause(ctx))
	}
	return took, path, nil
}

// RoamOptions is the pairing the drills run on: port-restricted on both
// sides, where direct is possible and a move of either side's public
// address breaks the pair (the peer's NAT filters by address and port).
func RoamOptions(bin string) Options {
	return Options{Binary: bin, NATA: lab.NATPortRestricted, NATB: lab.NATPortRestricted}
}
