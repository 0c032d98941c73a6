package daemon

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/punchd/punchd/internal/identity"
	"github.com/punchd/punchd/internal/network"
)

// A member is linked only when its announced overlay addresses are the
// ones our prefixes derive from its key and collide with no one's; both
// checks come before anything touches WireGuard, so a daemon without a
// device shows them.
func TestLinkRefuses(t *testing.T) {
	v4 := netip.MustParsePrefix("10.188.0.0/16")
	tiny := netip.MustParsePrefix("10.0.0.0/30") // two usable addresses
	self, other := mustKey(t), mustKey(t)
	derive := func(pfx netip.Prefix, k identity.PublicKey) []netip.Addr {
		a, err := identity.OverlayAddr(pfx, k)
		if err != nil {
			t.Fatal(err)
		}
		return []netip.Addr{a}
	}
	// colliding: a key whose /30 address is self's.
	var colliding identity.PublicKey
	for i := 0; i < 1000; i++ {
		k := mustKey(t)
		if derive(tiny, k)[0] == derive(tiny, self)[0] {
			colliding = k
			break
		}
	}
	if colliding.IsZero() {
		t.Fatal("no colliding key in 1000 tries in a /30")
	}
	tests := []struct {
		name   string
		prefix netip.Prefix
		a      network.Announcement
		want   string
	}{
		{"other overlay prefix", v4, network.Announcement{Key: other, Name: "x", Addrs: derive(netip.MustParsePrefix("10.99.0.0/16"), other)}, "same --overlay-prefix"},
		{"no addresses", v4, network.Announcement{Key: other, Name: "x"}, "same --overlay-prefix"},
		{"collides with this host", tiny, network.Announcement{Key: colliding, Name: "x", Addrs: derive(tiny, colliding)}, "collides"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, book, err := planOverlay(self, nil, []netip.Prefix{tt.prefix})
			if err != nil {
				t.Fatal(err)
			}
			d := &daemon{self: self, book: book, peers: map[identity.PublicKey]*peerState{}}
			tt.a.Time = time.Now()
			_, err = d.linkMember(tt.a)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("link = %v, want an error saying %q", err, tt.want)
			}
			if len(d.peers) != 0 || len(book.byKey) != 1 {
				t.Fatalf("a refused member left state: %d peers, %d keys in the address book", len(d.peers), len(book.byKey))
			}
		})
	}
}

// A --peer that is also a member stays a --peer (never removed with the
// roster) and gains the name it announced.
func TestLinkKnownPeer(t *testing.T) {
	self, peer := mustKey(t), mustKey(t)
	v4 := netip.MustParsePrefix("10.188.0.0/16")
	_, book, err := planOverlay(self, []Peer{{Key: peer, Alias: "bob"}}, []netip.Prefix{v4})
	if err != nil {
		t.Fatal(err)
	}
	ps := &peerState{key: peer, alias: "bob"}
	d := &daemon{self: self, book: book, peers: map[identity.PublicKey]*peerState{peer: ps}}
	addr, _ := identity.OverlayAddr(v4, peer)
	if added, err := d.linkMember(network.Announcement{Key: peer, Name: "bobs-laptop", Time: time.Now(), Addrs: []netip.Addr{addr}}); err != nil || added {
		t.Fatalf("linkMember = %v, %v; want not added, no error", added, err)
	}
	if ps.member || ps.alias != "bob" || ps.name != "bobs-laptop" || len(d.peers) != 1 {
		t.Fatalf("peer after link: member=%v alias=%q name=%q, %d peers", ps.member, ps.alias, ps.name, len(d.peers))
	}
}
