package tunnel

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/punchd/punchd/internal/identity"
)

// Peer relays: a peer M with direct paths to both A and B carries their
// WireGuard datagrams when A and B have no direct path of their own. The
// datagrams stay WireGuard between A and B end to end; M only swaps a
// small header. On the shared socket:
//
//	frame = 0xF1 | kind | 0 | 0 | key id[8] | inner
//
// kind forward (A -> M): "send inner to the peer with this key id";
// kind deliver (M -> B): "inner comes from the peer with this key id".
// The key id is the first 8 bytes of the public key, so a full-size
// WireGuard packet plus the header still fits a 1500-byte path. 0xF1 is
// no WireGuard type (1-4), no STUN message (top bits 00) and no TURN
// ChannelData (0x40-0x7F).
//
// inner is a WireGuard datagram or a probe, which measures the round
// trip through the relay (and, sent over a peer's own path, through that):
//
//	probe = 0xF2 | 'p' | type (1 request, 2 reply) | 0 | nonce[8] | sent unix-ns[8]
//
// M forwards only from the current direct address of a peer it knows to a
// peer it knows that has a direct path, one datagram for one: it is no
// open reflector and amplifies nothing.

const (
	peerRelayMagic  = 0xF1
	relayKindFwd    = 1
	relayKindDlv    = 2
	relayHeaderSize = 12
	probeMagic      = 0xF2
	probeSize       = 24
	probeRequest    = 1
	probeReply      = 2
)

// keyID is how a relay frame names a peer.
type keyID [8]byte

func idOf(k identity.PublicKey) keyID { return keyID(k[:8]) }

// ProbeResult is one answered probe: the peer, the relay it went through
// (zero: the peer's own path) and the round trip.
type ProbeResult struct {
	Peer, Via identity.PublicKey
	RTT       time.Duration
}

// isPeerRelay reports whether pkt is a relay frame.
func isPeerRelay(pkt []byte) bool {
	return len(pkt) >= relayHeaderSize && pkt[0] == peerRelayMagic && pkt[2] == 0 && pkt[3] == 0 &&
		(pkt[1] == relayKindFwd || pkt[1] == relayKindDlv)
}

func isProbe(pkt []byte) bool {
	return len(pkt) == probeSize && pkt[0] == probeMagic && pkt[1] == 'p' && (pkt[2] == probeRequest || pkt[2] == probeReply)
}

// SetPeerRelay says whether this Bind forwards for other peers.
func (b *Bind) SetPeerRelay(on bool) { b.relayFor.Store(on) }

// SetProbeHandler sets the function answered probes are reported to; it is
// called on a receive path and must not block.
func (b *Bind) SetProbeHandler(fn func(ProbeResult)) { b.onProbe.Store(&fn) }

// SetVia sends peer's packets through the peer via (its direct path),
// framed for forwarding, ahead of ICE's path; the zero key clears it.
// Packets held for want of a path go out through via at once.
func (b *Bind) SetVia(peer, via identity.PublicKey) {
	e := b.peer(peer)
	if via.IsZero() {
		e.via.Store(nil)
		return
	}
	v := b.peer(via)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.via.Store(v)
	if len(e.pending) > 0 && b.sendVia(v, idOf(peer), e.pending) == nil {
		e.pending = nil
	}
}

// Via returns the peer that peer's packets go through, or the zero key.
func (b *Bind) Via(peer identity.PublicKey) identity.PublicKey {
	if v := b.peer(peer).via.Load(); v != nil {
		return v.key
	}
	return identity.PublicKey{}
}

// Probe sends a probe to peer, through via when it is set, else over
// peer's own path; the answer is reported to the probe handler.
func (b *Bind) Probe(peer, via identity.PublicKey) error {
	p := make([]byte, probeSize)
	p[0], p[1], p[2] = probeMagic, 'p', probeRequest
	_, _ = rand.Read(p[4:12])
	binary.BigEndian.PutUint64(p[12:], uint64(time.Now().UnixNano()))
	if via.IsZero() {
		r := b.peer(peer).path.Load()
		if r == nil {
			return errNoPath
		}
		return b.sendRoute([][]byte{p}, r)
	}
	return b.sendVia(b.peer(via), idOf(peer), [][]byte{p})
}

