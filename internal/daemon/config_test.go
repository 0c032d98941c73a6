package daemon

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/punchd/punchd/internal/identity"
)

func mustKey(t *testing.T) identity.PublicKey {
	t.Helper()
	k, err := identity.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey()
}

func TestPlanOverlay(t *testing.T) {
	self, a, b := mustKey(t), mustKey(t), mustKey(t)
	v4 := netip.MustParsePrefix("10.188.0.0/16")
	v6 := netip.MustParsePrefix("fd50:756e:6368::/48")
	tests := []struct {
		name     string
		peers    []Peer
		prefixes []netip.Prefix
		wantErr  string
	}{
		{"two peers dual stack", []Peer{{Key: a}, {Key: b}}, []netip.Prefix{v4, v6}, ""},
		{"v4 only", []Peer{{Key: a}}, []netip.Prefix{v4}, ""},
		{"no prefix", []Peer{{Key: a}}, nil, "no overlay prefix"},
		{"self as peer", []Peer{{Key: self}}, []netip.Prefix{v4}, "own ID"},
		{"duplicate peer", []Peer{{Key: a}, {Key: a}}, []netip.Prefix{v4}, "twice"},
		// A /30 has two usable addresses: three hosts must collide.
		{"collision in tiny prefix", []Peer{{Key: a}, {Key: b}}, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/30")}, "collides"},
		{"prefix too small", []Peer{{Key: a}}, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/31")}, "10.0.0.0/31"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan, _, err := planOverlay(self, tt.peers, tt.prefixes)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("want error containing %q, got %v", tt.wantErr, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(plan.self) != len(tt.prefixes) {
				t.Fatalf("self addresses: %v", plan.self)
			}
			for i, p := range plan.self {
				if p.Bits() != tt.prefixes[i].Bits() || !tt.prefixes[i].Contains(p.Addr()) {
					t.Errorf("self address %v not in %v with its length", p, tt.prefixes[i])
				}
			}
			for _, p := range tt.peers {
				for _, r := range plan.peers[p.Key] {
					if !r.IsSingleIP() {
						t.Errorf("peer route %v is not a host route", r)
					}
				}
			}
		})
	}
}
