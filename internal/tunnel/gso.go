package tunnel

import (
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// UDP generic segmentation offload (Linux UDP_SEGMENT): consecutive
// datagrams of one size to one destination go to the kernel as one large
// send with a segment size, and the kernel (or the NIC) cuts them. The
// profile of a one-datagram-per-slot sendmmsg showed ~70% of the sender's
// CPU in the syscall's per-datagram path; this is what stock wireguard-go
// does too. Kernels without it fail the first send with EIO/EINVAL and we
// fall back for good.

const (
	// maxGSOSegments is the kernel's UDP_MAX_SEGMENTS.
	maxGSOSegments = 64
	// maxGSOBytes keeps a coalesced datagram within one IP packet's size.
	maxGSOBytes = 65000
)

var gsoCmsgLen = unix.CmsgSpace(2)

// gsoBuffers is one Send's coalescing space: one arena that the groups
// are laid out in back to back, and a control message per group, reused
// through a pool (no allocation per packet). The arena grows to the
// largest batch seen (128 MTU-sized packets: ~190 KiB) rather than
// holding a full 64 KiB per group.
type gsoBuffers struct {
	arena []byte
	oob   [][]byte
	msgs  []ipv4.Message
}

func newGSOBuffers() *gsoBuffers {
	g := &gsoBuffers{
		oob:  make([][]byte, batchSize),
		msgs: make([]ipv4.Message, batchSize),
	}
	for i := range g.msgs {
		g.oob[i] = make([]byte, gsoCmsgLen)
		g.msgs[i].Buffers = make([][]byte, 1)
	}
	return g
}

// putSegmentCmsg writes a UDP_SEGMENT control message for size into b.
func putSegmentCmsg(b []byte, size uint16) {
	h := (*unix.Cmsghdr)(unsafePointer(&b[0]))
	h.Level = unix.SOL_UDP
	h.Type = unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(b[unix.CmsgLen(0):], size)
}

// coalesce groups bufs into g.msgs: runs of equal-sized datagrams (the
// last of a run may be shorter) become one message with a segment size.
// A nonzero channel frames every datagram as TURN ChannelData on that
// channel (RFC 8656 §12.4, unpadded as UDP allows), so each segment is a
// 4-byte header and the packet. It returns the number of messages.
func coalesce(g *gsoBuffers, bufs [][]byte, addr *net.UDPAddr, channel uint16) int {
	hdr := 0
	if channel != 0 {
		hdr = channelDataHeader
	}
	need := hdr * len(bufs)
	for _, b := range bufs {
		need += len(b)
	}
	if cap(g.arena) < need {
		g.arena = make([]byte, need)
	}
	off := 0
	n := 0
	for i := 0; i < len(bufs); {
		seg := hdr + len(bufs[i])
		// Appends below stay within the arena: it holds all of bufs.
		data := g.arena[off:off]
		count := 0
		for i < len(bufs) && count < maxGSOSegments {
			l := hdr + len(bufs[i])
			if count > 0 && (l > seg || len(data)%seg != 0 || len(data)+l > maxGSOBytes) {
				break // a larger datagram, one after a short tail, or full
			}
			if hdr > 0 {
				data = binary.BigEndian.AppendUint16(data, channel)
				data = binary.BigEndian.AppendUint16(data, uint16(len(bufs[i])))
			}
			data = append(data, bufs[i]...)
			count++
			i++
			if l < seg {
				break // a short datagram ends the run
			}
		}
		off += len(data)
		m := &g.msgs[n]
		m.Buffers[0] = data
		m.Addr = addr
		if count > 1 {
			putSegmentCmsg(g.oob[n], uint16(seg))
			m.OOB = g.oob[n]
		} else {
			m.OOB = nil
		}
		n++
	}
	return n
}

// gsoState remembers whether the kernel takes UDP_SEGMENT. Read on every
// Send, so an atomic rather than a lock.
type gsoState struct {
	disabled atomic.Bool
	pool     sync.Pool // *gsoBuffers
}

func (s *gsoState) enabled() bool { return !s.disabled.Load() }

func (s *gsoState) disable() { s.disabled.Store(true) }

// isGSOUnsupported tells a kernel without UDP GSO from other send errors.
func isGSOUnsupported(err error) bool {
	return errors.Is(err, syscall.EIO) || errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOPROTOOPT) || errors.Is(err, syscall.EOPNOTSUPP)
}
