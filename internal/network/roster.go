package network

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/punchd/punchd/internal/identity"
)

// MaxMembers bounds a roster (and a topic at the rendezvous).
const MaxMembers = 256

// Member is what the roster knows of one other member.
type Member struct {
	Key   identity.PublicKey
	Name  string
	Addrs []netip.Addr
	// Announced is the newest announcement's own timestamp; Heard is
	// when it arrived here.
	Announced, Heard time.Time
}

// Change says what an announcement did to the roster.
type Change int

const (
	Unchanged Change = iota // a refresh of what was known
	Added                   // a member not in the roster before
	Updated                 // a known member with another name or addresses
)

func (c Change) String() string {
	switch c {
	case Unchanged:
		return "unchanged"
	case Added:
		return "added"
	case Updated:
		return "updated"
	}
	return fmt.Sprintf("Change(%d)", int(c))
}

// Roster errors.
var (
	ErrReplay = errors.New("announcement not newer than the last one of that member")
	ErrFull   = errors.New("roster full")
	ErrSelf   = errors.New("announcement of this host itself")
)

// Roster is the members one daemon knows; safe for concurrent use.
type Roster struct {
	self identity.PublicKey

	mu      sync.Mutex
	members map[identity.PublicKey]*Member
}

// NewRoster returns an empty roster for the member self.
func NewRoster(self identity.PublicKey) *Roster {
	return &Roster{self: self, members: make(map[identity.PublicKey]*Member)}
}

// Apply records an opened announcement heard at now.
func (r *Roster) Apply(a Announcement, now time.Time) (Change, error) {
	if a.Key == r.self {
		return Unchanged, ErrSelf
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := r.members[a.Key]
	if !ok {
		if len(r.members) >= MaxMembers {
			return Unchanged, fmt.Errorf("%w: %d members", ErrFull, MaxMembers)
		}
		r.members[a.Key] = &Member{Key: a.Key, Name: a.Name, Addrs: slices.Clone(a.Addrs), Announced: a.Time, Heard: now}
		return Added, nil
	}
	if !a.Time.After(m.Announced) {
		return Unchanged, ErrReplay
	}
	change := Unchanged
	if m.Name != a.Name || !slices.Equal(m.Addrs, a.Addrs) {
		change = Updated
	}
	m.Name, m.Addrs, m.Announced, m.Heard = a.Name, slices.Clone(a.Addrs), a.Time, now
	return change, nil
}

// Get returns a copy of one member.
func (r *Roster) Get(key identity.PublicKey) (Member, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := r.members[key]
	if !ok {
		return Member{}, false
	}
	out := *m
	out.Addrs = slices.Clone(m.Addrs)
	return out, true
}

// Remove forgets a member.
func (r *Roster) Remove(key identity.PublicKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.members, key)
}

// Expire removes members not heard for longer than ttl, except those keep
// says to keep (a member whose tunnel still answers), and returns them.
func (r *Roster) Expire(now time.Time, ttl time.Duration, keep func(identity.PublicKey) bool) []identity.PublicKey {
	r.mu.Lock()
	defer r.mu.Unlock()
	var gone []identity.PublicKey
	for k, m := range r.members {
		if now.Sub(m.Heard) > ttl && (keep == nil || !keep(k)) {
			delete(r.members, k)
			gone = append(gone, k)
		}
	}
	slices.SortFunc(gone, func(a, b identity.PublicKey) int { return compareKeys(a, b) })
	return gone
}

// Len is the number of members besides self.
func (r *Roster) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.members)
}

func compareKeys(a, b identity.PublicKey) int {
	switch {
	case a.Less(b):
		return -1
	case b.Less(a):
		return 1
	}
	return 0
}
