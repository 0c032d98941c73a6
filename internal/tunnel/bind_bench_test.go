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
