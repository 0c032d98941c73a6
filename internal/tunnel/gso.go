package tunnel

import (
	"net"
	"sync"
	"sync/atomic"

	"golang.org/x/net/ipv4"

	"github.com/punchd/punchd/internal/channeldata"
	"github.com/punchd/punchd/internal/udpbatch"
)

// UDP GSO (see udpbatch): the shared socket and the relay channels send
// runs of equal-sized datagrams as one message with a segment size.

// coalesce lays bufs out in g for one sendmmsg to addr with GSO. A
// nonzero channel frames every datagram as TURN ChannelData on that
// channel (RFC 8656 §12.4, unpadded as UDP allows), so each segment is a
// 4-byte header and the packet. bufs must not exceed batchSize.
func coalesce(g *udpbatch.Batch, bufs [][]byte, addr *net.UDPAddr, channel uint16) []ipv4.Message {
	var hdr [channeldata.HeaderSize]byte
	h := hdr[:0]
	need := 0
	for _, b := range bufs {
		need += len(b)
	}
	if channel != 0 {
		h = hdr[:]
		need += channeldata.HeaderSize * len(bufs)
	}
	g.Reset(need, true)
	dst := addr.AddrPort()
	for _, b := range bufs {
		if channel != 0 {
			channeldata.PutHeader(hdr[:], channel, len(b))
		}
		g.Add(addr, dst, h, b)
	}
	return g.Messages()
}

// gsoState remembers whether the kernel takes UDP_SEGMENT. Read on every
// Send, so an atomic rather than a lock.
type gsoState struct {
	disabled atomic.Bool
	pool     sync.Pool // *udpbatch.Batch
}

func (s *gsoState) enabled() bool { return !s.disabled.Load() }

func (s *gsoState) disable() { s.disabled.Store(true) }
