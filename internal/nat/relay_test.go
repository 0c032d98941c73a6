package nat

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
)

func TestPeerFilter(t *testing.T) {
	relay := netip.MustParseAddr("198.18.0.2")
	own := []netip.Addr{relay, netip.MustParseAddr("10.0.0.5")}
	allow := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	filter := peerFilter(relay, own, allow, nil)
	strict := peerFilter(relay, own, nil, nil)
	client := &net.UDPAddr{IP: net.IPv4(198, 18, 0, 3), Port: 4000}
	tests := []struct {
		peer        string
		want, wantS bool
	}{
		{"198.18.0.9", true, true},        // an ordinary peer
		{"198.18.0.2", true, true},        // the relay address: relay to relay (ports guarded)
		{"10.0.0.5", false, false},        // another address of the server
		{"127.0.0.1", true, false},        // loopback: only when allowed
		{"169.254.1.1", false, false},     // link-local
		{"224.0.0.251", false, false},     // multicast
		{"0.0.0.0", false, false},         // unspecified
		{"::ffff:10.0.0.5", false, false}, // mapped form of an own address
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
