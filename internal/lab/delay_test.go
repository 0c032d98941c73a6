package lab

import (
	"context"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

// AddDelay must add its delay once per direction: a ping to a host delayed
// by 30 ms one way takes at least 60 ms, while between two undelayed lab
// hosts it takes well under 10 ms (veths on one machine: tens of
// microseconds; 10 ms is a bound for a loaded 2-core runner). Both the
// delayed host's own address and its extra one are delayed, and pings from
// it (not only to it) are too. After Close the host is reachable again,
// undelayed.
func TestAddDelay(t *testing.T) {
	RequireRoot(t)
	ctx, l := newTestLab(t, 60*time.Second)
	far, err := l.AddPublicHost("far", 1)
	if err != nil {
		t.Fatal(err)
	}
	near, err := l.AddPublicHost("near", 0)
	if err != nil {
		t.Fatal(err)
	}
	other, err := l.AddPublicHost("other", 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := minRTT(ctx, t, near, far.Addr); got > 10*time.Millisecond {
		t.Fatalf("near -> far before the delay: %s; want < 10ms", got)
	}
	const oneWay = 30 * time.Millisecond
	d, err := l.AddDelay(far, oneWay)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.AddDelay(far, oneWay); err == nil {
		t.Error("a second delay on one host was accepted")
	}
	for _, c := range []struct {
		name     string
		from     *Host
		to       netip.Addr
		min, max time.Duration
	}{
		{"to the delayed host", near, far.Addr, 2 * oneWay, 2*oneWay + 40*time.Millisecond},
		{"to its extra address", near, far.Extra[0], 2 * oneWay, 2*oneWay + 40*time.Millisecond},
		{"from the delayed host", far, other.Addr, 2 * oneWay, 2*oneWay + 40*time.Millisecond},
		{"between two others", near, other.Addr, 0, 10 * time.Millisecond},
	} {
		got := minRTT(ctx, t, c.from, c.to)
		if got < c.min || got > c.max {
			t.Errorf("%s (%s -> %s): RTT %s; want %s..%s", c.name, c.from.Name, c.to, got, c.min, c.max)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if d.Dropped() != 0 {
		t.Errorf("the queue dropped %d packets of a few pings", d.Dropped())
	}
	if err := run(ctx, "ip", "-n", d.NS, "link", "show", "tun0"); err == nil {
		t.Error("tun0 outlives Close")
	}
	if got := minRTT(ctx, t, near, far.Addr); got > 10*time.Millisecond {
		t.Errorf("near -> far after Close: %s; want < 10ms (undelayed)", got)
	}
}

// minRTT is the smallest round trip of 5 pings 0.1 s apart, read from
// ping(8)'s own summary line.
func minRTT(ctx context.Context, t *testing.T, from *Host, to netip.Addr) time.Duration {
	t.Helper()
	out, err := from.Command(ctx, "ping", "-4", "-n", "-q", "-c", "5", "-i", "0.1", "-W", "2", to.String()).CombinedOutput()
	if err != nil {
		t.Fatalf("ping %s from %s: %v: %s", to, from.Name, err, out)
	}
	_, rest, ok := strings.Cut(string(out), " = ")
	if !ok {
		t.Fatalf("ping %s: no summary in %q", to, out)
	}
	min, _, _ := strings.Cut(rest, "/")
	ms, err := strconv.ParseFloat(min, 64)
	if err != nil {
		t.Fatalf("ping %s: summary %q: %v", to, rest, err)
	}
	return time.Duration(ms * float64(time.Millisecond))
}
