package daemon

import (
	"net/netip"
	"strings"
	"testing"
)

func TestRFC5780Plan(t *testing.T) {
	alt := netip.MustParseAddr("198.18.0.3")
	tests := []struct {
		name       string
		cfg        RendezvousConfig
		listen     string
		alt, error string
	}{
		{"off", RendezvousConfig{STUNListen: ":3478"}, ":3478", "", ""},
		{"given, one address", RendezvousConfig{STUNListen: "198.18.0.2:3478", STUNAltIP: alt}, "198.18.0.2:3478", "198.18.0.3", ""},
		// Answers must leave from the address they name: the wildcard
		// becomes the relay address.
		{"given, wildcard", RendezvousConfig{STUNListen: ":3478", STUNAltIP: alt, RelayIP: netip.MustParseAddr("198.18.0.2")}, "198.18.0.2:3478", "198.18.0.3", ""},
		// Auto with nothing to find (loopback is not global): unchanged.
		{"auto, nothing found", RendezvousConfig{STUNListen: "127.0.0.1:3478", STUNAltAuto: true}, "127.0.0.1:3478", "", ""},
		{"bad listen", RendezvousConfig{STUNListen: "3478", STUNAltIP: alt}, "", "", "--stun-listen"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			listen, got, err := rfc5780Plan(tt.cfg)
			if tt.error != "" {
				if err == nil || !strings.Contains(err.Error(), tt.error) {
					t.Fatalf("error %v, want one naming %s", err, tt.error)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if listen != tt.listen || (tt.alt == "" && got.IsValid()) || (tt.alt != "" && got.String() != tt.alt) {
				t.Fatalf("plan %q %v, want %q %q", listen, got, tt.listen, tt.alt)
			}
		})
	}
}

// Signaling and TURN over TLS share one listener exactly when their
// addresses would collide on bind.
func TestSameListen(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{":443", ":443", true},
		{"198.18.0.1:443", "198.18.0.1:443", true},
		{":443", "198.18.0.1:443", true},
		{"0.0.0.0:443", "198.18.0.1:443", true},
		{"[::]:443", "198.18.0.1:443", true},
		{"198.18.0.1:443", "198.18.0.2:443", false},
		{":443", ":5349", false},
		{":443", "", false},
		{":0", ":0", false}, // two ephemeral ports never collide
		{"bad", ":443", false},
	}
	for _, tt := range tests {
		if got := sameListen(tt.a, tt.b); got != tt.want {
			t.Errorf("sameListen(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

// Where the rendezvous serves STUN/TURN over IPv6 beside its IPv4 listen
// address: nothing more for a dual-stack wildcard, a second listener for
// an IPv4 address meant for the world (or when IPv6 was asked for), and
// no IPv6 at all for loopback or a LAN address unless asked.
func TestSecondListen6(t *testing.T) {
	ip6 := netip.MustParseAddr("2001:db8::10")
	for _, tt := range []struct {
		listen   string
		explicit bool
		want     string
		ok       bool
	}{
		{":3478", false, "", true},
		{"[::]:3478", false, "", true},
		{"0.0.0.0:3478", false, "[2001:db8::10]:3478", true},
		{"203.0.113.10:3478", false, "[2001:db8::10]:3478", true},
		{"198.18.0.2:3478", false, "[2001:db8::10]:3478", true},
		{"127.0.0.1:3478", false, "", false},
		{"192.168.1.2:3478", false, "", false},
		{"192.168.1.2:3478", true, "[2001:db8::10]:3478", true},
		{"[2001:db8::20]:3478", false, "", false},
		{"nonsense", false, "", false},
	} {
		got, ok := secondListen6(tt.listen, ip6, tt.explicit)
		if got != tt.want || ok != tt.ok {
			t.Errorf("secondListen6(%q, explicit %v) = %q, %v; want %q, %v", tt.listen, tt.explicit, got, ok, tt.want, tt.ok)
		}
	}
}
