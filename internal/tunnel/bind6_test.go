package tunnel

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// On a wildcard Bind, an IPv6 path goes out of the IPv6 socket, and what
// comes back on it reaches WireGuard (the third receiver) with the peer's
// endpoint.
func TestIPv6Path(t *testing.T) {
	rx, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skip("no IPv6 loopback here")
	}
	defer rx.Close()
	b := NewBind(nil, BindOptions{})
	fns, port, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close(); b.Shutdown() })
	if len(fns) != 3 {
		t.Fatalf("%d receive functions, want 3 (IPv4, relay, IPv6)", len(fns))
	}
	peer := key(t)
	dst := rx.LocalAddr().(*net.UDPAddr).AddrPort()
	b.SetPath(peer, Path{Direct: dst})
	ep, _ := b.ParseEndpoint(b.EndpointFor(peer))
	if err := b.Send([][]byte{marked(7)}, ep); err != nil {
		t.Fatalf("send over IPv6: %v", err)
	}
	buf := make([]byte, 1500)
	_ = rx.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, _, err := rx.ReadFromUDPAddrPort(buf)
	if err != nil || marker(buf[:n]) != 7 {
		t.Fatalf("IPv6 peer got %d bytes, err %v", n, err)
	}
	if _, err := rx.WriteToUDPAddrPort(marked(9), netip.AddrPortFrom(netip.IPv6Loopback(), port)); err != nil {
		t.Fatal(err)
	}
	pkt, gotEp := receive(t, fns[2])
	if marker(pkt) != 9 {
		t.Fatalf("received marker %d, want 9", marker(pkt))
	}
	if gotEp.DstToString() != ep.DstToString() {
		t.Fatalf("endpoint %s, want the peer's %s", gotEp.DstToString(), ep.DstToString())
	}
}
