package junklog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestOneLinePerCausePerInterval(t *testing.T) {
	var buf bytes.Buffer
	l := New(slog.New(slog.NewTextHandler(&buf, nil)), time.Minute)
	clock := time.Unix(1_000_000, 0)
	l.now = func() time.Time { return clock }
	steps := []struct {
		advance time.Duration
		cause   string
		logged  bool
	}{
		{0, "bad-seal", true},
		{time.Second, "bad-seal", false},
		{time.Second, "replay", true}, // another cause has its own budget
		{30 * time.Second, "bad-seal", false},
		{28 * time.Second, "bad-seal", true}, // 60 s after the first line
		{time.Second, "replay", false},
	}
	for i, s := range steps {
		clock = clock.Add(s.advance)
		if got := l.Drop(s.cause, "junk"); got != s.logged {
			t.Fatalf("step %d (%s): logged=%v, want %v", i, s.cause, got, s.logged)
		}
	}
	if got := strings.Count(buf.String(), "\n"); got != 3 {
		t.Fatalf("%d lines, want 3:\n%s", got, buf.String())
	}
	if !strings.Contains(buf.String(), "suppressed_since_last=2") {
		t.Fatalf("the second bad-seal line does not count the two suppressed ones:\n%s", buf.String())
	}
	counts := l.Counts()
	if counts["bad-seal"] != 4 || counts["replay"] != 2 || l.Total() != 6 {
		t.Fatalf("counts %v", counts)
	}
}

func TestFloodIsCountedNotLogged(t *testing.T) {
	var buf bytes.Buffer
	l := New(slog.New(slog.NewTextHandler(&buf, nil)), 0)
	for range 10_000 {
		l.Drop("unknown-sender", "junk")
	}
	if n := strings.Count(buf.String(), "\n"); n != 1 {
		t.Fatalf("%d lines for one cause within a minute, want 1", n)
	}
	if l.Counts()["unknown-sender"] != 10_000 {
		t.Fatalf("counts %v", l.Counts())
	}
}
