package lab

import (
	"net"
	"testing"
	"time"
)

// With IPv6 the LANs have routed global addresses behind stateful
// firewalls: a host reaches the internet, nothing unsolicited reaches it,
// and two hosts that both send (a hole punch) reach each other, even
// behind symmetric IPv4 NATs.
func TestIPv6(t *testing.T) {
	RequireRoot(t)
	ctx, l := newTestLabWith(t, 60*time.Second, Options{IPv6: true})
	srv, err := l.AddPublicHost("srv", 0)
	if err != nil {
		t.Fatal(err)
	}
	var hosts []*Host
	for _, name := range []string{"a", "b"} {
		r, err := l.AddNAT("nat"+name, NATSymmetric)
		if err != nil {
			t.Fatal(err)
		}
		h, err := l.AddHost(name, r)
		if err != nil {
			t.Fatal(err)
		}
		if !r.LAN6.Contains(h.Addr6) || !h.Addr6.IsGlobalUnicast() {
			t.Fatalf("%s: IPv6 address %v not a global one in %v", name, h.Addr6, r.LAN6)
		}
		hosts = append(hosts, h)
	}
	a, b := hosts[0], hosts[1]
	if _, err := a.Ping(ctx, srv.Addr6, 2*time.Second); err != nil {
		t.Fatalf("a cannot ping the internet over IPv6: %v\n%s", err, l.Describe())
	}
	if _, err := srv.Ping(ctx, a.Addr6, 300*time.Millisecond); err == nil {
		t.Error("an unsolicited ping from the internet reached a")
	}
	udp6 := func(h *Host) net.PacketConn {
		var c net.PacketConn
		if err := h.Do(func() (err error) {
			c, err = net.ListenPacket("udp6", "["+h.Addr6.String()+"]:0")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	ca, cb := udp6(a), udp6(b)
	send := func(from net.PacketConn, to net.PacketConn, h *Host, msg string) {
		t.Helper()
		dst := &net.UDPAddr{IP: h.Addr6.AsSlice(), Port: to.LocalAddr().(*net.UDPAddr).Port}
		if _, err := from.WriteTo([]byte(msg), dst); err != nil {
			t.Fatal(err)
		}
	}
	send(ca, cb, b, "unsolicited")
	if arrives(cb, "unsolicited") {
		t.Fatal("unsolicited UDP reached b through its firewall")
	}
	// a has now sent to b: b's answer is a reply at a's firewall.
	send(cb, ca, a, "punch")
	if !arrives(ca, "punch") {
		t.Fatal("b's packet did not reach a after a had sent to b")
	}
	send(ca, cb, b, "through")
	if !arrives(cb, "through") {
		t.Fatal("a's packet did not reach b after b had sent to a")
	}
}
