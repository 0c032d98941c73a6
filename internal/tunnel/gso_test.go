package tunnel

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/punchd/punchd/internal/udpbatch"
	"golang.org/x/net/ipv4"
	"golang.zx2c4.com/wireguard/conn"
)

// Datagrams sent as one GSO batch arrive as the same separate datagrams.
func TestSendGSOOverLoopback(t *testing.T) {
	b, _ := openLoopback(t)
	peer := key(t)
	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	b.SetPath(peer, Path{Direct: rx.LocalAddr().(*net.UDPAddr).AddrPort()})
	ep, _ := b.ParseEndpoint(b.EndpointFor(peer))
	var bufs [][]byte
	for i := 0; i < 20; i++ {
		p := wgPacket(4, 1200)
		p[16] = byte(i)
		bufs = append(bufs, p)
	}
	tail := wgPacket(4, 500)
	tail[16] = 20
	bufs = append(bufs, tail)
	if err := b.Send(bufs, ep); err != nil {
		t.Fatal(err)
	}
	t.Logf("UDP GSO in use: %v", b.gso.GSO())
	buf := make([]byte, 2000)
	_ = rx.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i := 0; i <= 20; i++ {
		n, _, err := rx.ReadFrom(buf)
		if err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		want := 1200
		if i == 20 {
			want = 500
		}
		if n != want || buf[16] != byte(i) {
			t.Fatalf("datagram %d: %d bytes, marker %d", i, n, buf[16])
		}
	}
}

// A GSO batch between two Binds arrives at the device as the same
// datagrams, whether or not the kernel coalesced them for GRO.
func TestGSOToGRO(t *testing.T) {
	tx, _ := openLoopback(t)
	rx, fns := openLoopback(t)
	peer := key(t)
	tx.SetPath(peer, Path{Direct: netipAddrPort(t, rx)})
	ep, _ := tx.ParseEndpoint(tx.EndpointFor(peer))
	const n = 40
	var bufs [][]byte
	for i := 0; i < n; i++ {
		p := wgPacket(4, 1200)
		p[16] = byte(i)
		bufs = append(bufs, p)
	}
	if err := tx.Send(bufs, ep); err != nil {
		t.Fatal(err)
	}
	// Small slots on purpose: a coalesced read must be handed out across calls.
	got := 0
	slots := make([][]byte, 7)
	for i := range slots {
		slots[i] = make([]byte, 2048)
	}
	sizes := make([]int, len(slots))
	eps := make([]conn.Endpoint, len(slots))
	deadline := time.Now().Add(5 * time.Second)
	for got < n && time.Now().Before(deadline) {
		k, err := fns[0](slots, sizes, eps)
		if err != nil {
			t.Fatal(err)
		}
		for j := 0; j < k; j++ {
			if sizes[j] != 1200 || slots[j][16] != byte(got) {
				t.Fatalf("packet %d: %d bytes, marker %d", got, sizes[j], slots[j][16])
			}
			got++
		}
	}
	if got != n {
		t.Fatalf("received %d of %d", got, n)
	}
}

func netipAddrPort(t *testing.T, b *Bind) netip.AddrPort {
	t.Helper()
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), b.LocalPort())
}

// coalesce lays bufs out in g for one sendmmsg with GSO, as sendGSO does.
func coalesce(g *udpbatch.Batch, bufs [][]byte, addr *net.UDPAddr, channel uint16) []ipv4.Message {
	g.Reset(coalescedSize(bufs, channel), true)
	addFramed(g, bufs, addr, channel)
	return g.Messages()
}
