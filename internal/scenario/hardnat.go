package scenario

import (
	"context"
	"fmt"
	"time"

	"github.com/punchd/punchd/internal/control"
)

// HardNATResult is one run of a hard-NAT pairing.
type HardNATResult struct {
	FirstPing time.Duration // from start; through the relay, normally
	Direct    time.Duration // from start to status saying direct
	Via       string        // how A's status says the direct path was made
	Probes    int
	Remote    string // A's view of B's address on the path
}

// HardNATRun starts opts, waits for the first ping, then for A's status
// to say direct via birthday punching, prediction or a port mapping, and
// checks the path with a checksummed 4 MB transfer.
func HardNATRun(ctx context.Context, opts Options) (HardNATResult, error) {
	var res HardNATResult
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	r, err := Start(ctx, opts)
	if err != nil {
		return res, err
	}
	defer r.Close()
	wctx, stop := r.Watch(ctx)
	defer stop()
	pingCtx, cancelPing := context.WithTimeout(wctx, 30*time.Second)
	at, err := FirstPing(pingCtx, r.A.Host, r.B.Overlay4, 10*time.Millisecond)
	cancelPing()
	if err != nil {
		return res, fmt.Errorf("first ping: %w\n%s", err, r.Logs())
	}
	res.FirstPing = at.Sub(r.Started)
	st, _, err := r.WaitStatus(wctx, r.A, 60*time.Second, "direct via a hard-NAT technique", func(st control.Status) bool {
		p, ok := OnePeer(st)
		return ok && p.Path == "direct" && p.Via != ""
	})
	if err != nil {
		return res, fmt.Errorf("%w\n%s", err, r.Logs())
	}
	res.Direct = time.Since(r.Started)
	p := st.Peers[0]
	res.Via, res.Probes = p.Via, p.Probes
	if p.RemoteCandidate != nil {
		res.Remote = p.RemoteCandidate.Address
	}
	xctx, cancelX := context.WithTimeout(wctx, 60*time.Second)
	defer cancelX()
	if _, err := Transfer(xctx, r.A.Host, r.B.Host, r.B.Overlay4, 4<<20); err != nil {
		return res, fmt.Errorf("4 MB through the direct path: %w\n%s", err, r.Logs())
	}
	if st, err = r.Status(wctx, r.A); err != nil {
		return res, err
	}
	if p, ok := OnePeer(st); !ok || p.Path != "direct" || p.Via != res.Via {
		return res, fmt.Errorf("after the transfer A's path is %+v, want still direct via %s\n%s", p, res.Via, r.Logs())
	}
	return res, nil
}
