package network

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/punchd/punchd/internal/identity"
)

func testKeys(t testing.TB, b byte) Keys {
	t.Helper()
	var c Code
	c.Secret[0] = b
	return c.Keys()
}

func testKey(b byte) identity.PublicKey {
	var k identity.PublicKey
	k[0] = b
	k[31] = 0x42
	return k
}

func TestAnnounceRoundTrip(t *testing.T) {
	keys := testKeys(t, 1)
	now := time.UnixMilli(1_800_000_000_123)
	tests := []Announcement{
		{Key: testKey(1), Name: "alice", Time: now, Addrs: []netip.Addr{netip.MustParseAddr("10.188.1.2"), netip.MustParseAddr("fd50::1")}},
		{Key: testKey(2), Name: "bob's laptop ☕", Time: now, Hello: true},
		{Key: testKey(3), Name: strings.Repeat("x", MaxName), Time: now, Addrs: []netip.Addr{netip.MustParseAddr("::ffff:10.0.0.1")}},
	}
	for _, a := range tests {
		b, err := Seal(keys, a)
		if err != nil {
			t.Fatalf("Seal(%+v): %v", a, err)
		}
		if len(b) > MaxSealed {
			t.Fatalf("sealed %d bytes > MaxSealed %d", len(b), MaxSealed)
		}
		if strings.Contains(string(b), a.Name) {
			t.Fatalf("name %q readable in the sealed bytes", a.Name)
		}
		got, err := Open(keys, b, now.Add(time.Second))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		for i := range a.Addrs {
			a.Addrs[i] = a.Addrs[i].Unmap()
		}
		if got.Key != a.Key || got.Name != a.Name || !got.Time.Equal(a.Time) || got.Hello != a.Hello || len(got.Addrs) != len(a.Addrs) {
			t.Fatalf("Open = %+v, want %+v", got, a)
		}
		for i := range a.Addrs {
			if got.Addrs[i] != a.Addrs[i] {
				t.Fatalf("addr %d = %v, want %v", i, got.Addrs[i], a.Addrs[i])
			}
		}
	}
}

func TestOpenRefuses(t *testing.T) {
	keys := testKeys(t, 1)
	now := time.Unix(1_800_000_000, 0)
	a := Announcement{Key: testKey(1), Name: "alice", Time: now}
	good, err := Seal(keys, a)
	if err != nil {
		t.Fatal(err)
	}
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	tests := []struct {
		name string
		keys Keys
		b    []byte
		at   time.Time
		want error
	}{
		{"other network", testKeys(t, 2), good, now, ErrBadAnnouncement},
		{"other key in header", keys, mut(func(b []byte) []byte { b[1] ^= 1; return b }), now, ErrBadAnnouncement},
		{"flipped ciphertext", keys, mut(func(b []byte) []byte { b[len(b)-1] ^= 1; return b }), now, ErrBadAnnouncement},
		{"version", keys, mut(func(b []byte) []byte { b[0] = 2; return b }), now, ErrBadAnnouncement},
		{"truncated", keys, good[:headerSize+3], now, ErrBadAnnouncement},
		{"oversized", keys, make([]byte, MaxSealed+1), now, ErrBadAnnouncement},
		{"empty", keys, nil, now, ErrBadAnnouncement},
		{"too old", keys, good, now.Add(MaxAge + time.Second), ErrStale},
		{"from the future", keys, good, now.Add(-clockSkew - time.Second), ErrStale},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Open(tt.keys, tt.b, tt.at); !errors.Is(err, tt.want) {
				t.Fatalf("Open = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestSealRefusesBadNames(t *testing.T) {
	keys := testKeys(t, 1)
	for _, name := range []string{"", strings.Repeat("x", MaxName+1), "a\nb", "\xff\xfe", "tab\there"} {
		if _, err := Seal(keys, Announcement{Key: testKey(1), Name: name, Time: time.Now()}); err == nil {
			t.Errorf("Seal with name %q succeeded", name)
		}
	}
}

func TestParsePlain(t *testing.T) {
	hdr := []byte{0, 0, 0, 0, 0, 0, 0, 0, 1} // flags 0, time 1 ms
	cat := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	tests := []struct {
		name  string
		plain []byte
		ok    bool
	}{
		{"minimal", cat(hdr, []byte{0, 1, 'a'}), true},
		{"v4 address", cat(hdr, []byte{1, 4, 10, 0, 0, 1, 1, 'a'}), true},
		{"hello flag", cat([]byte{1}, hdr[1:], []byte{0, 1, 'a'}), true},
		{"unknown flag", cat([]byte{2}, hdr[1:], []byte{0, 1, 'a'}), false},
		{"short header", hdr[:5], false},
		{"address length 5", cat(hdr, []byte{1, 5, 1, 2, 3, 4, 5, 1, 'a'}), false},
		{"address truncated", cat(hdr, []byte{1, 16, 1, 2}), false},
		{"too many addresses", cat(hdr, []byte{5}), false},
		{"no name", cat(hdr, []byte{0}), false},
		{"empty name", cat(hdr, []byte{0, 0}), false},
		{"name longer than said", cat(hdr, []byte{0, 1, 'a', 'b'}), false},
		{"name shorter than said", cat(hdr, []byte{0, 3, 'a'}), false},
		{"control character", cat(hdr, []byte{0, 1, 0x07}), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var a Announcement
			err := parsePlain(&a, tt.plain)
			if (err == nil) != tt.ok {
				t.Fatalf("parsePlain = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

// FuzzParsePlain: a member holding the network key can send any plaintext.
func FuzzParsePlain(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 4, 10, 0, 0, 1, 1, 'a'})
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 3, 'a', 'b', 'c'})
	f.Fuzz(func(t *testing.T, p []byte) {
		var a Announcement
		if err := parsePlain(&a, p); err != nil {
			return
		}
		if CheckName(a.Name) != nil || len(a.Addrs) > maxAddrs {
			t.Fatalf("parsePlain accepted %+v", a)
		}
		// What parses must seal again and open to the same thing.
		keys := testKeys(t, 1)
		a.Key = testKey(9)
		b, err := Seal(keys, a)
		if err != nil {
			t.Fatalf("Seal of a parsed announcement: %v", err)
		}
		if _, err := Open(keys, b, a.Time); err != nil {
			t.Fatalf("Open of a resealed announcement: %v", err)
		}
	})
}

// FuzzOpen: what the rendezvous (or anyone on the topic) can send.
func FuzzOpen(f *testing.F) {
	keys := testKeys(f, 1)
	now := time.Unix(1_800_000_000, 0)
	good, err := Seal(keys, Announcement{Key: testKey(1), Name: "alice", Time: now})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:headerSize])
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := Open(keys, b, now)
		if err == nil && CheckName(a.Name) != nil {
			t.Fatalf("Open accepted %+v", a)
		}
	})
}
