package tunnel

import (
	"encoding/binary"

	"github.com/punchd/punchd/internal/birthday"
)

// Kind is what a datagram arriving on the shared socket is.
type Kind uint8

const (
	KindUnknown   Kind = iota
	KindWireGuard      // one of WireGuard's four message types
	KindSTUN           // a STUN message (ICE checks, binding responses)
	KindPunch          // a birthday-punching probe or ack (internal/birthday)
)

// WireGuard message sizes (see the WireGuard paper, section 5.4).
const (
	wgInitiationSize = 148
	wgResponseSize   = 92
	wgCookieSize     = 64
	wgMinDataSize    = 32 // 16-byte header + 16-byte tag of an empty keepalive
)

const stunMagicCookie = 0x2112A442

// Classify tells WireGuard from STUN on the shared socket. WireGuard is
// checked first because it is the hot path: a type byte 1-4, three zero
// reserved bytes, and the exact size of its type (data: at least the
// header and tag of an empty keepalive). STUN (RFC 8489): the top two bits
// zero, the magic cookie at offset 4, and a length field that is a
// multiple of 4 and accounts for the whole datagram. A STUN message could
// only pass the WireGuard test with message type 0x0100, 0x0200, 0x0300 or
// 0x0400 and length 0, which makes a 20-byte datagram, too short for any
// WireGuard type; so the two never overlap. It does not allocate.
func Classify(pkt []byte) Kind {
	if len(pkt) >= 4 && pkt[1] == 0 && pkt[2] == 0 && pkt[3] == 0 {
		switch pkt[0] {
		case 1:
			if len(pkt) == wgInitiationSize {
				return KindWireGuard
			}
		case 2:
			if len(pkt) == wgResponseSize {
				return KindWireGuard
			}
		case 3:
			if len(pkt) == wgCookieSize {
				return KindWireGuard
			}
		case 4:
			if len(pkt) >= wgMinDataSize {
				return KindWireGuard
			}
		}
	}
	if len(pkt) >= 20 && pkt[0]&0xC0 == 0 &&
		binary.BigEndian.Uint32(pkt[4:8]) == stunMagicCookie {
		n := int(binary.BigEndian.Uint16(pkt[2:4]))
		if n%4 == 0 && 20+n == len(pkt) {
			return KindSTUN
		}
	}
	// Its first byte has the top bits 01: never STUN, never WireGuard.
	if birthday.Is(pkt) {
		return KindPunch
	}
	return KindUnknown
}

func (k Kind) String() string {
	switch k {
	case KindWireGuard:
		return "wireguard"
	case KindSTUN:
		return "stun"
	case KindPunch:
		return "punch"
	default:
		return "unknown"
	}
}
