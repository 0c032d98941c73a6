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
	tests := []struct {
		name string
		rep  *nat.Report
		want string
	}{
		{"not probed yet", nil, "still being probed"},
		{"symmetric here", &nat.Report{NATType: nat.TypeSymmetric, Mapping: nat.AddressAndPortDependent}, "this host's NAT is symmetric (address-and-port-dependent mapping)"},
		{"UDP blocked here", &nat.Report{NATType: nat.TypeUDPBlocked, UDPBlocked: true}, "UDP is blocked here"},
		{"easy NAT here", &nat.Report{NATType: nat.TypeFullCone}, "the peer's side"},
		{"unknown", &nat.Report{NATType: nat.TypeUnknown, Error: "server does not support RFC 5780"}, "unknown: server does not support RFC 5780"},
	}
	for _, tt := range tests {
		got := relayReason("198.18.0.2:50000", tt.rep)
		if !strings.HasPrefix(got, "relayed via 198.18.0.2:50000: ") || !strings.Contains(got, tt.want) {
			t.Errorf("%s: reason %q, want it to say %q", tt.name, got, tt.want)
		}
	}
}
