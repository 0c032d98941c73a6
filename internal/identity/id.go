package identity

import (
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
)

// A peer ID is the whole public key plus a two-byte checksum, in lowercase
// base32 without padding: 55 characters that survive chat apps and copy-paste,
// pin the key exactly (no truncated fingerprint), and catch typos.
const (
	checksumSize = 2
	idLen        = 55 // ceil((32+2)*8/5)
)

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// String returns the peer ID.
func (p PublicKey) String() string {
	var buf [KeySize + checksumSize]byte
	copy(buf[:], p[:])
	sum := idChecksum(p)
	copy(buf[KeySize:], sum[:])
	return idEncoding.EncodeToString(buf[:])
}

// Short is a prefix of the ID for logs; never use it to identify a peer.
func (p PublicKey) Short() string { return p.String()[:8] }

func idChecksum(p PublicKey) [checksumSize]byte {
	h := sha256.Sum256(append([]byte("punchd peer id v1\x00"), p[:]...))
	return [checksumSize]byte{h[0], h[1]}
}

// ErrBadID is wrapped by every ParseID error.
var ErrBadID = errors.New("bad peer ID")

// ParseID parses a peer ID as printed by `punchd id`.
func ParseID(s string) (PublicKey, error) {
	var p PublicKey
	s = strings.ToLower(strings.TrimSpace(s))
	if len(s) != idLen {
		return p, fmt.Errorf("%w: %d characters, want %d (copy it whole from `punchd id`)", ErrBadID, len(s), idLen)
	}
	for i, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '2' && r <= '7') {
			return p, fmt.Errorf("%w: character %q at position %d is not in a-z, 2-7", ErrBadID, r, i+1)
		}
	}
	raw, err := idEncoding.DecodeString(s)
	if err != nil || len(raw) != KeySize+checksumSize {
		return p, fmt.Errorf("%w: not valid base32", ErrBadID)
	}
	copy(p[:], raw[:KeySize])
	if sum := idChecksum(p); sum[0] != raw[KeySize] || sum[1] != raw[KeySize+1] {
		return PublicKey{}, fmt.Errorf("%w: checksum mismatch: check for a typo", ErrBadID)
	}
	return p, nil
}
