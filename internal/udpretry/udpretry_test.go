package udpretry

import (
	"testing"
	"time"
)

func TestSendSchedule(t *testing.T) {
	start := time.Unix(0, 0)
	const timeout = 1200 * time.Millisecond
	want := []struct {
		at   time.Duration
		last bool
	}{{200 * time.Millisecond, false}, {600 * time.Millisecond, false}, {timeout, true}}
	for i, w := range want {
		wake, last := WakeAfter(start, i, timeout)
		if wake.Sub(start) != w.at || last != w.last {
			t.Errorf("after send %d: wake at %s (last %v), want %s (%v)", i, wake.Sub(start), last, w.at, w.last)
		}
	}
	if SendAt(0) != 0 {
		t.Errorf("first send at %s", SendAt(0))
	}
}
