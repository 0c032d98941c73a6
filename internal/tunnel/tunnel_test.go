package tunnel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/punchd/punchd/internal/identity"
)

func wgPacket(typ byte, size int) []byte {
	b := make([]byte, size)
	b[0] = typ
	return b
}

func stunMsg(attrLen int) []byte {
	b := make([]byte, 20+attrLen)
	binary.BigEndian.PutUint16(b[0:], 0x0001) // binding request
	binary.BigEndian.PutUint16(b[2:], uint16(attrLen))
	binary.BigEndian.PutUint32(b[4:], stunMagicCookie)
	return b
}

// punchPacket is a birthday packet's shape by hand: magic "PDbd", then n-4
// bytes.
func punchPacket(n int) []byte {
	b := make([]byte, n)
	copy(b, "PDbd")
	return b
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		pkt  []byte
		want Kind
	}{
		{"initiation", wgPacket(1, 148), KindWireGuard},
		{"response", wgPacket(2, 92), KindWireGuard},
		{"cookie", wgPacket(3, 64), KindWireGuard},
		{"keepalive", wgPacket(4, 32), KindWireGuard},
		{"data", wgPacket(4, 1452), KindWireGuard},
		{"initiation wrong size", wgPacket(1, 149), KindUnknown},
		{"data too short", wgPacket(4, 31), KindUnknown},
		{"type 5", wgPacket(5, 148), KindUnknown},
		{"reserved bytes set", func() []byte { b := wgPacket(4, 64); b[2] = 1; return b }(), KindUnknown},
		{"stun binding", stunMsg(0), KindSTUN},
		{"stun with attributes", stunMsg(24), KindSTUN},
		{"stun bad length", func() []byte { b := stunMsg(8); return b[:24] }(), KindUnknown},
		{"stun length not a multiple of 4", func() []byte { b := stunMsg(8); b[3] = 6; return b[:26] }(), KindUnknown},
		{"stun trailing bytes", append(stunMsg(8), 0, 0, 0, 0), KindUnknown},
		{"stun header only, too short", stunMsg(0)[:19], KindUnknown},
		{"response wrong size", wgPacket(2, 148), KindUnknown},
		{"cookie wrong size", wgPacket(3, 92), KindUnknown},
		{"type 0", wgPacket(0, 148), KindUnknown},
		{"stun no cookie", func() []byte { b := stunMsg(0); b[4] = 0; return b }(), KindUnknown},
		{"stun top bits set", func() []byte { b := stunMsg(0); b[0] = 0x80; return b }(), KindUnknown},
		{"empty", nil, KindUnknown},
		{"short", []byte{1, 0}, KindUnknown},
		{"birthday probe", punchPacket(33), KindPunch},
		{"birthday wrong size", punchPacket(34), KindUnknown},
		{"birthday bad magic", func() []byte { b := punchPacket(33); b[3] = 'x'; return b }(), KindUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Classify(tt.pkt); got != tt.want {
				t.Fatalf("Classify = %v, want %v", got, tt.want)
			}
		})
	}
}

func BenchmarkClassify(b *testing.B) {
	pkts := [][]byte{wgPacket(4, 1452), wgPacket(1, 148), stunMsg(48)}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		Classify(pkts[i%len(pkts)])
	}
}

func FuzzClassify(f *testing.F) {
	f.Add(wgPacket(1, 148))
	f.Add(wgPacket(2, 92))
	f.Add(wgPacket(3, 64))
	f.Add(wgPacket(4, 64))
	f.Add(stunMsg(8))
	f.Add([]byte{})
	wgSize := map[byte]int{1: wgInitiationSize, 2: wgResponseSize, 3: wgCookieSize}
	f.Fuzz(func(t *testing.T, b []byte) {
		switch Classify(b) {
		case KindWireGuard:
			if len(b) < 4 || b[0] < 1 || b[0] > 4 || b[1]|b[2]|b[3] != 0 {
				t.Fatalf("WireGuard without type 1-4 and zero reserved bytes: % x", b[:min(len(b), 4)])
			}
			if want, ok := wgSize[b[0]]; ok && len(b) != want || b[0] == 4 && len(b) < wgMinDataSize {
				t.Fatalf("WireGuard type %d of %d bytes", b[0], len(b))
			}
		case KindSTUN:
			if len(b) < 20 || b[0]&0xC0 != 0 || binary.BigEndian.Uint32(b[4:8]) != stunMagicCookie {
				t.Fatal("STUN without header or magic cookie")
			}
			if n := int(binary.BigEndian.Uint16(b[2:4])); n%4 != 0 || 20+n != len(b) {
				t.Fatalf("STUN length field %d for %d bytes", n, len(b))
			}
		}
	})
}

