package daemon

import (
	"strings"
	"testing"

	"github.com/punchd/punchd/internal/nat"
)

func TestSTUNServer(t *testing.T) {
	tests := []struct {
		urls []string
		want string
	}{
		{[]string{"turn:r:3478?transport=udp", "stun:198.18.0.2:3478"}, "198.18.0.2:3478"},
		{[]string{"stun:r.example"}, "r.example:3478"},
		{[]string{"stun:[2001:db8::1]:3479"}, "[2001:db8::1]:3479"},
		{[]string{"stun:[2001:db8::1]"}, "[2001:db8::1]:3478"},
		{[]string{"turns:r:5349"}, ""},
		{nil, ""},
	}
	for _, tt := range tests {
		if got := stunServer(tt.urls); got != tt.want {
			t.Errorf("stunServer(%q) = %q, want %q", tt.urls, got, tt.want)
		}
	}
}

func TestRelayReason(t *testing.T) {
	sym := &nat.Report{NATType: nat.TypeSymmetric, Mapping: nat.AddressAndPortDependent}
	tests := []struct {
		name   string
		local  *nat.Report
		remote nat.NATType
		want   string
	}{
		{"not probed yet", nil, "", "still being probed"},
		{"symmetric here, peer unknown", sym, "", "this host's NAT is symmetric (address-and-port-dependent mapping)"},
		{"symmetric meets port-restricted", sym, nat.TypePortRestricted, "no direct path exists between this host's symmetric NAT and the peer's port-restricted NAT"},
		{"should have been direct", sym, nat.TypeFullCone, "usually allow one"},
		{"UDP blocked here", &nat.Report{NATType: nat.TypeUDPBlocked, UDPBlocked: true}, nat.TypeFullCone, "UDP is blocked here"},
		{"UDP blocked there", &nat.Report{NATType: nat.TypeFullCone}, nat.TypeUDPBlocked, "the peer has no UDP"},
		{"easy NAT here, peer unknown", &nat.Report{NATType: nat.TypeFullCone}, "", "the peer's side"},
		{"unknown", &nat.Report{NATType: nat.TypeUnknown, Error: "server does not support RFC 5780"}, nat.TypeUnknown, "unknown: server does not support RFC 5780"},
	}
	for _, tt := range tests {
		got := relayReason("198.18.0.2:50000", tt.local, tt.remote)
		if !strings.HasPrefix(got, "relayed via 198.18.0.2:50000: ") || !strings.Contains(got, tt.want) {
			t.Errorf("%s: reason %q, want it to say %q", tt.name, got, tt.want)
		}
	}
}
