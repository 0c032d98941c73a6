// Package network is what lets friends join one punchd network with one
// code: the code itself (the rendezvous URL and a 128-bit secret), the keys
// derived from the secret, the sealed announcements members send each other
// through the rendezvous, and the roster a member keeps of the others.
//
// The rendezvous routes announcements by a topic id derived from the
// secret; it cannot read them (AEAD under a key derived from the secret),
// cannot make one (so it cannot add a member or change a name), and cannot
// guess the secret offline: the secret has 128 bits of entropy, so there is
// nothing to guess from the topic id it sees.
package network

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// SecretSize is the secret's length: 128 bits, beyond any offline search.
const SecretSize = 16

// checkSize is the typo check carried in the code next to the secret.
const checkSize = 4

// groupLen is how many characters go in one dash-separated group.
const groupLen = 4

// codeEncoding is Crockford's base32 alphabet (no I, L, O, U): easy to read
// aloud, and Parse maps the look-alikes back.
var codeEncoding = base32.NewEncoding("0123456789ABCDEFGHJKMNPQRSTVWXYZ").WithPadding(base32.NoPadding)

// Code is everything a member needs to join: where to meet and the secret.
type Code struct {
	Rendezvous string // http(s):// URL of `punchd rendezvous`
	Secret     [SecretSize]byte
}

// ErrBadCode is wrapped by every Parse error.
var ErrBadCode = errors.New("bad network code")

// New makes a code with a fresh secret for the rendezvous at rawURL.
func New(rawURL string) (Code, error) {
	u, err := normalizeURL(rawURL)
	if err != nil {
		return Code{}, err
	}
	c := Code{Rendezvous: u}
	if _, err := rand.Read(c.Secret[:]); err != nil {
		return Code{}, fmt.Errorf("make a network secret: %w", err)
	}
	return c, nil
}

// String is the code as a user shares it:
//
//	XXXX-XXXX-XXXX-XXXX-XXXX-XXXX-XXXX-XXXX@https://rendezvous.example:8478
//
// 32 characters of base32 carry the secret and a 32-bit check over secret
// and URL, so a mistyped character is reported as such, not as a network
// nobody else is on.
func (c Code) String() string {
	var raw [SecretSize + checkSize]byte
	copy(raw[:], c.Secret[:])
	sum := c.check()
	copy(raw[SecretSize:], sum[:])
	s := codeEncoding.EncodeToString(raw[:])
	var b strings.Builder
	for i := 0; i < len(s); i += groupLen {
		if i > 0 {
			b.WriteByte('-')
		}
		b.WriteString(s[i:min(i+groupLen, len(s))])
	}
	b.WriteByte('@')
	b.WriteString(c.Rendezvous)
	return b.String()
}

func (c Code) check() [checkSize]byte {
	h := sha256.New()
	h.Write([]byte("punchd network code v1\x00"))
	h.Write(c.Secret[:])
	h.Write([]byte(c.Rendezvous))
	var out [checkSize]byte
	copy(out[:], h.Sum(nil))
	return out
}

// Parse reads a code as String prints it. Case, dashes, spaces and the
// look-alike letters I, L (for 1) and O (for 0) are forgiven.
func Parse(s string) (Code, error) {
	s = strings.TrimSpace(s)
	secretPart, urlPart, ok := strings.Cut(s, "@")
	if !ok {
		return Code{}, fmt.Errorf("%w: no '@' between the secret and the rendezvous URL (copy the whole last line of `punchd network new`)", ErrBadCode)
	}
	u, err := normalizeURL(urlPart)
	if err != nil {
		return Code{}, fmt.Errorf("%w: %w", ErrBadCode, err)
	}
	norm := strings.Map(func(r rune) rune {
		switch r {
		case '-', ' ', '\t':
			return -1
		case 'i', 'I', 'l', 'L':
			return '1'
		case 'o', 'O':
			return '0'
		}
		if r >= 'a' && r <= 'z' {
			return r - 'a' + 'A'
		}
		return r
	}, secretPart)
	want := codeEncoding.EncodedLen(SecretSize + checkSize)
	if len(norm) != want {
		return Code{}, fmt.Errorf("%w: the secret has %d characters, want %d", ErrBadCode, len(norm), want)
	}
	raw, err := codeEncoding.DecodeString(norm)
	if err != nil || len(raw) != SecretSize+checkSize {
		return Code{}, fmt.Errorf("%w: the secret is not base32 (0-9 and A-Z without U)", ErrBadCode)
	}
	c := Code{Rendezvous: u}
	copy(c.Secret[:], raw)
	if sum := c.check(); string(sum[:]) != string(raw[SecretSize:]) {
		return Code{}, fmt.Errorf("%w: check mismatch: a character or the URL was mistyped", ErrBadCode)
	}
	return c, nil
}

// normalizeURL makes the rendezvous URL canonical, so that the check over
// it does not depend on how the user typed it.
func normalizeURL(raw string) (string, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return "", errors.New("no rendezvous URL: give --rendezvous http://HOST:PORT (where `punchd rendezvous` runs)")
	}
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("bad rendezvous URL %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("bad rendezvous URL %q: scheme %q, use http:// or https://", raw, u.Scheme)
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("bad rendezvous URL %q: want http(s)://HOST[:PORT][/PATH]", raw)
	}
	u.Scheme = strings.ToLower(u.Scheme)
	u.Host = strings.ToLower(u.Host)
	if u.Path == "/" {
		u.Path = ""
	}
	return u.String(), nil
}
