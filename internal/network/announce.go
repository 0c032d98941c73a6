package network

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/punchd/punchd/internal/identity"
)

// An announcement tells the other members "I am here": the sender's public
// key (in the clear: the rendezvous knows it anyway, it is the registered
// ID), and sealed under the network's announce key its display name, the
// time it was made, its overlay addresses and whether it wants the others
// to answer with their own (a member that just joined).
//
//	sealed = version[1] | key[32] | nonce[24] | XChaCha20-Poly1305(plain)
//	AD     = "punchd announce v1\0" | topic[32] | version | key
//	plain  = flags[1] | unix-ms[8] | naddr[1] | (len[1] addr[len])* | nlen[1] name
//
// The AEAD binds the key and the topic: an announcement cannot be moved to
// another key or network. Replays are refused by time (MaxAge) and by the
// roster (timestamps only go forward per key).
//
// There is no proof inside that the sender holds its private key: the
// identity keys are X25519 (WireGuard's), which cannot sign, and a member
// who announced a key it does not hold gains nothing: the signaling toward
// that key is sealed to it and the WireGuard handshake needs it.

const (
	announceVersion = 1
	// MaxName bounds a display name in bytes (a hostname is at most 63).
	MaxName = 64
	// maxAddrs bounds the overlay addresses (one IPv4, one IPv6 today).
	maxAddrs = 4
	// MaxAge is how old an announcement may be: members refresh theirs
	// every RefreshInterval, so an older one is a replay or a dead member.
	MaxAge = 5 * time.Minute
	// RefreshInterval is how often a member announces itself unasked.
	RefreshInterval = time.Minute
	// clockSkew is how far in the future a timestamp may be.
	clockSkew = 2 * time.Minute

	headerSize = 1 + identity.KeySize + chacha20poly1305.NonceSizeX
	maxPlain   = 1 + 8 + 1 + maxAddrs*(1+16) + 1 + MaxName
	// MaxSealed is the largest valid sealed announcement; the rendezvous
	// refuses larger ones.
	MaxSealed = headerSize + maxPlain + chacha20poly1305.Overhead
)

const flagHello = 1 << 0

// Announcement is one member's "I am here".
type Announcement struct {
	Key   identity.PublicKey
	Name  string
	Time  time.Time // when it was made (millisecond precision)
	Addrs []netip.Addr
	// Hello asks every member that hears it to announce itself too: set
	// by a member that has just (re)joined and knows nobody yet.
	Hello bool
}

// ErrBadAnnouncement is wrapped by every Open error about the bytes.
var ErrBadAnnouncement = errors.New("bad announcement")

// ErrStale is wrapped by Open when the timestamp is out of range.
var ErrStale = errors.New("stale announcement")

// CheckName reports whether name can be announced.
func CheckName(name string) error {
	if name == "" {
		return errors.New("empty name")
	}
	if len(name) > MaxName {
		return fmt.Errorf("name of %d bytes, at most %d", len(name), MaxName)
	}
	if !utf8.ValidString(name) {
		return errors.New("name is not UTF-8")
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("name has the unprintable character %q", r)
		}
	}
	return nil
}

