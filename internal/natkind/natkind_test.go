package natkind

import (
	"strings"
	"testing"
)

func TestClassify(t *testing.T) {
	E, A, AP, U := EndpointIndependent, AddressDependent, AddressAndPortDependent, BehaviourUnknown
	tests := []struct {
		nat                bool
		mapping, filtering Behaviour
		want               NATType
		classic            string
	}{
		{false, E, E, TypeOpen, "open internet"},
		{false, E, A, TypeRestricted, "firewall"},
		{false, E, AP, TypePortRestricted, "firewall"},
		{true, E, E, TypeFullCone, "full cone NAT"},
		{true, E, A, TypeRestricted, "restricted cone NAT"},
		{true, E, AP, TypePortRestricted, "port-restricted cone NAT"},
		{true, A, AP, TypeSymmetric, "symmetric NAT"},
		{true, AP, AP, TypeSymmetric, "symmetric NAT"},
		{true, AP, E, TypeSymmetric, "symmetric NAT"}, // rare, but the mapping decides
		{true, U, E, TypeUnknown, "unknown"},
		{true, E, U, TypeUnknown, "unknown"},
	}
	for _, tt := range tests {
		got, classic := Classify(tt.nat, tt.mapping, tt.filtering)
		if got != tt.want || !strings.Contains(classic, tt.classic) {
			t.Errorf("Classify(nat=%v, %s, %s) = %s %q, want %s %q", tt.nat, tt.mapping, tt.filtering, got, classic, tt.want, tt.classic)
		}
	}
}

func TestAdvice(t *testing.T) {
	tests := []struct {
		t    NATType
		want []string
	}{
		{TypeOpen, []string{"direct with every peer"}},
		{TypeFullCone, []string{"direct with every peer", "symmetric"}},
		{TypeRestricted, []string{"direct with every peer", "symmetric"}},
		{TypePortRestricted, []string{"direct with most peers; with a peer behind a symmetric NAT punchd tries birthday punching"}},
		{TypeSymmetric, []string{"with a port-restricted peer punchd tries birthday punching", "open, full-cone or restricted",
			"another symmetric NAT needs the relay unless one of the routers offers port mapping"}},
		{TypeUDPBlocked, []string{"only relay", "TCP or TLS"}},
		{TypeUnknown, []string{"unknown"}},
	}
	for _, tt := range tests {
		got := Advice(tt.t)
		for _, w := range tt.want {
			if !strings.Contains(got, w) {
				t.Errorf("Advice(%s) = %q, lacks %q", tt.t, got, w)
			}
		}
	}
}

func TestNeedsRelay(t *testing.T) {
	relay := map[[2]NATType]bool{
		{TypeSymmetric, TypePortRestricted}: true,
		{TypeSymmetric, TypeSymmetric}:      true,
	}
	for _, a := range NATTypes() {
		for _, b := range NATTypes() {
			want := relay[[2]NATType{a, b}] || relay[[2]NATType{b, a}] || a == TypeUDPBlocked || b == TypeUDPBlocked
			if got := NeedsRelay(a, b); got != want {
				t.Errorf("NeedsRelay(%s, %s) = %v, want %v", a, b, got, want)
			}
		}
	}
}

func TestBirthday(t *testing.T) {
	for _, a := range NATTypes() {
		for _, b := range NATTypes() {
			want := a == TypeSymmetric && b == TypePortRestricted || a == TypePortRestricted && b == TypeSymmetric
			if got := Birthday(a, b); got != want {
				t.Errorf("Birthday(%s, %s) = %v, want %v", a, b, got, want)
			}
		}
	}
}
