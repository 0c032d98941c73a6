package turnserver

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/turn/v5"
)

func TestPeerFilter(t *testing.T) {
	relay := netip.MustParseAddr("198.18.0.2")
	own := []netip.Addr{relay, netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("192.0.43.7")}
	allow := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("198.18.0.0/15")}
	filter := peerFilter([]netip.Addr{relay}, own, allow, quietLogger())
	strict := peerFilter([]netip.Addr{relay}, own, nil, quietLogger())
	client := &net.UDPAddr{IP: net.IPv4(198, 18, 0, 3), Port: 4000}
	tests := []struct {
		peer        string
		want, wantS bool
	}{
		{"192.0.43.10", true, true},          // a global peer
		{"2001:4860::8888", true, true},      // a global IPv6 peer
		{"198.18.0.9", true, false},          // the lab's internet: only when allowed
		{"198.18.0.2", true, true},           // the relay address: relay to relay (ports guarded)
		{"10.0.0.5", false, false},           // another address of the server, even in no allowed range
		{"192.0.43.7", false, false},         // a global address of the server
		{"127.0.0.1", true, false},           // loopback: only when allowed
		{"192.168.1.10", false, false},       // private
		{"100.64.0.1", false, false},         // CGNAT
		{"169.254.169.254", false, false},    // link-local (cloud metadata)
		{"224.0.0.251", false, false},        // multicast
		{"0.0.0.0", false, false},            // unspecified
		{"::ffff:10.0.0.5", false, false},    // mapped form of an own address
		{"::ffff:192.168.1.1", false, false}, // mapped form of a private one
		{"fd00::1", false, false},            // ULA
	}
	for _, tt := range tests {
		ip := net.ParseIP(tt.peer)
		if got := filter(client, ip); got != tt.want {
			t.Errorf("with allow list: %s -> %v, want %v", tt.peer, got, tt.want)
		}
		if got := strict(client, ip); got != tt.wantS {
			t.Errorf("default: %s -> %v, want %v", tt.peer, got, tt.wantS)
		}
	}
}

type sink struct {
	net.PacketConn
	sent int
}

func (s *sink) WriteTo(p []byte, _ net.Addr) (int, error) { s.sent++; return len(p), nil }

func TestGuardedRelay(t *testing.T) {
	relay := netip.MustParseAddr("198.18.0.2")
	s := &sink{}
	g := &guardedRelay{PacketConn: s, self: relay}
	for _, tt := range []struct {
		to   string
		want error
	}{
		{"198.18.0.2:50000", nil},          // another relay allocation
		{"198.18.0.2:8478", errOwnService}, // the signaling port
		{"198.18.0.2:3478", errOwnService}, // the STUN/TURN port
		{"198.18.0.9:53", nil},             // a peer, any port
	} {
		_, err := g.WriteTo([]byte("x"), net.UDPAddrFromAddrPort(netip.MustParseAddrPort(tt.to)))
		if !errors.Is(err, tt.want) {
			t.Errorf("to %s: %v, want %v", tt.to, err, tt.want)
		}
	}
	if s.sent != 2 {
		t.Fatalf("%d packets passed, want 2", s.sent)
	}
}

