package relaychoice

import (
	"testing"
	"time"

	"github.com/punchd/punchd/internal/identity"
)

func TestChooseVia(t *testing.T) {
	ms := time.Millisecond
	a, b := mustKey(t), mustKey(t)
	none := identity.PublicKey{}
	tests := []struct {
		name  string
		own   time.Duration // 0: the TURN relay path does not answer
		cands []Candidate
		cur   identity.PublicKey
		want  identity.PublicKey
	}{
		// The case: rendezvous 80 ms away (160 ms through its
		// relay), a member 5 ms away from both.
		{"member beats a far relay", 160 * ms, []Candidate{{a, 10 * ms}}, none, a},
		{"the fastest member", 160 * ms, []Candidate{{a, 30 * ms}, {b, 10 * ms}}, none, b},
		{"no relay path at all", 0, []Candidate{{a, 50 * ms}}, none, a},
		{"no member answers", 160 * ms, nil, none, none},
		{"a near relay stays", 10 * ms, []Candidate{{a, 9 * ms}}, none, none},  // not 20% better
		{"in use: kept while better", 10 * ms, []Candidate{{a, 9 * ms}}, a, a}, // hysteresis
		{"in use: dropped once worse", 10 * ms, []Candidate{{a, 11 * ms}}, a, none},
		{"equal to the relay", 10 * ms, []Candidate{{a, 10 * ms}}, none, none},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := Choose(tt.own, tt.cands, tt.cur)
			if got != tt.want {
				name := func(k identity.PublicKey) string {
					switch k {
					case a:
						return "a"
					case b:
						return "b"
					}
					return "none"
				}
				t.Fatalf("Choose = %s, want %s", name(got), name(tt.want))
			}
		})
	}
}

func mustKey(t *testing.T) identity.PublicKey {
	t.Helper()
	k, err := identity.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey()
}
