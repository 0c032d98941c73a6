package scenario

import (
	"context"
	"fmt"
	"time"

	"github.com/punchd/punchd/internal/control"
)

// WaitStatus polls n's `punchd status --json` until ok says it is what the
// test waits for, bounded in time and count. It returns that status and
// how long it took; the error names what was awaited and the last status
// seen.
func (r *Run) WaitStatus(ctx context.Context, n *Node, timeout time.Duration, what string, ok func(control.Status) bool) (control.Status, time.Duration, error) {
	start := time.Now()
	deadline := start.Add(timeout)
	last := "no status"
	for i := 0; i < 1000 && time.Now().Before(deadline); i++ {
		st, err := r.Status(ctx, n)
		switch {
		case err != nil:
			last = err.Error()
		case ok(st):
			return st, time.Since(start), nil
		case len(st.Peers) != 1:
			last = fmt.Sprintf("%d peers in status", len(st.Peers))
		default:
			p := st.Peers[0]
			last = fmt.Sprintf("state %s, path %s, peer's NAT %q (%s)", p.State, p.Path, p.NAT, p.Reason)
		}
		if err := ctx.Err(); err != nil {
			return st, 0, err
		}
		time.Sleep(50 * time.Millisecond)
	}
	return control.Status{}, 0, fmt.Errorf("%s: %s not within %v; last: %s", n.Name, what, timeout, last)
}

// OnePeer is the only peer of a two-daemon run, if the status has it.
func OnePeer(st control.Status) (control.PeerStatus, bool) {
	if len(st.Peers) != 1 {
		return control.PeerStatus{}, false
	}
	return st.Peers[0], true
}