func TestTURNNeedsRelayIP(t *testing.T) {
	_, err := ListenServer(ServerConfig{STUNListen: "127.0.0.1:0", TURNSecret: "x"})
	if err == nil || !strings.Contains(err.Error(), "--relay-ip") {
		t.Fatalf("want a --relay-ip hint, got %v", err)
	}
	_, err = ListenServer(ServerConfig{STUNListen: "127.0.0.1:0", TURNSecret: "x", RelayIP: netip.MustParseAddr("127.0.0.1"), TLSListen: "127.0.0.1:0"})
	if err == nil || !strings.Contains(err.Error(), "--tls-cert") {
		t.Fatalf("want a --tls-cert hint, got %v", err)
	}
	s, err := ListenServer(ServerConfig{STUNListen: "127.0.0.1:0", TURNSecret: "x", RelayIP: netip.MustParseAddr("127.0.0.1"), TCPListen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func allocateRelays(t *testing.T, g *relayGenerator, n int) []*guardedRelay {
	t.Helper()
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}
	var out []*guardedRelay
	for range n {
		c, _, err := g.AllocatePacketConn(turn.AllocateListenerConfig{Network: "udp4"})
		if err != nil {
			t.Fatal(err)
		}
		r := c.(*guardedRelay)
		t.Cleanup(func() { r.Close() })
		out = append(out, r)
	}
	return out
}

// readRelay reads one datagram from r, bounded.
func readRelay(t *testing.T, r *guardedRelay) ([]byte, net.Addr) {
	t.Helper()
	type res struct {
		b    []byte
		from net.Addr
		err  error
	}
	done := make(chan res, 1)
	go func() {
		buf := make([]byte, 2048)
		n, from, err := r.ReadFrom(buf)
		done <- res{buf[:n], from, err}
	}()
	select {
	case x := <-done:
		if x.err != nil {
			t.Fatalf("ReadFrom: %v", x.err)
		}
		return x.b, x.from
	case <-time.After(5 * time.Second):
		t.Fatal("ReadFrom never returned")
	}
	return nil, nil
}

// Relay to relay on one server skips the kernel; the receiving relay
// still reads datagrams from its socket, in either order, and a reader
// blocked on its socket wakes for a handed-over datagram.
func TestRelayToRelayHandOver(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	tests := []struct {
		name string
		run  func(t *testing.T, a, b *guardedRelay, outside *net.UDPConn)
	}{
		{"handed over, from the sender's relayed address", func(t *testing.T, a, b *guardedRelay, _ *net.UDPConn) {
			if n, err := a.WriteTo([]byte("a to b"), b.addr); err != nil || n != 6 {
				t.Fatalf("WriteTo: %d, %v", n, err)
			}
			got, from := readRelay(t, b)
			if string(got) != "a to b" || from.String() != a.addr.String() {
				t.Fatalf("got %q from %v", got, from)
			}
		}},
		{"socket datagrams still arrive", func(t *testing.T, _, b *guardedRelay, outside *net.UDPConn) {
			if _, err := outside.WriteTo([]byte("outside"), &net.UDPAddr{IP: lo.AsSlice(), Port: int(b.port)}); err != nil {
				t.Fatal(err)
			}
			if got, _ := readRelay(t, b); string(got) != "outside" {
				t.Fatalf("got %q", got)
			}
		}},
		{"blocked reader wakes, and reads the socket after", func(t *testing.T, a, b *guardedRelay, outside *net.UDPConn) {
			done := make(chan string, 2)
			go func() {
				buf := make([]byte, 64)
				for range 2 {
					n, _, err := b.ReadFrom(buf)
					if err != nil {
						done <- err.Error()
						return
					}
					done <- string(buf[:n])
				}
			}()
			time.Sleep(50 * time.Millisecond) // the reader sits in the socket read
			_, _ = a.WriteTo([]byte("wake"), b.addr)
			time.Sleep(50 * time.Millisecond) // and back in it
			_, _ = outside.WriteTo([]byte("then socket"), &net.UDPAddr{IP: lo.AsSlice(), Port: int(b.port)})
			for _, want := range []string{"wake", "then socket"} {
				select {
				case got := <-done:
					if got != want {
						t.Fatalf("got %q, want %q", got, want)
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("no %q", want)
				}
			}
		}},
		{"full queue drops, never blocks", func(t *testing.T, a, b *guardedRelay, _ *net.UDPConn) {
			done := make(chan struct{})
			go func() {
				for range relayQueue + 10 {
					_, _ = a.WriteTo([]byte("x"), b.addr)
				}
				close(done)
			}()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("WriteTo blocked on a full queue")
			}
			if len(*b.in.Load()) != relayQueue {
				t.Fatalf("queue holds %d, want %d", len(*b.in.Load()), relayQueue)
			}
		}},
		{"closed relay leaves the table", func(t *testing.T, a, b *guardedRelay, _ *net.UDPConn) {
			b.Close()
			if _, ok := (*a.gen.relays.Load())[b.key()]; ok {
				t.Fatal("closed relay still in the table")
			}
			if _, err := a.WriteTo([]byte("x"), b.addr); err != nil {
				t.Fatalf("WriteTo a closed relay's port goes to the kernel: %v", err)
			}
		}},
		{"own services still refused", func(t *testing.T, a, _ *guardedRelay, _ *net.UDPConn) {
			if _, err := a.WriteTo([]byte("x"), &net.UDPAddr{IP: lo.AsSlice(), Port: 3478}); !errors.Is(err, errOwnService) {
				t.Fatalf("to the STUN port: %v", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newRelayGenerator(lo, nil)
			rs := allocateRelays(t, g, 2)
			outside, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
			if err != nil {
				t.Fatal(err)
			}
			defer outside.Close()
			tt.run(t, rs[0], rs[1], outside)
		})
	}
}

// Relayed bytes are counted on both sides of the relay, for handed-over
// and kernel datagrams alike, and a closed relay's count is kept.
func TestRelayedBytesCounted(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	g := newRelayGenerator(lo, nil)
	rs := allocateRelays(t, g, 2)
	a, b := rs[0], rs[1]
	outside, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
	if err != nil {
		t.Fatal(err)
	}
	defer outside.Close()
	if _, err := a.WriteTo([]byte("0123456789"), b.addr); err != nil { // 10, handed over
		t.Fatal(err)
	}
	if got, _ := readRelay(t, b); len(got) != 10 {
		t.Fatalf("read %d bytes", len(got))
	}
	if _, err := a.WriteTo([]byte("abc"), outside.LocalAddr()); err != nil { // 3, through the kernel
		t.Fatal(err)
	}
	if _, err := outside.WriteTo([]byte("12345"), &net.UDPAddr{IP: lo.AsSlice(), Port: int(b.port)}); err != nil {
		t.Fatal(err)
	}
	if got, _ := readRelay(t, b); len(got) != 5 {
		t.Fatalf("read %d bytes", len(got))
	}
	want := RelayedBytes{ToPeers: 13, FromPeers: 15}
	if got := g.relayed(); got != want {
		t.Fatalf("relayed %+v, want %+v", got, want)
	}
	b.Close()
	b.Close()
	if got := g.relayed(); got != want {
		t.Fatalf("after close: relayed %+v, want %+v", got, want)
	}
}

// Handing over from many senders while the socket also delivers: every
// datagram arrives once (and the race detector has something to look at).
func TestRelayHandOverConcurrent(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	g := newRelayGenerator(lo, nil)
	rs := allocateRelays(t, g, 3)
	dst := rs[2]
	outside, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
	if err != nil {
		t.Fatal(err)
	}
	defer outside.Close()
	const each = 500
	go func() {
		for i := range each {
			_, _ = rs[0].WriteTo([]byte{0, byte(i), byte(i >> 8)}, dst.addr)
		}
	}()
	go func() {
		for i := range each {
			_, _ = rs[1].WriteTo([]byte{1, byte(i), byte(i >> 8)}, dst.addr)
		}
	}()
	go func() {
		for i := range each {
			_, _ = outside.WriteTo([]byte{2, byte(i), byte(i >> 8)}, &net.UDPAddr{IP: lo.AsSlice(), Port: int(dst.port)})
			if i%50 == 0 {
				time.Sleep(time.Millisecond) // let the socket reader block now and then
			}
		}
	}()
	seen := map[[3]byte]bool{}
	buf := make([]byte, 64)
	deadline := time.Now().Add(10 * time.Second)
	for len(seen) < 3*each && time.Now().Before(deadline) {
		n, _, err := dst.ReadFrom(buf)
		if err != nil || n != 3 {
			t.Fatalf("ReadFrom: %d, %v", n, err)
		}
		k := [3]byte(buf[:3])
		if seen[k] {
			t.Fatalf("datagram %v twice", k)
		}
		seen[k] = true
	}
	if len(seen) != 3*each {
		t.Fatalf("%d of %d datagrams", len(seen), 3*each)
	}
}
