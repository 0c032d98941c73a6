package network

import (
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/hex"
)

// Keys are derived from the secret with HKDF-SHA256, one label per use, so
// that no key serves two purposes.
type Keys struct {
	// Topic is what the rendezvous routes announcements by. It reveals
	// nothing of the secret (HKDF is one-way and the secret has 128 bits)
	// and is useless to anyone without the announce key.
	Topic [32]byte
	// Announce seals announcements (XChaCha20-Poly1305).
	Announce [32]byte
}

// hkdfSalt is fixed: the secret is uniformly random already, the salt only
// separates punchd's keys from any other use of the same bytes.
const hkdfSalt = "punchd network v1"

// Keys derives the network's keys from its secret.
func (c Code) Keys() Keys {
	var k Keys
	derive := func(label string, out []byte) {
		b, err := hkdf.Key(sha256.New, c.Secret[:], []byte(hkdfSalt), label, len(out))
		if err != nil {
			panic("network: hkdf: " + err.Error()) // only for lengths > 255*32
		}
		copy(out, b)
	}
	derive("topic", k.Topic[:])
	derive("announce", k.Announce[:])
	return k
}

// TopicID is the topic as the rendezvous protocol carries it.
func (k Keys) TopicID() string { return hex.EncodeToString(k.Topic[:]) }
