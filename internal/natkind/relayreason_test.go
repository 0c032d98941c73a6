package natkind

import (
	"strings"
	"testing"
)

func TestRelayReason(t *testing.T) {
	sym := &Local{Type: TypeSymmetric, Mapping: AddressAndPortDependent}
	tests := []struct {
		name   string
		local  *Local
		remote NATType
		want   string
	}{
		{"not probed yet", nil, "", "still being probed"},
		{"symmetric here, peer unknown", sym, "", "this host's NAT is symmetric (address-and-port-dependent mapping)"},
		{"symmetric meets port-restricted", sym, TypePortRestricted, "no direct path exists between this host's symmetric NAT and the peer's port-restricted NAT"},
		{"should have been direct", sym, TypeFullCone, "usually allow one"},
		{"UDP blocked here", &Local{Type: TypeUDPBlocked, UDPBlocked: true}, TypeFullCone, "UDP is blocked here"},
		{"UDP blocked there", &Local{Type: TypeFullCone}, TypeUDPBlocked, "the peer has no UDP"},
		{"easy NAT here, peer unknown", &Local{Type: TypeFullCone}, "", "the peer's side"},
		{"unknown", &Local{Type: TypeUnknown, Error: "server does not support RFC 5780"}, TypeUnknown, "unknown: server does not support RFC 5780"},
	}
	for _, tt := range tests {
		got := RelayReason("198.18.0.2:50000", tt.local, tt.remote)
		if !strings.HasPrefix(got, "relayed via 198.18.0.2:50000: ") || !strings.Contains(got, tt.want) {
			t.Errorf("%s: reason %q, want it to say %q", tt.name, got, tt.want)
		}
	}
}
