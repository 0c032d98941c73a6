package turnserver

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
)

// REQUESTED-ADDRESS-FAMILY (RFC 6156) as pion's client encodes it.
const (
	familyIPv4 = turn.RequestedAddressFamilyIPv4
	familyIPv6 = turn.RequestedAddressFamilyIPv6
)

// v6Server is a guard server with a second socket on [::1] and, with
// relay6, IPv6 relays there.
func v6Server(t *testing.T, relay6 bool, cfg ServerConfig) *Server {
	t.Helper()
	cfg.STUNListen6 = "[::1]:0"
	if relay6 {
		cfg.RelayIP6 = netip.MustParseAddr("::1")
	}
	return guardServer(t, cfg)
}

// Over the IPv6 socket a client gets an IPv4 relay unless it asks for
// IPv6 (RFC 6156's default, so that punchd peers' relay candidates pair
// whatever family each reached the server over), and an IPv6 one only
// where an IPv6 relay address is configured.
func TestRelayFamilies(t *testing.T) {
	for _, tt := range []struct {
		name   string
		over   string // the server socket the client uses: "udp4" or "udp6"
		relay6 bool
		ask    turn.RequestedAddressFamily // 0: no REQUESTED-ADDRESS-FAMILY
		code   int
		want   string // relayed IP on success
	}{
		{"IPv6 client, no family asked", "udp6", false, 0, 0, "127.0.0.1"},
		{"IPv6 client asks IPv4", "udp6", true, familyIPv4, 0, "127.0.0.1"},
		{"IPv6 client asks IPv6", "udp6", true, familyIPv6, 0, "::1"},
		{"IPv4 client asks IPv6", "udp4", true, familyIPv6, 0, "::1"},
		{"IPv6 relay not configured", "udp6", false, familyIPv6, int(stun.CodeInsufficientCapacity), ""},
		{"IPv4 client, no family asked", "udp4", true, 0, 0, "127.0.0.1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := v6Server(t, tt.relay6, ServerConfig{})
			addr := s.Addr().String()
			if tt.over == "udp6" {
				addr = s.Addr6().String()
			}
			c := dialRaw(t, "udp", addr, "peer")
			attrs := []stun.Setter{udpTransport}
			if tt.ask != 0 {
				attrs = append(attrs, tt.ask)
			}
			code, resp := c.requestAnswer(stun.MethodAllocate, attrs...)
			if code != tt.code {
				t.Fatalf("allocate: code %d, want %d", code, tt.code)
			}
			if tt.code != 0 {
				return
			}
			var relayed stun.XORMappedAddress
			if err := relayed.GetFromAs(resp, stun.AttrXORRelayedAddress); err != nil {
				t.Fatalf("no XOR-RELAYED-ADDRESS: %v", err)
			}
			if got, _ := netip.AddrFromSlice(relayed.IP); got.Unmap().String() != tt.want {
				t.Fatalf("relayed address %s, want %s", relayed.IP, tt.want)
			}
			if relayed.Port < relayMinPort {
				t.Fatalf("relayed port %d below the relay range", relayed.Port)
			}
		})
	}
}

// The IPv6 socket answers Binding requests with the client's IPv6
// address, and its allocations count against the same per-IP (/64) quota.
func TestIPv6SocketBindingAndQuota(t *testing.T) {
	s := v6Server(t, false, ServerConfig{UserQuota: testUserQuota, IPQuota: 2})
	c := dialRaw(t, "udp", s.Addr6().String(), "binder")
	resp := c.roundTrip(stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint), 2*time.Second)
	if resp == nil {
		t.Fatal("no Binding answer on the IPv6 socket")
	}
	var mapped stun.XORMappedAddress
	if err := mapped.GetFrom(resp); err != nil {
		t.Fatal(err)
	}
	local := c.c.LocalAddr().(*net.UDPAddr)
	if !mapped.IP.Equal(local.IP) || mapped.Port != local.Port {
		t.Fatalf("XOR-MAPPED-ADDRESS %s, want %s", mapped, local)
	}
	for i := range 3 {
		code := dialRaw(t, "udp", s.Addr6().String(), "user-"+string(rune('a'+i))).allocate(udpTransport)
		want := 0
		if i == 2 {
			want = int(stun.CodeAllocQuotaReached)
		}
		if code != want {
			t.Fatalf("allocation %d from ::1: code %d, want %d", i+1, code, want)
		}
	}
}

// An IPv6 relay is guarded as an IPv4 one: toward the server's own IPv6
// address only the relay port range, and peers in non-global IPv6 ranges
// are refused.
func TestIPv6RelayGuard(t *testing.T) {
	self6 := netip.MustParseAddr("::1")
	g := newRelayGenerator(netip.MustParseAddr("127.0.0.1"), quietLogger())
	g.addIPv6(self6)
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}
	conn, addr, err := g.AllocatePacketConn(turn.AllocateListenerConfig{Network: "udp6"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if ip := addr.(*net.UDPAddr).IP; !ip.Equal(self6.AsSlice()) {
		t.Fatalf("IPv6 relay announced at %s, want ::1", ip)
	}
	if _, err := conn.WriteTo([]byte("x"), &net.UDPAddr{IP: self6.AsSlice(), Port: 53}); !errors.Is(err, errOwnService) {
		t.Fatalf("write to [::1]:53 from an IPv6 relay: %v, want errOwnService", err)
	}
	filter := peerFilter([]netip.Addr{netip.MustParseAddr("127.0.0.1"), self6}, nil, nil, quietLogger())
	for _, tt := range []struct {
		peer string
		want bool
	}{
		{"::1", true}, // the relay address itself: relay to relay
		{"fd00::1", false},
		{"fe80::1", false},
		{"2001:db8::1", false},
		{"2606:4700::1111", true},
	} {
		if got := filter(&net.UDPAddr{IP: net.IPv6loopback, Port: 1}, net.ParseIP(tt.peer)); got != tt.want {
			t.Errorf("permission for %s: %v, want %v", tt.peer, got, tt.want)
		}
	}
	// Without an IPv6 relay address, IPv6 relays are refused.
	if _, _, err := newRelayGenerator(netip.MustParseAddr("127.0.0.1"), quietLogger()).AllocatePacketConn(turn.AllocateListenerConfig{Network: "udp6"}); !errors.Is(err, errNoIPv6Relay) {
		t.Fatalf("IPv6 relay without --relay-ip6: %v, want errNoIPv6Relay", err)
	}
}