// Seal makes the sealed announcement for keys' network.
func Seal(keys Keys, a Announcement) ([]byte, error) {
	if err := CheckName(a.Name); err != nil {
		return nil, fmt.Errorf("announce: %w", err)
	}
	if len(a.Addrs) > maxAddrs {
		return nil, fmt.Errorf("announce: %d addresses, at most %d", len(a.Addrs), maxAddrs)
	}
	plain := make([]byte, 0, maxPlain)
	var flags byte
	if a.Hello {
		flags |= flagHello
	}
	plain = append(plain, flags)
	plain = binary.BigEndian.AppendUint64(plain, uint64(a.Time.UnixMilli()))
	plain = append(plain, byte(len(a.Addrs)))
	for _, ad := range a.Addrs {
		b := ad.Unmap().AsSlice()
		if len(b) == 0 {
			return nil, errors.New("announce: invalid address")
		}
		plain = append(plain, byte(len(b)))
		plain = append(plain, b...)
	}
	plain = append(plain, byte(len(a.Name)))
	plain = append(plain, a.Name...)

	aead, err := chacha20poly1305.NewX(keys.Announce[:])
	if err != nil {
		return nil, fmt.Errorf("announce: %w", err)
	}
	out := make([]byte, headerSize, headerSize+len(plain)+aead.Overhead())
	out[0] = announceVersion
	copy(out[1:], a.Key[:])
	if _, err := rand.Read(out[1+identity.KeySize : headerSize]); err != nil {
		return nil, fmt.Errorf("announce: nonce: %w", err)
	}
	nonce := out[1+identity.KeySize : headerSize]
	return aead.Seal(out, nonce, plain, additionalData(keys, out[:1+identity.KeySize])), nil
}

func additionalData(keys Keys, header []byte) []byte {
	const label = "punchd announce v1\x00"
	ad := make([]byte, 0, len(label)+len(keys.Topic)+len(header))
	ad = append(ad, label...)
	ad = append(ad, keys.Topic[:]...)
	return append(ad, header...)
}

// Open checks and parses a sealed announcement received at now. It never
// panics and allocates at most a few hundred bytes whatever b holds.
func Open(keys Keys, b []byte, now time.Time) (Announcement, error) {
	var a Announcement
	if len(b) < headerSize+chacha20poly1305.Overhead || len(b) > MaxSealed {
		return a, fmt.Errorf("%w: %d bytes", ErrBadAnnouncement, len(b))
	}
	if b[0] != announceVersion {
		return a, fmt.Errorf("%w: version %d, this member speaks %d (upgrade the older punchd)", ErrBadAnnouncement, b[0], announceVersion)
	}
	aead, err := chacha20poly1305.NewX(keys.Announce[:])
	if err != nil {
		return a, err
	}
	nonce := b[1+identity.KeySize : headerSize]
	plain, err := aead.Open(nil, nonce, b[headerSize:], additionalData(keys, b[:1+identity.KeySize]))
	if err != nil {
		return a, fmt.Errorf("%w: does not open under this network's key (another network, or altered)", ErrBadAnnouncement)
	}
	copy(a.Key[:], b[1:])
	if err := parsePlain(&a, plain); err != nil {
		return Announcement{}, fmt.Errorf("%w: %w", ErrBadAnnouncement, err)
	}
	if d := now.Sub(a.Time); d > MaxAge || d < -clockSkew {
		return Announcement{}, fmt.Errorf("%w: made %s ago (check the clocks)", ErrStale, d.Round(time.Second))
	}
	return a, nil
}

// parsePlain reads the plaintext; a member with the key could still send
// junk, so every length is checked.
func parsePlain(a *Announcement, p []byte) error {
	if len(p) < 1+8+1 {
		return errors.New("truncated header")
	}
	flags := p[0]
	if flags&^flagHello != 0 {
		return fmt.Errorf("unknown flags %#x", flags)
	}
	a.Hello = flags&flagHello != 0
	a.Time = time.UnixMilli(int64(binary.BigEndian.Uint64(p[1:9])))
	n := int(p[9])
	p = p[10:]
	if n > maxAddrs {
		return fmt.Errorf("%d addresses, at most %d", n, maxAddrs)
	}
	for range n {
		if len(p) < 1 {
			return errors.New("truncated address")
		}
		l := int(p[0])
		if l != 4 && l != 16 || len(p) < 1+l {
			return fmt.Errorf("bad address length %d", l)
		}
		ad, _ := netip.AddrFromSlice(p[1 : 1+l])
		a.Addrs = append(a.Addrs, ad)
		p = p[1+l:]
	}
	if len(p) < 1 || len(p) != 1+int(p[0]) {
		return errors.New("bad name length")
	}
	a.Name = string(p[1:])
	if err := CheckName(a.Name); err != nil {
		return err
	}
	return nil
}
