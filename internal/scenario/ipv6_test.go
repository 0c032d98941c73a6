package scenario

import (
	"net/netip"
	"testing"
	"time"

	"github.com/punchd/punchd/internal/lab"
)

// Symmetric x symmetric on IPv4 needs a relay; with global IPv6 on both
// LANs (behind stateful firewalls) the tunnel goes direct over IPv6.
func TestIPv6Direct(t *testing.T) {
	lab.RequireRoot(t)
	r, wctx := startPinged(t, Options{Binary: punchdBinary, NATA: lab.NATSymmetric, NATB: lab.NATSymmetric, IPv6: true}, 90*time.Second)
	if _, err := waitPath(wctx, r, "direct", 15*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, r.Logs())
	}
	st, err := r.Status(wctx, r.A)
	if err != nil {
		t.Fatal(err)
	}
	p := st.Peers[0]
	rc, err := netip.ParseAddrPort(p.RemoteCandidate.Address)
	if err != nil || rc.Addr() != r.B.Host.Addr6 {
		t.Fatalf("A is direct to %s, want B's IPv6 address %s", p.RemoteCandidate.Address, r.B.Host.Addr6)
	}
	if _, err := Transfer(wctx, r.A.Host, r.B.Host, r.B.Overlay4, 4<<20); err != nil {
		t.Fatalf("transfer over IPv6: %v\n%s", err, r.Logs())
	}
}
