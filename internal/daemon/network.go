package daemon

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/punchd/punchd/internal/identity"
	"github.com/punchd/punchd/internal/membership"
	"github.com/punchd/punchd/internal/network"
)

// newMembership joins the network of code (internal/membership); the
// daemon is its Host through memberHost.
func (d *daemon) newMembership(code network.Code, name string) (*membership.Membership, error) {
	addrs := make([]netip.Addr, len(d.selfIPs))
	for i, p := range d.selfIPs {
		addrs[i] = p.Addr()
	}
	return membership.New(membership.Config{Self: d.self, Addrs: addrs, Code: code, Name: name, Log: d.log, Host: memberHost{d}})
}

// memberHost is the daemon as membership sees it.
type memberHost struct{ d *daemon }

func (h memberHost) Link(a network.Announcement) (bool, error) { return h.d.linkMember(a) }

func (h memberHost) Named(key identity.PublicKey, name string) {
	if ps, ok := h.d.peer(key); ok {
		ps.mu.Lock()
		ps.name = name
		ps.mu.Unlock()
	}
}

func (h memberHost) Connected(key identity.PublicKey) bool {
	ps, ok := h.d.peer(key)
	if !ok {
		return false
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return !ps.connectedAt.IsZero()
}

func (h memberHost) Unlink(key identity.PublicKey) bool {
	if ps, ok := h.d.peer(key); ok && ps.member {
		h.d.removePeer(key)
		return true
	}
	return false
}

// Rendezvous returns an untyped nil before the client exists, so that the
// interface compares equal to nil.
func (h memberHost) Rendezvous() membership.Rendezvous {
	if rv := h.d.rv.Load(); rv != nil {
		return rv
	}
	return nil
}

func (h memberHost) Peers() []identity.PublicKey { return h.d.peerKeys() }

// linkMember adds a member as a peer: its overlay addresses must be the
// ones our prefixes derive from its key (the same --overlay-prefix on
// every member) and must not collide with anyone's. A --peer that is also
// a member keeps its alias and gains a name (added false).
func (d *daemon) linkMember(a network.Announcement) (added bool, err error) {
	d.mu.Lock()
	if ps, ok := d.peers[a.Key]; ok {
		d.mu.Unlock()
		ps.mu.Lock()
		ps.name = a.Name
		ps.mu.Unlock()
		return false, nil
	}
	want := make([]netip.Addr, 0, len(d.book.prefixes))
	for _, pfx := range d.book.prefixes {
		ad, err := identity.OverlayAddr(pfx, a.Key)
		if err != nil {
			d.mu.Unlock()
			return false, err
		}
		want = append(want, ad)
	}
	if !sameAddrs(want, a.Addrs) {
		d.mu.Unlock()
		return false, fmt.Errorf("it uses the overlay addresses %v, this host's --overlay-prefix gives it %v: give every member the same --overlay-prefix", a.Addrs, want)
	}
	routes, err := d.book.claim(a.Key, "member "+a.Name)
	d.mu.Unlock()
	if err != nil {
		return false, err
	}
	if err := d.addPeer(a.Key, "", true, routes); err != nil {
		d.mu.Lock()
		d.book.release(a.Key)
		d.mu.Unlock()
		return false, err
	}
	if ps, ok := d.peer(a.Key); ok {
		ps.mu.Lock()
		ps.name = a.Name
		ps.mu.Unlock()
	}
	return true, nil
}

func sameAddrs(a, b []netip.Addr) bool {
	norm := func(x []netip.Addr) []netip.Addr {
		out := make([]netip.Addr, len(x))
		for i, v := range x {
			out[i] = v.Unmap()
		}
		slices.SortFunc(out, func(p, q netip.Addr) int { return p.Compare(q) })
		return out
	}
	return slices.Equal(norm(a), norm(b))
}
