package icepeer

import (
	"net/netip"
	"testing"

	"github.com/pion/ice/v4"
)

// The names are `punchd status`'s JSON contract; this table is written out
// by hand so that a renamed constant cannot change them unnoticed.
func TestStateNames(t *testing.T) {
	for s, want := range map[State]string{
		StateNew: "new", StateWaiting: "waiting", StateChecking: "checking", StateConnected: "connected",
		StateDisconnected: "disconnected", StateFailed: "failed", State(200): "state(200)",
	} {
		if got := s.String(); got != want {
			t.Errorf("State(%d) = %q, want %q", uint8(s), got, want)
		}
	}
}

func TestPathKind(t *testing.T) {
	addr := netip.MustParseAddrPort("198.18.0.2:50000")
	relay := Candidate{Type: ice.CandidateTypeRelay, Addr: netip.MustParseAddrPort("198.18.0.9:49152")}
	host := Candidate{Type: ice.CandidateTypeHost, Addr: addr}
	tests := []struct {
		name string
		path Path
		want string
	}{
		{"none", Path{}, "none"},
		{"direct", Path{Direct: addr, Local: host, Remote: host}, "direct"},
		// The peer holds the allocation: we send straight to it, but a
		// relay carries the traffic.
		{"peer's relay", Path{Direct: relay.Addr, Local: host, Remote: relay}, "relay"},
		{"our relay", Path{Local: relay, Remote: host}, "relay"},
	}
	for _, tt := range tests {
		if got := tt.path.Kind().String(); got != tt.want {
			t.Errorf("%s: kind %q, want %q", tt.name, got, tt.want)
		}
	}
	if got := (Path{Local: relay, Remote: host}).RelayAddr(); got != relay.Addr {
		t.Errorf("our relay: RelayAddr %s, want %s", got, relay.Addr)
	}
	if got := (Path{Local: host, Remote: relay}).RelayAddr(); got != relay.Addr {
		t.Errorf("peer's relay: RelayAddr %s, want %s", got, relay.Addr)
	}
}
