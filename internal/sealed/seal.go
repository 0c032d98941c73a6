package sealed

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/flynn/noise"
	"golang.zx2c4.com/wireguard/replay"

	"github.com/punchd/punchd/internal/identity"
)

// Peer-to-peer payloads are sealed end to end, each one a one-way Noise
// handshake message of pattern K (Noise_K_25519_ChaChaPoly_BLAKE2s): the
// initiator's static key is the sender's identity key, the responder's the
// recipient's, and a fresh ephemeral key is made for every message.
//
//	sealed  = sealVersion[1] || e[32] || AEAD(inner)     (es, ss mixed in)
//	inner   = session u64 || counter u64 || unix-ms i64 || payload
//	prologue = "punchd seal v2" 0x00 || sender public key || recipient public key
//
// Why this shape:
//   - Nothing the rendezvous chooses enters an operation with a long-term
//     key: the key and nonce come from Noise's key schedule over a fresh
//     ephemeral and the two static keys (the nonce of a K message is always
//     0 under a key used once). The only value the server controls is the
//     "from" it claims, and a wrong one just makes the message not open.
//   - Sender, recipient and direction are bound twice: by the pre-message
//     order of K (initiator static, then responder static) and by the
//     prologue. A message A sent to B, reflected back to A as if from B,
//     does not open: A would need DH(e, A) where the sender used DH(e, B).
//   - K messages can be replayed (the Noise spec says so), hence the inner
//     header: a per-process random session, a counter checked by a sliding
//     window (wireguard-go's RFC 6479 filter: signals sent from several
//     goroutines may overtake each other) and a timestamp that must be
//     within replayWindow of our clock.
//   - Registration (auth.go) is a different Noise protocol (pattern X)
//     with its own prologue; see there for why sharing the static key is
//     sound.
//
// Only senders the daemon accepts are opened at all (see Sealer.Accepts):
// a stranger's message costs a map lookup, no Diffie-Hellman, and leaves
// no replay state behind, so strangers can neither burn CPU on our side
// nor push a real peer's replay memory out.

const (
	sealVersion  = 2
	sealPrologue = "punchd seal v2\x00"
	sealHeader   = 24
	// Overhead is what sealing adds to a payload: version, ephemeral
	// key, inner header, AEAD tag.
	Overhead = 1 + 32 + sealHeader + 16
	// replayWindow bounds how old (or how far in the future) a message's
	// timestamp may be: clocks of home machines drift, but not by minutes.
	replayWindow = 2 * time.Minute
	// sessionsPerPeer bounds replay state per accepted peer: its newest
	// sessions (a session is one run of the peer's daemon).
	sessionsPerPeer = 4
)

// sealSuite is the one cipher suite of every Noise protocol punchd speaks.
// BLAKE2s is WireGuard's hash: the Noise spec asks that a static key be used
// with one hash function only, and our identity key is the WireGuard key.
var sealSuite = noise.NewCipherSuite(noise.DH25519, noise.CipherChaChaPoly, noise.HashBLAKE2s)

// Reasons a sealed message is refused; each is a junk-log cause too.
var (
	ErrUnknownSender = errors.New("sender is not a peer of ours")
	errSealFormat    = errors.New("sealed message malformed")
	errSealOpen      = errors.New("sealed message does not open: not from that peer, not for us, or altered on the way")
	ErrReplay        = errors.New("replayed or stale message")
)

// Sealer seals messages from one identity key and opens messages for it,
// keeping the replay memory of the senders it accepts. Safe for concurrent use.
type Sealer struct {
	self    identity.PublicKey
	static  noise.DHKey
	session uint64
	// accept says which senders may be opened; it is asked before any
	// cryptography or replay state is touched.
	accept func(identity.PublicKey) bool

	mu      sync.Mutex
	counter uint64
	seen    map[identity.PublicKey]*peerReplay
}

// peerReplay is the replay memory of one accepted peer: a window per
// session, the newest sessionsPerPeer sessions.
type peerReplay struct {
	sessions [sessionsPerPeer]sessionReplay
	next     int // ring position of the next new session
}

type sessionReplay struct {
	used   bool
	id     uint64
	filter replay.Filter
}

// NewSealer seals with key and opens only senders accept says yes to (none
// if accept is nil).
func NewSealer(key identity.PrivateKey, accept func(identity.PublicKey) bool) *Sealer {
	pub := key.PublicKey()
	var b [8]byte
	randRead(b[:])
	if accept == nil {
		accept = func(identity.PublicKey) bool { return false }
	}
	return &Sealer{
		self:    pub,
		static:  noise.DHKey{Private: append([]byte(nil), key[:]...), Public: append([]byte(nil), pub[:]...)},
		session: binary.BigEndian.Uint64(b[:]),
		accept:  accept,
		seen:    make(map[identity.PublicKey]*peerReplay),
	}
}