func key(t *testing.T) identity.PublicKey {
	t.Helper()
	k, err := identity.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey()
}

// openLoopback opens a Bind on 127.0.0.1 and returns it with its receive
// functions.
func openLoopback(t *testing.T) (*Bind, []conn.ReceiveFunc) {
	t.Helper()
	b := NewBind(nil, BindOptions{ListenAddr: netip.MustParseAddr("127.0.0.1")})
	fns, port, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	if port == 0 || b.LocalPort() != port {
		t.Fatalf("port %d / %d", port, b.LocalPort())
	}
	t.Cleanup(func() { b.Close(); b.Shutdown() })
	return b, fns
}

func receive(t *testing.T, fn conn.ReceiveFunc) ([]byte, conn.Endpoint) {
	t.Helper()
	bufs := make([][]byte, batchSize)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	sizes := make([]int, batchSize)
	eps := make([]conn.Endpoint, batchSize)
	type res struct {
		n   int
		err error
	}
	done := make(chan res, 1)
	go func() {
		n, err := fn(bufs, sizes, eps)
		done <- res{n, err}
	}()
	select {
	case r := <-done:
		if r.err != nil || r.n < 1 {
			t.Fatalf("receive: n=%d err=%v", r.n, r.err)
		}
		return bufs[0][:sizes[0]], eps[0]
	case <-time.After(5 * time.Second):
		t.Fatal("receive timed out")
	}
	return nil, nil
}

func TestBindClassifiesAndTagsEndpoints(t *testing.T) {
	b, fns := openLoopback(t)
	peer := key(t)
	sender, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	dst := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(b.LocalPort())}
	src := sender.LocalAddr().(*net.UDPAddr).AddrPort()

	// STUN goes to the ICE side, junk nowhere, WireGuard to the device.
	stun := stunMsg(8)
	junk := []byte("hello, not a protocol we know")
	data := wgPacket(4, 64)
	data[20] = 0xAB
	for _, p := range [][]byte{stun, junk, data} {
		if _, err := sender.WriteTo(p, dst); err != nil {
			t.Fatal(err)
		}
	}
	got, ep := receive(t, fns[0])
	if !bytes.Equal(got, data) {
		t.Fatalf("device got %x, want the WireGuard packet", got)
	}
	if _, ok := ep.(addrEndpoint); !ok || ep.DstToString() != src.String() {
		t.Fatalf("unknown source should give a plain endpoint for %v, got %T %s", src, ep, ep.DstToString())
	}
	buf := make([]byte, 100)
	n, from, err := b.STUNConn().ReadFrom(buf)
	if err != nil || !bytes.Equal(buf[:n], stun) || from.String() != src.String() {
		t.Fatalf("STUN side got %x from %v (%v)", buf[:n], from, err)
	}

	// Once src is the peer's path, its packets carry the peer's endpoint.
	b.SetPath(peer, Path{Direct: src})
	if _, err := sender.WriteTo(data, dst); err != nil {
		t.Fatal(err)
	}
	_, ep = receive(t, fns[0])
	if pe, ok := ep.(*peerEndpoint); !ok || pe.key != peer {
		t.Fatalf("endpoint %T, want the peer's logical endpoint", ep)
	}
}

