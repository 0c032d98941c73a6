package membership

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/punchd/punchd/internal/identity"
	"github.com/punchd/punchd/internal/network"
)

// fakeHost records what the membership asks of the daemon.
type fakeHost struct {
	linked   []identity.PublicKey
	named    map[identity.PublicKey]string
	unlinked []identity.PublicKey
}

func (h *fakeHost) Link(a network.Announcement) (bool, error) {
	h.linked = append(h.linked, a.Key)
	return true, nil
}
func (h *fakeHost) Named(k identity.PublicKey, name string) { h.named[k] = name }
func (h *fakeHost) Connected(identity.PublicKey) bool       { return false }
func (h *fakeHost) Unlink(k identity.PublicKey) bool {
	h.unlinked = append(h.unlinked, k)
	return true
}
func (h *fakeHost) Rendezvous() Rendezvous      { return nil }
func (h *fakeHost) Peers() []identity.PublicKey { return nil }

func newKey(t *testing.T) identity.PublicKey {
	t.Helper()
	k, err := identity.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey()
}

// A newcomer's announcement links it and asks for an answer; a later one
// with another name renames it; one from another network is refused.
func TestReceiveLinksAndNames(t *testing.T) {
	var code network.Code
	code.Secret[0] = 7
	h := &fakeHost{named: map[identity.PublicKey]string{}}
	m, err := New(Config{Self: newKey(t), Code: code, Name: "me", Log: slog.New(slog.DiscardHandler), Host: h})
	if err != nil {
		t.Fatal(err)
	}
	other := newKey(t)
	seal := func(c network.Code, name string, at time.Time) []byte {
		b, err := network.Seal(c.Keys(), network.Announcement{Key: other, Name: name, Time: at, Addrs: []netip.Addr{netip.MustParseAddr("10.188.0.9")}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	now := time.Now()
	if !m.receive(context.Background(), seal(code, "laptop", now)) {
		t.Fatal("a newcomer asked for no answer")
	}
	if len(h.linked) != 1 || h.linked[0] != other {
		t.Fatalf("linked %v, want the newcomer once", h.linked)
	}
	m.receive(context.Background(), seal(code, "desk", now.Add(time.Second)))
	if h.named[other] != "desk" || len(h.linked) != 1 {
		t.Fatalf("after a rename: named %q, %d links; want desk, 1", h.named[other], len(h.linked))
	}
	var stranger network.Code
	stranger.Secret[0] = 8
	if m.receive(context.Background(), seal(stranger, "x", now.Add(2*time.Second))) || m.junk.Load() != 1 {
		t.Fatalf("another network's announcement: %d refused, want 1", m.junk.Load())
	}
}
