// Package birthday gets a direct UDP path between a symmetric NAT and a
// port-restricted one, where ICE alone cannot: the hard (symmetric) side
// opens many sockets that each send one packet to the easy side's public
// address, which gives each a mapping on its NAT that admits the easy side;
// the easy side sends probes to ports of the hard side's public address
// (the predicted ones first when the hard NAT allocates in sequence, then
// random ones). The first probe that lands on one of those mappings is
// answered from that socket, and that socket and address pair is the path.
//
// Every attempt is bounded: sockets, probes and packets per second have
// defaults and hard caps (Config), an attempt stops at the first hit or at
// its cap, and a Cooldown keeps a pair from trying again soon after a
// miss. Probes carry a MAC under a key the two peers exchanged over their
// sealed signaling, so no one else can answer a probe and take the path.
package birthday

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
)

// Kind is a packet's role.
type Kind uint8

const (
	// KindSpray goes from each hard-side socket to the easy side, to make
	// the mapping; the easy side's NAT normally drops it.
	KindSpray Kind = 1
	// KindProbe goes from the easy side to a port of the hard side.
	KindProbe Kind = 2
	// KindAck answers a probe, from the hard-side socket it reached.
	KindAck Kind = 3
	// KindKeepalive keeps a found path's mappings open and tells each side
	// the path still works (Link).
	KindKeepalive Kind = 4
)

func (k Kind) String() string {
	switch k {
	case KindSpray:
		return "spray"
	case KindProbe:
		return "probe"
	case KindAck:
		return "ack"
	case KindKeepalive:
		return "keepalive"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Packet layout, 33 bytes:
//
//	0..3   magic "PDbd": the first byte 0x50 has the top bits 01, so the
//	       packet is never STUN, and is not a WireGuard type (1-4)
//	4      kind
//	5..12  session
//	13..14 index: the hard side's socket (spray, ack) or the probe number
//	15..16 port: the hard side's public port the probe was sent to
//	       (echoed by the ack, which must come from that port)
//	17..32 MAC: HMAC-SHA256 under the attempt's key over bytes 0..16,
//	       truncated to 16 bytes
const (
	PacketSize = 33
	headerSize = 17
	macSize    = 16
)

var magic = [4]byte{'P', 'D', 'b', 'd'}

// Session tells one attempt's packets from another's.
type Session [8]byte

func (s Session) String() string { return hex.EncodeToString(s[:]) }

// Key authenticates an attempt's packets. Both sides get it from the
// sealed signaling message that starts the attempt.
type Key [32]byte

// NewKey returns a random key.
func NewKey() (Key, error) {
	var k Key
	if _, err := rand.Read(k[:]); err != nil {
		return k, fmt.Errorf("birthday key: %w", err)
	}
	return k, nil
}

// NewSession returns a random session id.
func NewSession() (Session, error) {
	var s Session
	if _, err := rand.Read(s[:]); err != nil {
		return s, fmt.Errorf("birthday session: %w", err)
	}
	return s, nil
}

// Packet is one decoded packet.
type Packet struct {
	Kind    Kind
	Session Session
	Index   uint16
	Port    uint16
}

// Errors of Open; all mean "drop it".
var (
	ErrNotBirthday = errors.New("not a birthday packet")
	ErrBadMAC      = errors.New("birthday packet with a bad MAC")
	ErrOtherSess   = errors.New("birthday packet of another session")
)

// Is reports whether b looks like a birthday packet (size and magic), the
// cheap test a socket's classifier makes before handing it over.
func Is(b []byte) bool {
	return len(b) == PacketSize && [4]byte(b[:4]) == magic
}

// Seal renders p under key.
func Seal(key *Key, p Packet) []byte {
	b := make([]byte, PacketSize)
	copy(b, magic[:])
	b[4] = byte(p.Kind)
	copy(b[5:13], p.Session[:])
	binary.BigEndian.PutUint16(b[13:15], p.Index)
	binary.BigEndian.PutUint16(b[15:17], p.Port)
	m := hmac.New(sha256.New, key[:])
	m.Write(b[:headerSize])
	copy(b[headerSize:], m.Sum(nil)[:macSize])
	return b
}

// Open checks b's MAC under key and that it belongs to session, and
// decodes it.
func Open(key *Key, session Session, b []byte) (Packet, error) {
	if !Is(b) {
		return Packet{}, ErrNotBirthday
	}
	m := hmac.New(sha256.New, key[:])
	m.Write(b[:headerSize])
	if !hmac.Equal(m.Sum(nil)[:macSize], b[headerSize:]) {
		return Packet{}, ErrBadMAC
	}
	p := Packet{Kind: Kind(b[4]), Index: binary.BigEndian.Uint16(b[13:15]), Port: binary.BigEndian.Uint16(b[15:17])}
	copy(p.Session[:], b[5:13])
	if p.Session != session {
		return Packet{}, ErrOtherSess
	}
	if p.Kind < KindSpray || p.Kind > KindKeepalive {
		return Packet{}, fmt.Errorf("birthday packet of unknown %v", p.Kind)
	}
	return p, nil
}
