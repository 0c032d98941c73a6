package rvclient

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/punchd/punchd/internal/identity"
	"github.com/punchd/punchd/internal/sealed"
	"github.com/punchd/punchd/internal/signalwire"
)

func newKey(t testing.TB) identity.PrivateKey {
	t.Helper()
	k, err := identity.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustSeal(t testing.TB, s *sealed.Sealer, to identity.PublicKey, payload []byte, now time.Time) []byte {
	t.Helper()
	b, err := s.Seal(to, payload, now)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestConnectUnreachable(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := Connect(ctx, ClientConfig{URL: "http://" + addr, Key: newKey(t)})
	if err == nil || !strings.Contains(err.Error(), "rendezvous unreachable at ws://"+addr) || !strings.Contains(err.Error(), "punchd rendezvous") {
		t.Fatalf("want actionable error, got %v", err)
	}
	for _, bad := range []string{"ftp://x", "http://", "::"} {
		if _, err := wsURL(bad); err == nil {
			t.Errorf("wsURL(%q) accepted", bad)
		}
	}
}

// A client with OnSealed gets sealed messages only from senders it
// accepts; a stranger's is dropped and counted (the rendezvous' own
// TestSealAheadAndUnopened shows the accepted ones arrive unopened).
func TestOnSealedOnlyFromAccepted(t *testing.T) {
	self, peer, stranger := newKey(t), newKey(t), newKey(t)
	var raw [][]byte
	c := newClient(ClientConfig{Key: self, Watch: []identity.PublicKey{peer.PublicKey()},
		OnMessage: func(identity.PublicKey, []byte) { t.Error("OnMessage called although OnSealed is set") },
		OnSealed:  func(_ identity.PublicKey, b []byte) { raw = append(raw, b) },
	}, discardLogger())
	now := time.Now()
	fromPeer := mustSeal(t, sealed.NewSealer(peer, nil), self.PublicKey(), []byte("offer"), now)
	fromStranger := mustSeal(t, sealed.NewSealer(stranger, nil), self.PublicKey(), []byte("offer"), now)
	c.handle(signalwire.Frame{Type: signalwire.TypeRecv, From: stranger.PublicKey().String(), Payload: fromStranger})
	if n := c.Dropped()[JunkUnknownSender]; n != 1 {
		t.Fatalf("a stranger's message: %d unknown-sender drops, want 1", n)
	}
	if len(raw) != 0 {
		t.Fatal("OnSealed got a stranger's message")
	}
	c.handle(signalwire.Frame{Type: signalwire.TypeRecv, From: peer.PublicKey().String(), Payload: fromPeer})
	if len(raw) != 1 || string(raw[0]) != string(fromPeer) {
		t.Fatalf("OnSealed got %d messages, want the peer's one, unopened", len(raw))
	}
}
