package scenario

import (
	"context"
	"fmt"
	"strings"
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
// to say direct via birthday punching, prediction or a port mapping (B's
// with UPnPA: B's path goes to A's mapped port), and checks the path with
// a checksummed 4 MB transfer.
func HardNATRun(ctx context.Context, opts Options) (HardNATResult, error) {
	return hardNATRun(ctx, opts, nil)
}

// hardNATRun is HardNATRun; onDirect, when not nil, is called with the
// watched daemon once its path went direct (tests read its metrics then).
func hardNATRun(ctx context.Context, opts Options, onDirect func(r *Run, watch, peer *Node)) (HardNATResult, error) {
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
	watch := r.A
	if opts.UPnPA {
		watch = r.B
	}
	st, _, err := r.WaitStatus(wctx, watch, 60*time.Second, "direct via a hard-NAT technique", func(st control.Status) bool {
		p, ok := OnePeer(st)
		return ok && p.Path == "direct" && p.Via != ""
	})
	if err != nil {
		return res, fmt.Errorf("%w\n%s", err, r.Logs())
	}
	res.Direct = time.Since(r.Started)
	if onDirect != nil {
		peer := r.B
		if watch == r.B {
			peer = r.A
		}
		onDirect(r, watch, peer)
	}
	p := st.Peers[0]
	res.Via, res.Probes = p.Via, p.Probes
	if p.RemoteCandidate != nil {
		res.Remote = p.RemoteCandidate.Address
	}
	xctx, cancelX := context.WithTimeout(wctx, 60*time.Second)
	defer cancelX()
	if _, err := Transfer(xctx, r.A.Host, r.B.Host, r.B.Overlay4, 4<<20); err != nil {
		return res, fmt.Errorf("a 4 MB transfer through the direct path: %w\n%s", err, r.Logs())
	}
	if st, err = r.Status(wctx, watch); err != nil {
		return res, err
	}
	if p, ok := OnePeer(st); !ok || p.Path != "direct" || p.Via != res.Via {
		return res, fmt.Errorf("after the transfer %s's path is %+v, want still direct via %s\n%s", watch.Name, p, res.Via, r.Logs())
	}
	if r.upnp != nil {
		// A's daemon holds the mapping while it runs and deletes it on
		// shutdown, as miniupnpd's own forward chain shows.
		fw, err := r.upnp.Forwards(ctx)
		if err != nil || !strings.Contains(fw, "dnat") {
			return res, fmt.Errorf("miniupnpd holds no forward for A while it runs (%v):\n%s", err, fw)
		}
		if err := r.Stop(r.A, 10*time.Second); err != nil {
			return res, err
		}
		if fw, err = r.upnp.Forwards(ctx); err != nil || strings.Contains(fw, "dnat") {
			return res, fmt.Errorf("the mapping of A outlived its daemon (%v):\n%s", err, fw)
		}
	}
	return res, nil
}
