package iplimit

import (
	"net/netip"
	"testing"
	"time"
)

func TestKey(t *testing.T) {
	tests := []struct{ in, want string }{
		{"198.18.0.1", "198.18.0.1"},
		{"::ffff:198.18.0.1", "198.18.0.1"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::"},
		{"2001:db8:1:2::ffff", "2001:db8:1:2::"},
	}
	for _, tt := range tests {
		if got := Key(netip.MustParseAddr(tt.in)); got != netip.MustParseAddr(tt.want) {
			t.Errorf("Key(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestAllowBurstThenRefill(t *testing.T) {
	now := time.Unix(1000, 0)
	l := New(time.Second, 3, 10)
	l.now = func() time.Time { return now }
	a := netip.MustParseAddr("198.18.0.1")
	got := []bool{}
	for range 4 {
		got = append(got, l.Allow(a))
	}
	want := []bool{true, true, true, false}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("burst: got %v, want %v", got, want)
		}
	}
	// Another address has its own bucket; the same /64 shares one.
	if !l.Allow(netip.MustParseAddr("198.18.0.2")) {
		t.Fatal("second address refused")
	}
	v6a, v6b := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	for range 3 {
		l.Allow(v6a)
	}
	if l.Allow(v6b) {
		t.Fatal("a second address of the same /64 got its own bucket")
	}
	now = now.Add(time.Second)
	if !l.Allow(a) {
		t.Fatal("no token after one interval")
	}
}

func TestTableBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	l := New(time.Minute, 1, 4)
	l.now = func() time.Time { return now }
	for i := range 4 {
		if !l.Allow(netip.AddrFrom4([4]byte{198, 18, 1, byte(i)})) {
			t.Fatalf("address %d refused while the table had room", i)
		}
	}
	// Full of busy addresses: a new one is refused, the table stays at max.
	if l.Allow(netip.MustParseAddr("198.18.2.1")) {
		t.Fatal("new address admitted into a full table of busy ones")
	}
	if l.Len() != 4 {
		t.Fatalf("table holds %d, want 4", l.Len())
	}
	// Once the old ones have refilled they make room.
	now = now.Add(2 * time.Minute)
	if !l.Allow(netip.MustParseAddr("198.18.2.1")) {
		t.Fatal("new address refused although the old buckets had refilled")
	}
	if l.Len() > 4 {
		t.Fatalf("table grew to %d", l.Len())
	}
}

func TestConns(t *testing.T) {
	c := &Conns{PerAddr: 2, Total: 3}
	a, a2, b, d := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	steps := []struct {
		ip      netip.Addr
		acquire bool // false: release
		want    bool
	}{
		{a, true, true},
		{a2, true, true},
		{a, true, false}, // per address
		{b, true, true},
		{d, true, false}, // total (and d shares b's /64)
		{a, false, true},
		{d, true, true}, // b's /64 has room for a second
		{b, true, false},
	}
	for i, st := range steps {
		if !st.acquire {
			c.Release(st.ip)
			continue
		}
		if got := c.Acquire(st.ip); got != st.want {
			t.Fatalf("step %d: Acquire(%s) = %v, want %v", i, st.ip, got, st.want)
		}
	}
	if c.Open() != 3 {
		t.Fatalf("open %d, want 3", c.Open())
	}
}
