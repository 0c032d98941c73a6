package tunnel

import (
	"net"

	"github.com/punchd/punchd/internal/channeldata"
	"github.com/punchd/punchd/internal/udpbatch"
)

// UDP GSO (see udpbatch): the shared socket and the relay channels send
// runs of equal-sized datagrams as one message with a segment size.

// coalescedSize is the bytes bufs take laid out by addFramed.
func coalescedSize(bufs [][]byte, channel uint16) int {
	need := 0
	for _, b := range bufs {
		need += len(b)
	}
	if channel != 0 {
		need += channeldata.HeaderSize * len(bufs)
	}
	return need
}

// addFramed adds bufs to g as datagrams to addr; with GSO, runs of one
// size become one message. A nonzero channel frames every datagram as
// TURN ChannelData on that channel (RFC 8656 §12.4, unpadded as UDP
// allows), so each segment is a 4-byte header and the packet. bufs must
// not exceed batchSize.
func addFramed(g *udpbatch.Batch, bufs [][]byte, addr *net.UDPAddr, channel uint16) {
	var hdr [channeldata.HeaderSize]byte
	h := hdr[:0]
	if channel != 0 {
		h = hdr[:]
	}
	dst := addr.AddrPort()
	for _, b := range bufs {
		if channel != 0 {
			channeldata.PutHeader(hdr[:], channel, len(b))
		}
		g.Add(addr, dst, h, b)
	}
}
