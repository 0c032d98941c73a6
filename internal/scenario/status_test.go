package scenario

import (
	"context"
	"testing"
	"time"

	"github.com/punchd/punchd/internal/control"
)

// checkStatus asserts what `punchd status --json` must say about a working
// direct tunnel.
func checkStatus(t *testing.T, n *Node, st control.Status, r *Run) {
	t.Helper()
	if st.Self.ID != n.ID.String() {
		t.Errorf("%s: self.id = %q, want %q", n.Name, st.Self.ID, n.ID)
	}
	if st.Self.OverlayIPv4 != n.Overlay4.String() {
		t.Errorf("%s: self.overlay_ipv4 = %q, want %s", n.Name, st.Self.OverlayIPv4, n.Overlay4)
	}
	if len(st.Peers) != 1 {
		t.Fatalf("%s: %d peers in status, want 1: %+v", n.Name, len(st.Peers), st)
	}
	p := st.Peers[0]
	other := r.A
	if n == r.A {
		other = r.B
	}
	if p.ID != other.ID.String() || p.OverlayIPv4 != other.Overlay4.String() {
		t.Errorf("%s: peer id/overlay = %s %s, want %s %s", n.Name, p.ID, p.OverlayIPv4, other.ID, other.Overlay4)
	}
	if p.Path != "direct" {
		t.Errorf("%s: path = %q, want direct (reason %q)", n.Name, p.Path, p.Reason)
	}
	if p.State != "connected" {
		t.Errorf("%s: state = %q, want connected", n.Name, p.State)
	}
	for what, c := range map[string]*control.Candidate{"local": p.LocalCandidate, "remote": p.RemoteCandidate} {
		if c == nil || c.Type == "" || c.Address == "" {
			t.Errorf("%s: %s candidate missing: %+v", n.Name, what, c)
		} else if c.Type == "relay" {
			t.Errorf("%s: %s candidate is a relay on a direct path", n.Name, what)
		}
	}
	if p.RxBytes == 0 || p.TxBytes == 0 {
		t.Errorf("%s: rx/tx bytes = %d/%d, want both > 0", n.Name, p.RxBytes, p.TxBytes)
	}
	if p.LastHandshake == nil {
		t.Errorf("%s: no last_handshake", n.Name)
	}
}

// waitStatus is Run.WaitStatus, as the tests call it.
func waitStatus(ctx context.Context, r *Run, n *Node, timeout time.Duration, what string, ok func(control.Status) bool) (control.Status, time.Duration, error) {
	return r.WaitStatus(ctx, n, timeout, what, ok)
}

func onePeer(st control.Status) (control.PeerStatus, bool) { return OnePeer(st) }
