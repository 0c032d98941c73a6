package lab

import (
	"net"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// CutUDP must drop UDP to the cut address only, in both directions and for
// flows already established; RestoreUDP brings it back. FlushMappings must
// leave the router with no tracked connections.
func TestFaults(t *testing.T) {
	RequireRoot(t)
	ctx, l := newTestLab(t, 60*time.Second)
	cut, err := l.AddPublicHost("cut", 0)
	if err != nil {
		t.Fatal(err)
	}
	other, err := l.AddPublicHost("other", 0)
	if err != nil {
		t.Fatal(err)
	}
	r, err := l.AddNAT("nat", NATFullCone)
	if err != nil {
		t.Fatal(err)
	}
	h, err := l.AddHost("h", r)
	if err != nil {
		t.Fatal(err)
	}
	hc := listenUDP(t, h)
	cutConn, otherConn := listenUDP(t, cut), listenUDP(t, other)
	to := func(host *Host, c net.PacketConn) *net.UDPAddr {
		return &net.UDPAddr{IP: host.Addr.AsSlice(), Port: c.LocalAddr().(*net.UDPAddr).Port}
	}
	hostWAN := func(c net.PacketConn) *net.UDPAddr {
		return &net.UDPAddr{IP: r.WANAddr.AsSlice(), Port: hc.LocalAddr().(*net.UDPAddr).Port}
	}
	// exchange sends one datagram each way between the host and a server
	// and reports whether both arrived.
	exchange := func(host *Host, c net.PacketConn, tag string) bool {
		t.Helper()
		if _, err := hc.WriteTo([]byte("out-"+tag), to(host, c)); err != nil {
			t.Fatal(err)
		}
		if !arrives(c, "out-"+tag) {
			return false
		}
		if _, err := c.WriteTo([]byte("in-"+tag), hostWAN(hc)); err != nil {
			t.Fatal(err)
		}
		return arrives(hc, "in-"+tag)
	}

	if !exchange(cut, cutConn, "before") || !exchange(other, otherConn, "before") {
		t.Fatal("no UDP through the router before any cut")
	}
	if err := r.CutUDP(ctx, cut.Addr); err != nil {
		t.Fatal(err)
	}
	if exchange(cut, cutConn, "cut") {
		t.Error("UDP to the cut address still passes")
	}
	// Inbound on the established flow, on its own.
	if _, err := cutConn.WriteTo([]byte("in-only"), hostWAN(hc)); err != nil {
		t.Fatal(err)
	}
	if arrives(hc, "in-only") {
		t.Error("UDP from the cut address still arrives")
	}
	if !exchange(other, otherConn, "cut") {
		t.Error("the cut also stopped UDP to another address")
	}
	if err := r.RestoreUDP(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.RestoreUDP(ctx); err != nil {
		t.Fatalf("second restore: %v", err)
	}
	if !exchange(cut, cutConn, "restored") {
		t.Error("UDP to the cut address does not pass after RestoreUDP")
	}

	if n := conntrackEntries(t, r); n == 0 {
		t.Fatal("no conntrack entries on the router after traffic; the flush test would prove nothing")
	}
	if err := r.FlushMappings(); err != nil {
		t.Fatal(err)
	}
	if n := conntrackEntries(t, r); n != 0 {
		t.Errorf("%d conntrack entries left after FlushMappings", n)
	}
	if err := r.CutUDP(ctx); err == nil {
		t.Error("CutUDP without addresses: no error")
	}
}

// arrives reads c for up to 300 ms for a datagram with payload want.
func arrives(c net.PacketConn, want string) bool {
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	buf := make([]byte, 1500)
	for i := 0; i < 16; i++ {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			return false
		}
		if string(buf[:n]) == want {
			return true
		}
	}
	return false
}

func conntrackEntries(t *testing.T, r *Router) int {
	t.Helper()
	var n int
	if err := r.Do(func() error {
		flows, err := netlink.ConntrackTableList(netlink.ConntrackTable, netlink.FAMILY_V4)
		n = len(flows)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return n
}
