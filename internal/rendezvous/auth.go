package rendezvous

import (
	"crypto/rand"
	"crypto/subtle"
	"errors"

	"golang.org/x/crypto/nacl/box"

	"github.com/punchd/punchd/internal/identity"
)

// Registration is challenge-response over the peers' X25519 keys (they
// cannot sign): the server sends a fresh ephemeral public key and nonce; the
// client seals a fixed statement binding both with box(client private,
// server ephemeral public); only the holder of the private key behind the
// claimed ID can produce a box the server opens with (server ephemeral
// private, client public). The ephemeral key is new per connection, so a
// proof cannot be replayed.

func authStatement(serverKey *[32]byte, nonce *[24]byte) []byte {
	s := []byte("punchd rendezvous register v1\x00")
	s = append(s, serverKey[:]...)
	return append(s, nonce[:]...)
}

type challenge struct {
	pub, priv *[32]byte
	nonce     [24]byte
}

func newChallenge() (*challenge, error) {
	pub, priv, err := box.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	c := &challenge{pub: pub, priv: priv}
	if _, err := rand.Read(c.nonce[:]); err != nil {
		return nil, err
	}
	return c, nil
}

func prove(key identity.PrivateKey, serverKey *[32]byte, nonce *[24]byte) []byte {
	priv := [32]byte(key)
	return box.Seal(nil, authStatement(serverKey, nonce), nonce, serverKey, &priv)
}

var errAuth = errors.New("registration proof does not match the ID: the client does not hold that key")

func (c *challenge) verify(client identity.PublicKey, proof []byte) error {
	pub := [32]byte(client)
	got, ok := box.Open(nil, proof, &c.nonce, &pub, c.priv)
	if !ok || subtle.ConstantTimeCompare(got, authStatement(c.pub, &c.nonce)) != 1 {
		return errAuth
	}
	return nil
}
