package network

import (
	"errors"
	"strings"
	"testing"

	xhkdf "golang.org/x/crypto/hkdf"

	"crypto/sha256"
	"io"
)

func TestCodeRoundTrip(t *testing.T) {
	for _, url := range []string{"http://r.example:8478", "https://10.0.0.1:8478", "r.example:8478", "HTTPS://R.Example/punch"} {
		c, err := New(url)
		if err != nil {
			t.Fatalf("New(%q): %v", url, err)
		}
		s := c.String()
		got, err := Parse(s)
		if err != nil {
			t.Fatalf("Parse(%q): %v", s, err)
		}
		if got != c {
			t.Fatalf("Parse(String()) = %+v, want %+v", got, c)
		}
		// Forgiving input: lower case, spaces for dashes.
		sloppy := strings.ToLower(strings.ReplaceAll(strings.SplitN(s, "@", 2)[0], "-", " ")) + "@" + c.Rendezvous
		if got, err := Parse("  " + sloppy + "\n"); err != nil || got != c {
			t.Fatalf("Parse(%q) = %+v, %v; want %+v", sloppy, got, err, c)
		}
	}
}

func TestCodeFormat(t *testing.T) {
	// A fixed secret gives a fixed code: the groups are Crockford base32
	// of the secret bytes, checked by hand for the first group: 0x00 0x00
	// -> "0000", 0xff... -> "ZZZZ".
	c := Code{Rendezvous: "http://r.example:8478"}
	for i := range c.Secret {
		c.Secret[i] = 0xff
	}
	s := c.String()
	secret, url, _ := strings.Cut(s, "@")
	if url != "http://r.example:8478" {
		t.Fatalf("url part %q", url)
	}
	groups := strings.Split(secret, "-")
	if len(groups) != 8 {
		t.Fatalf("%d groups in %q, want 8", len(groups), secret)
	}
	for i := range 6 { // 16 bytes of 0xff fill the first 25 characters with Z
		if groups[i] != "ZZZZ" {
			t.Fatalf("group %d = %q, want ZZZZ (all ones)", i, groups[i])
		}
	}
}

func TestParseErrors(t *testing.T) {
	good, err := New("http://r.example:8478")
	if err != nil {
		t.Fatal(err)
	}
	s := good.String()
	secret, _, _ := strings.Cut(s, "@")
	flip := []byte(secret)
	if flip[0] == '7' {
		flip[0] = '8'
	} else {
		flip[0] = '7'
	}
	tests := []struct {
		name, in, want string
	}{
		{"no at", secret, "no '@'"},
		{"no url", secret + "@", "no rendezvous URL"},
		{"short", secret[:len(secret)-2] + "@http://r.example:8478", "characters, want 32"},
		{"typo", string(flip) + "@http://r.example:8478", "check mismatch"},
		{"other url", secret + "@http://r.example:8479", "check mismatch"},
		{"bad char", strings.Replace(secret, secret[:1], "U", 1) + "@http://r.example:8478", "not base32"},
		{"bad scheme", secret + "@ftp://r.example", "scheme"},
		{"user info", secret + "@http://a@r.example", "want http(s)://HOST"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.in)
			if err == nil || !errors.Is(err, ErrBadCode) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse(%q) = %v, want an ErrBadCode saying %q", tt.in, err, tt.want)
			}
		})
	}
}

func TestKeysFromIndependentHKDF(t *testing.T) {
	var c Code
	for i := range c.Secret {
		c.Secret[i] = byte(i)
	}
	k := c.Keys()
	for _, tt := range []struct {
		label string
		got   [32]byte
	}{{"topic", k.Topic}, {"announce", k.Announce}} {
		// x/crypto's HKDF is a separate implementation from crypto/hkdf.
		r := xhkdf.New(sha256.New, c.Secret[:], []byte("punchd network v1"), []byte(tt.label))
		var want [32]byte
		if _, err := io.ReadFull(r, want[:]); err != nil {
			t.Fatal(err)
		}
		if tt.got != want {
			t.Errorf("%s key = %x, want %x", tt.label, tt.got, want)
		}
	}
	if k.Topic == k.Announce {
		t.Fatal("topic and announce keys are equal")
	}
	var other Code
	other.Secret[0] = 1
	if other.Keys().Topic == k.Topic {
		t.Fatal("two secrets give one topic")
	}
}
