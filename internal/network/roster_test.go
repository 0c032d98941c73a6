package network

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/punchd/punchd/internal/identity"
)

func TestRosterApply(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	self := testKey(0)
	addr := []netip.Addr{netip.MustParseAddr("10.188.0.2")}
	steps := []struct {
		name    string
		a       Announcement
		change  Change
		err     error
		members int
	}{
		{"first of bob", Announcement{Key: testKey(2), Name: "bob", Time: t0, Addrs: addr}, Added, nil, 1},
		{"refresh", Announcement{Key: testKey(2), Name: "bob", Time: t0.Add(time.Minute), Addrs: addr}, Unchanged, nil, 1},
		{"replayed", Announcement{Key: testKey(2), Name: "bob", Time: t0.Add(time.Minute), Addrs: addr}, Unchanged, ErrReplay, 1},
		{"older", Announcement{Key: testKey(2), Name: "mallory", Time: t0, Addrs: addr}, Unchanged, ErrReplay, 1},
		{"renamed", Announcement{Key: testKey(2), Name: "bobby", Time: t0.Add(2 * time.Minute), Addrs: addr}, Updated, nil, 1},
		{"self", Announcement{Key: self, Name: "me", Time: t0}, Unchanged, ErrSelf, 1},
		{"carol", Announcement{Key: testKey(3), Name: "carol", Time: t0}, Added, nil, 2},
	}
	r := NewRoster(self)
	for _, s := range steps {
		ch, err := r.Apply(s.a, t0)
		if ch != s.change || !errors.Is(err, s.err) || r.Len() != s.members {
			t.Fatalf("%s: Apply = %v, %v with %d members; want %v, %v with %d", s.name, ch, err, r.Len(), s.change, s.err, s.members)
		}
	}
	if m, _ := r.Get(testKey(2)); m.Name != "bobby" {
		t.Fatalf("bob's name %q, want bobby", m.Name)
	}
}

func TestRosterBound(t *testing.T) {
	r := NewRoster(testKey(0))
	now := time.Now()
	for i := range MaxMembers + 1 {
		var k identity.PublicKey
		k[0], k[1] = byte(i), byte(i>>8)
		k[2] = 1
		_, err := r.Apply(Announcement{Key: k, Name: "m", Time: now}, now)
		if i < MaxMembers && err != nil || i == MaxMembers && !errors.Is(err, ErrFull) {
			t.Fatalf("member %d: %v", i, err)
		}
	}
}

func TestRosterExpire(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	r := NewRoster(testKey(0))
	for i, heard := range []time.Duration{0, 4 * time.Minute, 0} {
		if _, err := r.Apply(Announcement{Key: testKey(byte(i + 1)), Name: "m", Time: t0}, t0.Add(heard)); err != nil {
			t.Fatal(err)
		}
	}
	keep := func(k identity.PublicKey) bool { return k == testKey(3) } // its tunnel answers
	gone := r.Expire(t0.Add(5*time.Minute+time.Second), 5*time.Minute, keep)
	if len(gone) != 1 || gone[0] != testKey(1) || r.Len() != 2 {
		t.Fatalf("Expire removed %v, %d left; want only member 1, 2 left", gone, r.Len())
	}
}
