package tunnel

import (
	"net/netip"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/punchd/punchd/internal/identity"
)

// BenchmarkBindDirect moves one batch of 64 data packets (1400 bytes) from
// one Bind to another over loopback, Send to ReceiveFunc: the direct hot
// path, with GSO and GRO when the kernel has them. allocs/op is per batch.
func BenchmarkBindDirect(b *testing.B) {
	lo := netip.MustParseAddr("127.0.0.1")
	tx := NewBind(nil, BindOptions{ListenAddr: lo})
	rx := NewBind(nil, BindOptions{ListenAddr: lo})
	if _, _, err := tx.Open(0); err != nil {
		b.Fatal(err)
	}
	fns, port, err := rx.Open(0)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { tx.Close(); tx.Shutdown(); rx.Close(); rx.Shutdown() })
	peer := identity.PublicKey{1}
	tx.SetPath(peer, Path{Direct: netip.AddrPortFrom(lo, port)})
	// The receiver knows the sender as a peer, as after ICE: packets get
	// its logical endpoint.
	rx.SetPath(identity.PublicKey{2}, Path{Direct: netip.AddrPortFrom(lo, tx.LocalPort())})
	ep, _ := tx.ParseEndpoint(tx.EndpointFor(peer))

	const n = 64
	out := make([][]byte, n)
	for i := range out {
		out[i] = wgPacket(4, 1400)
	}
	in := make([][]byte, batchSize)
	for i := range in {
		in[i] = make([]byte, 2048)
	}
	sizes := make([]int, batchSize)
	eps := make([]conn.Endpoint, batchSize)
	sock := rx.sock.Load().udp

	b.SetBytes(n * 1400)
	b.ReportAllocs()
	for b.Loop() {
		if err := tx.Send(out, ep); err != nil {
			b.Fatal(err)
		}
		// Bounded: a lost datagram fails the benchmark instead of hanging.
		_ = sock.SetReadDeadline(time.Now().Add(5 * time.Second))
		for got := 0; got < n; {
			k, err := fns[0](in, sizes, eps)
			if err != nil {
				b.Fatalf("after %d of %d: %v", got, n, err)
			}
			got += k
		}
	}
}

// BenchmarkBindRelayReceive moves one batch of 64 relayed data packets
// (1400 bytes) from DeliverRelay (what the relay reader calls for each
// packet ICE hands it) to the device's ReceiveFunc: our part of the relay
// receive path. allocs/op is per batch and must be 0.
func BenchmarkBindRelayReceive(b *testing.B) {
	rx := NewBind(nil, BindOptions{ListenAddr: netip.MustParseAddr("127.0.0.1")})
	fns, _, err := rx.Open(0)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rx.Close(); rx.Shutdown() })
	peer := identity.PublicKey{3}
	const n = 64
	pkt := wgPacket(4, 1400)
	in := make([][]byte, batchSize)
	for i := range in {
		in[i] = make([]byte, 2048)
	}
	sizes := make([]int, batchSize)
	eps := make([]conn.Endpoint, batchSize)

	b.SetBytes(n * 1400)
	b.ReportAllocs()
	for b.Loop() {
		for range n {
			rx.DeliverRelay(peer, pkt)
		}
		for got := 0; got < n; {
			k, err := fns[1](in, sizes, eps)
			if err != nil {
				b.Fatal(err)
			}
			got += k
		}
	}
	if d := rx.Drops(); d.Relay != 0 {
		b.Fatalf("%d relayed packets dropped", d.Relay)
	}
}

// BenchmarkBindRelaySend sends one batch of 64 data packets (1400 bytes)
// on a relay path with a bound TURN channel: ChannelData framing and
// batched writes (GSO when the kernel has it) on the TURN client's socket,
// the relay shortcut's send side. allocs/op is per batch and must be 0.
func BenchmarkBindRelaySend(b *testing.B) {
	tx := NewBind(nil, BindOptions{ListenAddr: netip.MustParseAddr("127.0.0.1")})
	if _, _, err := tx.Open(0); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { tx.Close(); tx.Shutdown() })
	ch, server := newFakeChannel(b)
	ch.bound.Store(true)
	// Nobody reads the server socket: the kernel drops what overflows it,
	// which costs the sender nothing.
	_ = server
	peer := identity.PublicKey{4}
	tx.SetPath(peer, Path{Relay: relayFunc(func([]byte) { b.Fatal("sent through the relay writer") }), Channel: ch})
	ep, _ := tx.ParseEndpoint(tx.EndpointFor(peer))
	const n = 64
	out := make([][]byte, n)
	for i := range out {
		out[i] = wgPacket(4, 1400)
	}
	b.SetBytes(n * 1400)
	b.ReportAllocs()
	for b.Loop() {
		if err := tx.Send(out, ep); err != nil {
			b.Fatal(err)
		}
	}
}
