package daemon

import (
	"testing"
	"time"

	"github.com/punchd/punchd/internal/identity"
)

func TestChooseVia(t *testing.T) {
	ms := time.Millisecond
	a, b := &peerState{key: mustKey(t), name: "a"}, &peerState{key: mustKey(t), name: "b"}
	none := identity.PublicKey{}
	tests := []struct {
		name  string
		own   time.Duration // 0: the TURN relay path does not answer
		cands []viaCandidate
		cur   identity.PublicKey
		want  *peerState
	}{
		// The case: rendezvous 80 ms away (160 ms through its
		// relay), a member 5 ms away from both.
		{"member beats a far relay", 160 * ms, []viaCandidate{{a, 10 * ms}}, none, a},
		{"the fastest member", 160 * ms, []viaCandidate{{a, 30 * ms}, {b, 10 * ms}}, none, b},
		{"no relay path at all", 0, []viaCandidate{{a, 50 * ms}}, none, a},
		{"no member answers", 160 * ms, nil, none, nil},
		{"a near relay stays", 10 * ms, []viaCandidate{{a, 9 * ms}}, none, nil},       // not 20% better
		{"in use: kept while better", 10 * ms, []viaCandidate{{a, 9 * ms}}, a.key, a}, // hysteresis
		{"in use: dropped once worse", 10 * ms, []viaCandidate{{a, 11 * ms}}, a.key, nil},
		{"equal to the relay", 10 * ms, []viaCandidate{{a, 10 * ms}}, none, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := chooseVia(tt.own, tt.cands, tt.cur)
			if got != tt.want {
				name := func(p *peerState) string {
					if p == nil {
						return "none"
					}
					return p.name
				}
				t.Fatalf("chooseVia = %s, want %s", name(got), name(tt.want))
			}
		})
	}
}
