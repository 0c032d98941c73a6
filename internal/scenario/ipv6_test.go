package scenario

import (
	"context"
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

// A's IPv4 reaches no relay (UDP blocked, and the rendezvous offers TURN
// over UDP only: its TCP listener is on loopback), B has no IPv6 and sits
// behind a symmetric NAT. Neither a direct path (A sends no IPv4 UDP, B
// has no IPv6) nor an IPv4 relay path exists; the one way is A's
// allocation over IPv6 (an IPv4 relayed address), relayed to B over IPv4.
func TestIPv6Relay(t *testing.T) {
	lab.RequireRoot(t)
	r, wctx := startPinged(t, Options{Binary: punchdBinary, NATA: lab.NATUDPBlocked, NATB: lab.NATSymmetric, IPv6: true, NoIPv6B: true,
		RendezvousArgs: []string{"--turn-tcp-listen", "127.0.0.1:3478"}}, 90*time.Second)
	if _, err := waitPath(wctx, r, "relay", 15*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, r.Logs())
	}
	st, err := r.Status(wctx, r.A)
	if err != nil {
		t.Fatal(err)
	}
	lc := st.Peers[0].LocalCandidate
	if lc == nil || lc.Type != "relay" || lc.RelayFamily != "ipv6" || lc.RelayProtocol != "udp" {
		t.Fatalf("A's local candidate %+v, want a relay reached over IPv6 (udp)", lc)
	}
	if rc, err := netip.ParseAddrPort(lc.Address); err != nil || !rc.Addr().Is4() {
		t.Fatalf("A's relayed address %s, want IPv4 (pairs with B's IPv4 candidates)", lc.Address)
	}
	if _, err := Transfer(wctx, r.A.Host, r.B.Host, r.B.Overlay4, 4<<20); err != nil {
		t.Fatalf("transfer through the relay over IPv6: %v\n%s", err, r.Logs())
	}
}

// B starts without IPv6 behind a symmetric NAT, as A is: relayed. When B
// gets a global IPv6 address, its network watch restarts ICE with the new
// host candidate and the pair goes direct over IPv6, which on IPv4 it
// never could; when the address goes, the pair is relayed again.
func TestIPv6AddressAppears(t *testing.T) {
	lab.RequireRoot(t)
	r, wctx := startPinged(t, Options{Binary: punchdBinary, NATA: lab.NATSymmetric, NATB: lab.NATSymmetric, IPv6: true, NoIPv6B: true}, 90*time.Second)
	if _, err := waitPath(wctx, r, "relay", 15*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, r.Logs())
	}
	if err := r.Lab.AddIPv6(wctx, r.B.Host); err != nil {
		t.Fatal(err)
	}
	took, err := waitPath(wctx, r, "direct", 20*time.Second)
	if err != nil {
		t.Fatalf("not direct after B got IPv6: %v\n%s", err, r.Logs())
	}
	t.Logf("direct over IPv6 %v after B got its address", took)
	st, err := r.Status(wctx, r.A)
	if err != nil {
		t.Fatal(err)
	}
	if rc, err := netip.ParseAddrPort(st.Peers[0].RemoteCandidate.Address); err != nil || rc.Addr() != r.B.Host.Addr6 {
		t.Fatalf("A is direct to %s, want B's new IPv6 address %s", st.Peers[0].RemoteCandidate.Address, r.B.Host.Addr6)
	}
	if _, err := Transfer(wctx, r.A.Host, r.B.Host, r.B.Overlay4, 4<<20); err != nil {
		t.Fatalf("transfer over IPv6: %v\n%s", err, r.Logs())
	}
	// And when the address goes away again, back to the relay.
	if err := r.Lab.RemoveIPv6(wctx, r.B.Host); err != nil {
		t.Fatal(err)
	}
	if _, err := waitPath(wctx, r, "relay", 15*time.Second); err != nil {
		t.Fatalf("not relayed after B lost IPv6: %v\n%s", err, r.Logs())
	}
	pctx, cancel := context.WithTimeout(wctx, 10*time.Second)
	defer cancel()
	if _, err := FirstPing(pctx, r.A.Host, r.B.Overlay4, 10*time.Millisecond); err != nil {
		t.Fatalf("no ping after B lost IPv6: %v\n%s", err, r.Logs())
	}
}
