package rendezvous

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/crypto/nacl/box"

	"github.com/punchd/punchd/internal/identity"
)

// Peer-to-peer payloads are sealed end to end with NaCl box over the two
// static keys: the rendezvous sees only who talks to whom. Inside the box a
// header carries the sender's session (random per process), a counter and a
// timestamp, so a recorded message replayed by the server (or anyone) is
// refused.
//
//	sealed = nonce[24] || box(session u64 | counter u64 | unix-ms i64 | payload)

const (
	sealHeader = 24
	// replayWindow bounds how old (or how far in the future) a message's
	// timestamp may be: clocks of home machines drift, but not by minutes.
	replayWindow = 2 * time.Minute
	// sessionsPerPeer bounds replay state: the newest sessions of a peer.
	sessionsPerPeer = 4
	// maxReplayPeers bounds replay state across peers.
	maxReplayPeers = 4096
)

var errReplay = errors.New("replayed or stale message")

type sealer struct {
	priv    [32]byte
	session uint64

	mu      sync.Mutex
	counter uint64
	shared  map[identity.PublicKey]*[32]byte
	seen    map[identity.PublicKey][]sessionState
}

type sessionState struct {
	session, counter uint64
}

func newSealer(key identity.PrivateKey) *sealer {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &sealer{
		priv:    [32]byte(key),
		session: binary.BigEndian.Uint64(b[:]),
		shared:  make(map[identity.PublicKey]*[32]byte),
		seen:    make(map[identity.PublicKey][]sessionState),
	}
}

// sharedKey caches the Curve25519 computation per peer.
func (s *sealer) sharedKey(peer identity.PublicKey) *[32]byte {
	if k, ok := s.shared[peer]; ok {
		return k
	}
	if len(s.shared) >= maxReplayPeers {
		clear(s.shared)
	}
	k := new([32]byte)
	pub := [32]byte(peer)
	box.Precompute(k, &pub, &s.priv)
	s.shared[peer] = k
	return k
}

func (s *sealer) seal(to identity.PublicKey, payload []byte, now time.Time) []byte {
	s.mu.Lock()
	s.counter++
	counter := s.counter
	key := s.sharedKey(to)
	s.mu.Unlock()

	var nonce [24]byte
	_, _ = rand.Read(nonce[:])
	plain := make([]byte, sealHeader, sealHeader+len(payload))
	binary.BigEndian.PutUint64(plain[0:], s.session)
	binary.BigEndian.PutUint64(plain[8:], counter)
	binary.BigEndian.PutUint64(plain[16:], uint64(now.UnixMilli()))
	plain = append(plain, payload...)
	return box.SealAfterPrecomputation(nonce[:], plain, &nonce, key)
}

func (s *sealer) open(from identity.PublicKey, sealed []byte, now time.Time) ([]byte, error) {
	if len(sealed) < 24+box.Overhead+sealHeader {
		return nil, fmt.Errorf("sealed message too short (%d bytes)", len(sealed))
	}
	var nonce [24]byte
	copy(nonce[:], sealed)
	s.mu.Lock()
	key := s.sharedKey(from)
	s.mu.Unlock()
	plain, ok := box.OpenAfterPrecomputation(nil, sealed[24:], &nonce, key)
	if !ok {
		return nil, errors.New("sealed message does not open: not from that peer, or altered on the way")
	}
	session := binary.BigEndian.Uint64(plain[0:])
	counter := binary.BigEndian.Uint64(plain[8:])
	ts := time.UnixMilli(int64(binary.BigEndian.Uint64(plain[16:])))
	if d := now.Sub(ts); d > replayWindow || d < -replayWindow {
		return nil, fmt.Errorf("%w: timestamp off by %s (check the clocks)", errReplay, d.Round(time.Second))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	states := s.seen[from]
	for i := range states {
		if states[i].session == session {
			if counter <= states[i].counter {
				return nil, errReplay
			}
			states[i].counter = counter
			return plain[sealHeader:], nil
		}
	}
	if len(s.seen) >= maxReplayPeers {
		clear(s.seen)
	}
	states = append(states, sessionState{session: session, counter: counter})
	if len(states) > sessionsPerPeer {
		states = states[len(states)-sessionsPerPeer:]
	}
	s.seen[from] = states
	return plain[sealHeader:], nil
}
