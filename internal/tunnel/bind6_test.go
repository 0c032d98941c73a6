package tunnel

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"golang.zx2c4.com/wireguard/conn"
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

// A batch of equal-sized packets to an IPv6 peer goes out in batches
// (GSO where the kernel has it) and arrives whole through the IPv6
// receiver; STUN on the IPv6 socket reaches STUNConn6, not STUNConn.
func TestIPv6Batch(t *testing.T) {
	if c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback}); err != nil {
		t.Skip("no IPv6 loopback here")
	} else {
		c.Close()
	}
	tx, rx := NewBind(nil, BindOptions{}), NewBind(nil, BindOptions{})
	if _, _, err := tx.Open(0); err != nil {
		t.Fatal(err)
	}
	fns, port, err := rx.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Close(); tx.Shutdown(); rx.Close(); rx.Shutdown() })
	peer := key(t)
	tx.SetPath(peer, Path{Direct: netip.AddrPortFrom(netip.IPv6Loopback(), port)})
	ep, _ := tx.ParseEndpoint(tx.EndpointFor(peer))
	const n = 64
	out := make([][]byte, n)
	for i := range out {
		out[i] = wgPacket(4, 1400)
	}
	if err := tx.Send(out, ep); err != nil {
		t.Fatalf("batch over IPv6: %v", err)
	}
	in := make([][]byte, batchSize)
	for i := range in {
		in[i] = make([]byte, 2048)
	}
	sizes := make([]int, batchSize)
	eps := make([]conn.Endpoint, batchSize)
	_ = rx.sock.Load().udp6.SetReadDeadline(time.Now().Add(5 * time.Second))
	for got := 0; got < n; {
		k, err := fns[2](in, sizes, eps)
		if err != nil {
			t.Fatalf("after %d of %d packets: %v", got, n, err)
		}
		for i := range k {
			if sizes[i] != 1400 {
				t.Fatalf("packet %d: %d bytes, want 1400", got+i, sizes[i])
			}
		}
		got += k
	}

	req := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	c, err := net.DialUDP("udp6", nil, &net.UDPAddr{IP: net.IPv6loopback, Port: int(port)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(req.Raw); err != nil {
		t.Fatal(err)
	}
	// The receiver diverts STUN and waits for more: run it meanwhile.
	go func() { _, _ = fns[2](in, sizes, eps) }()
	got := make(chan []byte, 1)
	go func() {
		buf := make([]byte, 1500)
		if n, _, err := rx.STUNConn6().ReadFrom(buf); err == nil {
			got <- buf[:n]
		}
	}()
	select {
	case p := <-got:
		if !stun.IsMessage(p) {
			t.Fatal("STUNConn6 got something that is not STUN")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("STUN on the IPv6 socket did not reach STUNConn6")
	}
	if len(rx.stun.in) != 0 {
		t.Fatal("STUN on the IPv6 socket reached the IPv4 STUNConn")
	}
}
