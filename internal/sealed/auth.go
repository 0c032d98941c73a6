package sealed

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/flynn/noise"

	"github.com/punchd/punchd/internal/identity"
)

// Registration proves that the client holds the private key of the ID it
// claims. The server makes a key pair and a nonce for this connection and
// sends both in the challenge; the client answers with one Noise handshake
// message of pattern X (Noise_X_25519_ChaChaPoly_BLAKE2s): the responder's
// static key is the server's per-connection key, the initiator sends its
// own static key encrypted, and the ss term DH(client static, server key)
// can only be computed by the holder of the client's private key (or the
// server's). The prologue binds the protocol, the challenge (key and nonce)
// and the claimed ID, so a proof is good for this connection and ID only.
//
// Registration and sealing (seal.go) use the same static key, in two Noise
// protocols with different names (X here, K there) and different
// prologues. That is sound: Noise starts every handshake by hashing the
// protocol name into the chaining key and the transcript hash, so every
// key the two derive comes from a different starting point, and the
// prologue separates them once more. A hostile server that offers peer B's
// public key as its "server key" makes the client compute DH(A, B) inside
// the registration key schedule, which yields keys unrelated to those of
// an A->B sealed message (and it learns nothing about DH(A, B) itself). The
// Noise spec allows one static key in several Noise protocols as long as
// they share the hash function; all of ours use BLAKE2s, as does WireGuard,
// whose Noise_IKpsk2 handshake uses this very key too. What is not allowed,
// and what punchd's registration did before, is using the key outside Noise
// (a NaCl box under a server-chosen key and nonce).

const (
	registerPrologue = "punchd register v2\x00"
	ChallengeNonce   = 32
	// ProofSize is an X message with an empty payload: e, encrypted s, tag.
	ProofSize = 32 + 32 + 16 + 16
)

func randRead(b []byte) {
	if _, err := rand.Read(b); err != nil {
		panic("rendezvous: crypto/rand failed: " + err.Error()) // never on Linux ≥ 3.17
	}
}

func registerPrologueFor(serverKey, nonce []byte, id identity.PublicKey) []byte {
	p := make([]byte, 0, len(registerPrologue)+32+ChallengeNonce+32)
	p = append(p, registerPrologue...)
	p = append(p, serverKey...)
	p = append(p, nonce...)
	return append(p, id[:]...)
}

// Challenge is the server's side of one connection's registration: a
// fresh key pair and nonce, sent to the client, that its proof must answer.
type Challenge struct {
	key   noise.DHKey
	nonce [ChallengeNonce]byte
}

// NewChallenge makes the challenge for one new connection.
func NewChallenge() (*Challenge, error) {
	k, err := sealSuite.GenerateKeypair(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("make registration challenge: %w", err)
	}
	c := &Challenge{key: k}
	randRead(c.nonce[:])
	return c, nil
}

// Prove answers a challenge for key's ID.
func Prove(key identity.PrivateKey, serverKey, nonce []byte) ([]byte, error) {
	if len(serverKey) != 32 || len(nonce) != ChallengeNonce {
		return nil, fmt.Errorf("challenge needs a 32-byte key and a %d-byte nonce", ChallengeNonce)
	}
	pub := key.PublicKey()
	hs, err := noise.NewHandshakeState(noise.Config{
		CipherSuite:   sealSuite,
		Pattern:       noise.HandshakeX,
		Initiator:     true,
		Prologue:      registerPrologueFor(serverKey, nonce, pub),
		StaticKeypair: noise.DHKey{Private: append([]byte(nil), key[:]...), Public: pub[:]},
		PeerStatic:    serverKey,
	})
	if err != nil {
		return nil, fmt.Errorf("registration proof: %w", err)
	}
	msg, _, _, err := hs.WriteMessage(nil, nil)
	if err != nil {
		return nil, fmt.Errorf("registration proof: %w", err)
	}
	return msg, nil
}

// ErrAuth is why Verify refuses a proof.
var ErrAuth = errors.New("registration proof does not match the ID: the client does not hold that key")

// Verify checks that proof answers c and was made with client's private key.
func (c *Challenge) Verify(client identity.PublicKey, proof []byte) error {
	if len(proof) != ProofSize {
		return fmt.Errorf("%w (proof of %d bytes, want %d)", ErrAuth, len(proof), ProofSize)
	}
	hs, err := noise.NewHandshakeState(noise.Config{
		CipherSuite:   sealSuite,
		Pattern:       noise.HandshakeX,
		Initiator:     false,
		Prologue:      registerPrologueFor(c.key.Public, c.nonce[:], client),
		StaticKeypair: c.key,
	})
	if err != nil {
		return fmt.Errorf("verify registration: %w", err)
	}
	if _, _, _, err := hs.ReadMessage(nil, proof); err != nil {
		return ErrAuth
	}
	if !bytes.Equal(hs.PeerStatic(), client[:]) {
		return ErrAuth
	}
	return nil
}

// ServerKey is the public half of the per-connection key, sent in the challenge.
func (c *Challenge) ServerKey() []byte { return c.key.Public }

// Nonce is the challenge's random nonce, sent with ServerKey.
func (c *Challenge) Nonce() []byte { return c.nonce[:] }
