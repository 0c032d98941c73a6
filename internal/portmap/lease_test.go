package portmap

import (
	"context"
	"net/netip"
	"testing"
	"time"
)

// A lease maps the port (PCP first), renews it, notices a gateway that
// went away and came back with another port, and deletes the mapping on
// Close.
func TestLeaseLifecycle(t *testing.T) {
	g := startFakeGateway(t, "ok")
	changes := make(chan Mapping, 16)
	l := Keep(context.Background(), LeaseConfig{
		Gateway: netip.MustParseAddr("127.0.0.1"), Internal: 41641, Lifetime: time.Hour,
		Refresh: 50 * time.Millisecond, Retry: 50 * time.Millisecond,
		OnChange: func(m Mapping) { changes <- m },
	})
	defer l.Close()
	next := func(what string) Mapping {
		t.Helper()
		select {
		case m := <-changes:
			return m
		case <-time.After(5 * time.Second):
			t.Fatalf("no mapping change: %s", what)
		}
		return Mapping{}
	}
	m := next("first mapping")
	if m.Protocol != ProtoPCP || m.External != netip.AddrPortFrom(fakeExternal, 41641+2000) || m.Internal != 41641 {
		t.Fatalf("first mapping %+v", m)
	}
	if left := time.Until(m.Expires); left < 59*time.Minute {
		t.Fatalf("lease %v left, asked for an hour", left)
	}
	time.Sleep(200 * time.Millisecond) // a few renewals: no change reported
	g.mu.Lock()
	renewals := g.requests
	g.mu.Unlock()
	if renewals < 3 {
		t.Fatalf("%d requests to the gateway in 200 ms of 50 ms renewals", renewals)
	}
	select {
	case m := <-changes:
		t.Fatalf("a renewal reported a change: %+v", m)
	default:
	}

	// The gateway reboots: gone for a while, then back with other ports.
	g.conn.Close()
	if lost := next("loss"); !lost.IsZero() {
		t.Fatalf("after the gateway went away: %+v", lost)
	}
	if cur, why := l.Current(); !cur.IsZero() || why == "" {
		t.Fatalf("Current while lost: %+v %q", cur, why)
	}
	g2 := startFakeGateway(t, "ok")
	g2.mu.Lock()
	g2.pcpOffset = 3000
	g2.mu.Unlock()
	if back := next("remap"); back.External != netip.AddrPortFrom(fakeExternal, 41641+3000) {
		t.Fatalf("after the reboot: %+v", back)
	}

	l.Close()
	l.Close()
	g2.mu.Lock()
	defer g2.mu.Unlock()
	if len(g2.pcpMaps) != 0 {
		t.Fatalf("mapping left on the gateway after Close: %v", g2.pcpMaps)
	}
}
