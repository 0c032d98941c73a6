package identity

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func mustKey(t testing.TB) PrivateKey {
	t.Helper()
	k, err := GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestIDRoundTrip(t *testing.T) {
	for i := 0; i < 100; i++ {
		pub := mustKey(t).PublicKey()
		id := pub.String()
		if len(id) != idLen {
			t.Fatalf("id %q has length %d", id, len(id))
		}
		got, err := ParseID(id)
		if err != nil || got != pub {
			t.Fatalf("ParseID(%q) = %v, %v", id, got, err)
		}
		if got, err := ParseID(" " + strings.ToUpper(id) + "\n"); err != nil || got != pub {
			t.Fatalf("ParseID is not forgiving of case and spaces: %v", err)
		}
	}
}

func TestParseIDErrors(t *testing.T) {
	id := mustKey(t).PublicKey().String()
	typo := []byte(id)
	if typo[10] == 'a' {
		typo[10] = 'b'
	} else {
		typo[10] = 'a'
	}
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", "0 characters"},
		{"truncated", id[:40], "40 characters"},
		{"bad char", id[:54] + "1", "not in a-z, 2-7"},
		{"typo", string(typo), "checksum mismatch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseID(tt.in)
			if err == nil || !errors.Is(err, ErrBadID) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParseID(%q) = %v, want error containing %q", tt.in, err, tt.want)
			}
		})
	}
}

func TestLoadOrCreate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	k1, created, err := LoadOrCreate(dir)
	if err != nil || !created {
		t.Fatalf("first LoadOrCreate: created=%v err=%v", created, err)
	}
	fi, err := os.Stat(filepath.Join(dir, keyFileName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", fi.Mode(), err)
	}
	di, _ := os.Stat(dir)
	if di.Mode().Perm() != 0o700 {
		t.Fatalf("state dir mode %v", di.Mode())
	}
	k2, created, err := LoadOrCreate(dir)
	if err != nil || created || k1 != k2 {
		t.Fatalf("second LoadOrCreate: same=%v created=%v err=%v", k1 == k2, created, err)
	}
	// A damaged key file is an error that keeps the file, never a silent new identity.
	if err := os.WriteFile(filepath.Join(dir, keyFileName), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreate(dir); err == nil || !strings.Contains(err.Error(), "not a base64 key") {
		t.Fatalf("damaged key file: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, keyFileName)); string(b) != "garbage" {
		t.Fatal("damaged key file was overwritten")
	}
}

func TestWireGuardCompatibleKeys(t *testing.T) {
	k := mustKey(t)
	if k[0]&7 != 0 || k[31]&128 != 0 || k[31]&64 == 0 {
		t.Fatal("key not clamped")
	}
	if len(k.Hex()) != 64 || len(k.PublicKey().Hex()) != 64 {
		t.Fatal("hex length")
	}
}

func TestOverlayAddr(t *testing.T) {
	pub := mustKey(t).PublicKey()
	tests := []struct {
		prefix  string
		wantErr bool
	}{
		{"10.188.0.0/16", false},
		{"100.64.0.0/10", false},
		{"192.168.7.0/30", false},
		{"fd50:756e:6368::/48", false},
		{"fd00::/126", false},
		{"10.0.0.0/31", true},
		{"10.0.0.1/32", true},
	}
	for _, tt := range tests {
		t.Run(tt.prefix, func(t *testing.T) {
			pfx := netip.MustParsePrefix(tt.prefix)
			a, err := OverlayAddr(pfx, pub)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("want error, got %v", a)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !pfx.Masked().Contains(a) || a == pfx.Masked().Addr() {
				t.Fatalf("%v not a host address in %v", a, pfx)
			}
			b, _ := OverlayAddr(pfx, pub)
			if a != b {
				t.Fatal("not deterministic")
			}
		})
	}
	// In a /30 only .1 and .2 are usable: never network or broadcast.
	for i := 0; i < 200; i++ {
		a, err := OverlayAddr(netip.MustParsePrefix("10.0.0.0/30"), mustKey(t).PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		if s := a.String(); s != "10.0.0.1" && s != "10.0.0.2" {
			t.Fatalf("got %s in a /30", s)
		}
	}
}

func FuzzParseID(f *testing.F) {
	f.Add(mustKey(f).PublicKey().String())
	f.Add("")
	f.Add(strings.Repeat("a", idLen))
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseID(s)
		if err != nil {
			return
		}
		if q, err := ParseID(p.String()); err != nil || q != p {
			t.Fatalf("round trip of accepted ID failed: %v", err)
		}
	})
}

// The larger key (bytewise, first byte most significant) controls ICE;
// the pairs are written out by hand, and both ends must agree.
func TestControlsICE(t *testing.T) {
	key := func(b ...byte) PublicKey { var k PublicKey; copy(k[:], b); return k }
	tests := []struct {
		self, peer PublicKey
		want       bool
	}{
		{key(0x02), key(0x01), true},
		{key(0x01), key(0x02), false},
		{key(0x01, 0xff), key(0x02, 0x00), false}, // the first byte decides
		{key(0x80), key(0x7f, 0xff, 0xff), true},
		{key(0, 0, 0, 5), key(0, 0, 0, 4), true},
	}
	for _, tt := range tests {
		if got := ControlsICE(tt.self, tt.peer); got != tt.want {
			t.Errorf("ControlsICE(%x.., %x..) = %v, want %v", tt.self[:4], tt.peer[:4], got, tt.want)
		}
		if ControlsICE(tt.peer, tt.self) == ControlsICE(tt.self, tt.peer) {
			t.Errorf("%x.. and %x.. take the same role", tt.self[:4], tt.peer[:4])
		}
	}
}