func sealPrologueFor(from, to identity.PublicKey) []byte {
	p := make([]byte, 0, len(sealPrologue)+64)
	p = append(p, sealPrologue...)
	p = append(p, from[:]...)
	return append(p, to[:]...)
}

// Seal seals payload for to, from our key, at now.
func (s *Sealer) Seal(to identity.PublicKey, payload []byte, now time.Time) ([]byte, error) {
	s.mu.Lock()
	s.counter++
	counter := s.counter
	s.mu.Unlock()
	hs, err := noise.NewHandshakeState(noise.Config{
		CipherSuite:   sealSuite,
		Pattern:       noise.HandshakeK,
		Initiator:     true,
		Prologue:      sealPrologueFor(s.self, to),
		StaticKeypair: s.static,
		PeerStatic:    to[:],
	})
	if err != nil {
		return nil, fmt.Errorf("seal for %s: %w", to.Short(), err)
	}
	inner := make([]byte, sealHeader, sealHeader+len(payload))
	binary.BigEndian.PutUint64(inner[0:], s.session)
	binary.BigEndian.PutUint64(inner[8:], counter)
	binary.BigEndian.PutUint64(inner[16:], uint64(now.UnixMilli()))
	inner = append(inner, payload...)
	out := make([]byte, 1, Overhead+len(payload))
	out[0] = sealVersion
	out, _, _, err = hs.WriteMessage(out, inner)
	if err != nil {
		return nil, fmt.Errorf("seal for %s: %w", to.Short(), err)
	}
	return out, nil
}

// Open checks, in this order: the sender is accepted (nothing else is done
// for strangers), the message opens, its timestamp is recent, its counter
// is new. Only a message that passes all of it changes replay state.
func (s *Sealer) Open(from identity.PublicKey, sealed []byte, now time.Time) ([]byte, error) {
	if !s.accept(from) {
		return nil, ErrUnknownSender
	}
	if len(sealed) < Overhead {
		return nil, fmt.Errorf("%w: %d bytes, at least %d needed", errSealFormat, len(sealed), Overhead)
	}
	if sealed[0] != sealVersion {
		return nil, fmt.Errorf("%w: sealed with version %d, this punchd speaks %d (upgrade the older side)", errSealFormat, sealed[0], sealVersion)
	}
	hs, err := noise.NewHandshakeState(noise.Config{
		CipherSuite:   sealSuite,
		Pattern:       noise.HandshakeK,
		Initiator:     false,
		Prologue:      sealPrologueFor(from, s.self),
		StaticKeypair: s.static,
		PeerStatic:    from[:],
	})
	if err != nil {
		return nil, fmt.Errorf("open from %s: %w", from.Short(), err)
	}
	inner, _, _, err := hs.ReadMessage(nil, sealed[1:])
	if err != nil || len(inner) < sealHeader {
		return nil, errSealOpen
	}
	session := binary.BigEndian.Uint64(inner[0:])
	counter := binary.BigEndian.Uint64(inner[8:])
	ts := time.UnixMilli(int64(binary.BigEndian.Uint64(inner[16:])))
	if d := now.Sub(ts); d > replayWindow || d < -replayWindow {
		return nil, fmt.Errorf("%w: timestamp off by %s (check the clocks)", ErrReplay, d.Round(time.Second))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	pr := s.seen[from]
	if pr == nil {
		s.pruneLocked()
		pr = new(peerReplay)
		s.seen[from] = pr
	}
	if !pr.window(session).ValidateCounter(counter, ^uint64(0)) {
		return nil, ErrReplay
	}
	return inner[sealHeader:], nil
}

// window returns the replay filter of session, starting a new one (in
// place of the oldest) for a session not seen yet.
func (pr *peerReplay) window(session uint64) *replay.Filter {
	for i := range pr.sessions {
		if pr.sessions[i].used && pr.sessions[i].id == session {
			return &pr.sessions[i].filter
		}
	}
	sr := &pr.sessions[pr.next]
	pr.next = (pr.next + 1) % sessionsPerPeer
	*sr = sessionReplay{used: true, id: session}
	return &sr.filter
}

// pruneLocked forgets peers no longer accepted (a member who left the
// group), so replay memory is bounded by the accepted set, not by time.
func (s *Sealer) pruneLocked() {
	if len(s.seen) < 64 {
		return
	}
	for k := range s.seen {
		if !s.accept(k) {
			delete(s.seen, k)
		}
	}
}

// Accepts says whether messages from key would be opened at all: a caller
// that passes a sealed message on unopened checks this first, so strangers
// are dropped before anything else is done with what they sent.
func (s *Sealer) Accepts(key identity.PublicKey) bool { return s.accept(key) }