var errNoPath = errors.New("no path to the peer")

// sendVia frames bufs for relay through via's direct path. One datagram
// at a time: a relayed path is the exception, not the hot path.
func (b *Bind) sendVia(via *peerEndpoint, dst keyID, bufs [][]byte) error {
	r := via.path.Load()
	if r == nil || r.dst == nil {
		return errNoPath
	}
	s := b.sock.Load()
	if s == nil {
		return errNoSocket
	}
	frame := make([]byte, 0, relayHeaderSize+2048)
	for _, buf := range bufs {
		frame = append(frame[:0], peerRelayMagic, relayKindFwd, 0, 0)
		frame = append(frame, dst[:]...)
		frame = append(frame, buf...)
		if _, err := s.udp.WriteToUDP(frame, r.dst); err != nil {
			return err
		}
	}
	return nil
}

// peerByID finds a known peer by key id.
func (b *Bind) peerByID(id keyID) *peerEndpoint {
	b.peersMu.RLock()
	defer b.peersMu.RUnlock()
	for k, e := range b.peers {
		if idOf(k) == id {
			return e
		}
	}
	return nil
}

// sortRelay handles a relay frame from src (the peer whose direct address
// sent it, nil for a stranger): forwards it, answers a probe, or puts a
// relayed WireGuard datagram into slot with the endpoint of the peer it
// is from. It reports whether it filled the slot.
func (b *Bind) sortRelay(pkt []byte, src *peerEndpoint, slot []byte, size *int, ep *conn.Endpoint) bool {
	if src == nil {
		b.relayJunk.Add(1)
		return false
	}
	other := b.peerByID(keyID(pkt[4:12]))
	if other == nil || other == src {
		b.relayJunk.Add(1)
		return false
	}
	inner := pkt[relayHeaderSize:]
	switch pkt[1] {
	case relayKindFwd:
		// src asks us to carry inner to other.
		r := other.path.Load()
		if !b.relayFor.Load() || r == nil || r.dst == nil {
			b.relayJunk.Add(1)
			return false
		}
		pkt[1] = relayKindDlv
		id := idOf(src.key)
		copy(pkt[4:12], id[:])
		if s := b.sock.Load(); s != nil {
			if _, err := s.udp.WriteToUDP(pkt, r.dst); err == nil {
				b.relayed.Add(1)
			}
		}
		return false
	case relayKindDlv:
		// inner comes from other, carried by src.
		if isProbe(inner) {
			b.answerProbe(inner, other, src)
			return false
		}
		if Classify(inner) != KindWireGuard {
			b.relayJunk.Add(1)
			return false
		}
		copy(slot, inner)
		*size = len(inner)
		*ep = other
		return true
	}
	return false
}

// answerProbe replies to a probe request from peer (through via, or over
// peer's own path when via is nil) and reports a reply.
func (b *Bind) answerProbe(p []byte, peer, via *peerEndpoint) {
	switch p[2] {
	case probeRequest:
		reply := append([]byte(nil), p...)
		reply[2] = probeReply
		if via != nil {
			_ = b.sendVia(via, idOf(peer.key), [][]byte{reply})
		} else if r := peer.path.Load(); r != nil {
			_ = b.sendRoute([][]byte{reply}, r)
		}
	case probeReply:
		sent := time.Unix(0, int64(binary.BigEndian.Uint64(p[12:])))
		rtt := time.Since(sent)
		if rtt < 0 || rtt > time.Minute {
			return
		}
		if fn := b.onProbe.Load(); fn != nil {
			res := ProbeResult{Peer: peer.key, RTT: rtt}
			if via != nil {
				res.Via = via.key
			}
			(*fn)(res)
		}
	}
}

// PeerRelayStats counts relay frames.
type PeerRelayStats struct {
	Forwarded uint64 // datagrams we carried for others
	Refused   uint64 // relay frames from strangers, to unknown peers, or while not relaying
}

// PeerRelayStats returns the counters.
func (b *Bind) PeerRelayStats() PeerRelayStats {
	return PeerRelayStats{Forwarded: b.relayed.Load(), Refused: b.relayJunk.Load()}
}