func TestBindHoldsUntilPathAndSwitches(t *testing.T) {
	b, _ := openLoopback(t)
	peer := key(t)
	ep, err := b.ParseEndpoint(b.EndpointFor(peer))
	if err != nil {
		t.Fatal(err)
	}
	rx1, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	rx2, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	defer rx1.Close()
	defer rx2.Close()

	// No path yet: held, not lost; more than maxPending keeps the newest.
	for i := 0; i < maxPending+2; i++ {
		p := wgPacket(4, 32)
		p[16] = byte(i)
		if err := b.Send([][]byte{p}, ep); err != nil {
			t.Fatal(err)
		}
	}
	b.SetPath(peer, Path{Direct: rx1.LocalAddr().(*net.UDPAddr).AddrPort()})
	buf := make([]byte, 100)
	_ = rx1.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i := 2; i < maxPending+2; i++ {
		n, _, err := rx1.ReadFrom(buf)
		if err != nil || n != 32 || buf[16] != byte(i) {
			t.Fatalf("held packet %d: n=%d marker=%d err=%v", i, n, buf[16], err)
		}
	}

	// A new path takes the next packet.
	b.SetPath(peer, Path{Direct: rx2.LocalAddr().(*net.UDPAddr).AddrPort()})
	if err := b.Send([][]byte{wgPacket(4, 48)}, ep); err != nil {
		t.Fatal(err)
	}
	_ = rx2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, _, err := rx2.ReadFrom(buf); err != nil || n != 48 {
		t.Fatalf("after switch: n=%d err=%v", n, err)
	}

	// A relay path gets each packet through its writer.
	var relay bytes.Buffer
	b.SetPath(peer, Path{Relay: &relay})
	if err := b.Send([][]byte{wgPacket(4, 40), wgPacket(4, 40)}, ep); err != nil {
		t.Fatal(err)
	}
	if relay.Len() != 80 {
		t.Fatalf("relay got %d bytes", relay.Len())
	}
}

func TestPassiveSideDropsHeldInitiation(t *testing.T) {
	b, _ := openLoopback(t)
	peer := key(t)
	b.SetPassive(peer, true)
	ep, _ := b.ParseEndpoint(b.EndpointFor(peer))
	_ = b.Send([][]byte{wgPacket(1, 148), wgPacket(4, 32)}, ep)
	rx, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	defer rx.Close()
	b.SetPath(peer, Path{Direct: rx.LocalAddr().(*net.UDPAddr).AddrPort()})
	buf := make([]byte, 200)
	_ = rx.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := rx.ReadFrom(buf)
	if err != nil || n != 32 {
		t.Fatalf("want only the data packet, got n=%d err=%v", n, err)
	}
}

func TestDeliverRelay(t *testing.T) {
	b, fns := openLoopback(t)
	peer := key(t)
	b.DeliverRelay(peer, []byte("not wireguard"))
	b.DeliverRelay(peer, wgPacket(4, 64))
	got, ep := receive(t, fns[1])
	if len(got) != 64 {
		t.Fatalf("relay receive got %d bytes", len(got))
	}
	if pe, ok := ep.(*peerEndpoint); !ok || pe.key != peer {
		t.Fatalf("relay packet endpoint %T", ep)
	}
}

func TestCloseEndsReceivers(t *testing.T) {
	b := NewBind(nil, BindOptions{ListenAddr: netip.MustParseAddr("127.0.0.1")})
	fns, _, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Open(0); !errors.Is(err, conn.ErrBindAlreadyOpen) {
		t.Fatalf("second Open: %v", err)
	}
	errs := make(chan error, len(fns))
	for _, fn := range fns {
		go func() {
			bufs, sizes, eps := [][]byte{make([]byte, 1500)}, []int{0}, []conn.Endpoint{nil}
			_, err := fn(bufs, sizes, eps)
			errs <- err
		}()
	}
	time.Sleep(20 * time.Millisecond)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	for range fns {
		select {
		case err := <-errs:
			if !errors.Is(err, net.ErrClosed) {
				t.Fatalf("receiver ended with %v, want net.ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("receiver did not end on Close")
		}
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	b.Shutdown()
	b.Shutdown()
	if _, _, err := b.STUNConn().ReadFrom(make([]byte, 10)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("STUN side after Shutdown: %v", err)
	}
}

func TestParseEndpointAndStats(t *testing.T) {
	b := NewBind(nil, BindOptions{})
	if _, err := b.ParseEndpoint("punchd-peer:zz"); err == nil {
		t.Fatal("bad hex accepted")
	}
	if ep, err := b.ParseEndpoint("198.18.0.1:51820"); err != nil || ep.DstToString() != "198.18.0.1:51820" {
		t.Fatalf("plain endpoint: %v %v", ep, err)
	}
	k := key(t)
	st, err := parseStats("private_key=00\npublic_key=" + k.Hex() + "\nrx_bytes=10\ntx_bytes=20\nlast_handshake_time_sec=1700000000\nlast_handshake_time_nsec=5\n")
	if err != nil || st[k].RxBytes != 10 || st[k].TxBytes != 20 || st[k].LastHandshake.Unix() != 1700000000 {
		t.Fatalf("stats %+v %v", st, err)
	}
	if _, err := parseStats("public_key=nothex\n"); err == nil || !strings.Contains(err.Error(), "bad public_key") {
		t.Fatalf("bad stats: %v", err)
	}
}
