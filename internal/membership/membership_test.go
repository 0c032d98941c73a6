package membership

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/punchd/punchd/internal/network"
)

func TestMembershipName(t *testing.T) {
	for _, tt := range []struct {
		name string
		ok   bool
	}{{"laptop", true}, {"", false}, {strings.Repeat("x", network.MaxName+1), false}, {"a\tb", false}} {
		if _, err := New(Config{Name: tt.name}); (err == nil) != tt.ok {
			t.Errorf("New(name %q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

// The rendezvous can flood us with announcements: the queue holds
// inboxSize, the rest is dropped and counted, nothing blocks.
func TestAnnouncementQueueBound(t *testing.T) {
	m, err := New(Config{Name: "me", Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	for range inboxSize + 10 {
		m.OnAnnouncement(m.topic, []byte("junk"))
	}
	if len(m.inbox) != inboxSize || m.junk.Load() != 10 {
		t.Fatalf("%d queued, %d refused; want %d and 10", len(m.inbox), m.junk.Load(), inboxSize)
	}
	// What is queued is opened and refused, and counted too.
	for range inboxSize {
		if m.receive(context.Background(), <-m.inbox) {
			t.Fatal("junk asked for an answer")
		}
	}
	if m.junk.Load() != inboxSize+10 {
		t.Fatalf("%d refused, want %d", m.junk.Load(), inboxSize+10)
	}
}
