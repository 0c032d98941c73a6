package relaychoice

import (
	"testing"
	"time"

	"github.com/punchd/punchd/internal/identity"
)

// fakeBind records what the chooser asks of the tunnel.
type fakeBind struct {
	via    map[identity.PublicKey]identity.PublicKey
	sets   int
	probes [][2]identity.PublicKey
}

func (b *fakeBind) Via(p identity.PublicKey) identity.PublicKey { return b.via[p] }
func (b *fakeBind) SetVia(p, v identity.PublicKey)              { b.via[p] = v; b.sets++ }
func (b *fakeBind) Probe(p, v identity.PublicKey) error {
	b.probes = append(b.probes, [2]identity.PublicKey{p, v})
	return nil
}

// A round takes the probe answers: a peer behind the relay is sent via
// the direct member that answers far faster, both paths are probed again,
// and once the peer is direct itself the member is dropped.
func TestRoundChoosesAndReports(t *testing.T) {
	far, member := mustKey(t), mustKey(t)
	none := identity.PublicKey{}
	b := &fakeBind{via: map[identity.PublicKey]identity.PublicKey{}}
	direct := map[identity.PublicKey]bool{member: true}
	type report struct {
		via     identity.PublicKey
		changed bool
	}
	got := map[identity.PublicKey]report{}
	c := New(Config{
		Bind: b,
		Peers: func() []Peer {
			return []Peer{{Key: far, Direct: direct[far]}, {Key: member, Direct: direct[member]}}
		},
		Chosen: func(p, v identity.PublicKey, _, _ time.Duration, changed bool) {
			got[p] = report{v, changed}
		},
	})
	c.OnProbe(far, none, 160*time.Millisecond)
	c.OnProbe(far, member, 10*time.Millisecond)
	c.round()
	if b.via[far] != member || got[far] != (report{member, true}) {
		t.Fatalf("after round 1: via %v, reported %+v; want the member, changed", b.via[far] == member, got[far])
	}
	if got[member] != (report{none, false}) {
		t.Fatalf("direct member reported %+v, want none, unchanged", got[member])
	}
	want := [][2]identity.PublicKey{{far, none}, {far, member}}
	if len(b.probes) != len(want) || b.probes[0] != want[0] || b.probes[1] != want[1] {
		t.Fatalf("probes %v, want the own path and via the member", b.probes)
	}
	direct[far] = true
	c.round()
	if b.via[far] != none || got[far] != (report{none, true}) || b.sets != 2 {
		t.Fatalf("after far went direct: via cleared %v, reported %+v, %d SetVia; want cleared, changed, 2", b.via[far] == none, got[far], b.sets)
	}
}

// The probe table is bounded whatever peers answer.
func TestProbeTableBound(t *testing.T) {
	c := New(Config{})
	for range maxProbeResults + 100 {
		c.OnProbe(mustKey(t), identity.PublicKey{}, time.Millisecond)
	}
	if len(c.results) != maxProbeResults {
		t.Fatalf("%d results kept, want %d", len(c.results), maxProbeResults)
	}
}
