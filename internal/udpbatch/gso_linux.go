package udpbatch

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// UDP generic segmentation offload (Linux UDP_SEGMENT): consecutive
// datagrams of one size to one destination go to the kernel as one large
// send with a segment size, and the kernel (or the NIC) cuts them. The
// profile of a one-datagram-per-slot sendmmsg showed ~70% of the sender's
// CPU in the syscall's per-datagram path; stock wireguard-go does this
// too. Kernels without it fail the first such send with EIO or EINVAL
// (IsGSOUnsupported); callers then stop asking for it.

const (
	// MaxSegments is the kernel's UDP_MAX_SEGMENTS.
	MaxSegments = 64
	// MaxGSOBytes keeps a coalesced datagram within one IP packet's size.
	MaxGSOBytes = 65000
)

// segmentCmsgLen is the control message space of one UDP_SEGMENT.
var segmentCmsgLen = unix.CmsgSpace(2)

// Batch lays out datagrams for one sendmmsg (ipv4.PacketConn.WriteBatch):
// with GSO, runs of datagrams of one size (the last may be shorter) to
// one destination join into one message with a segment size. Each
// datagram is a header (may be empty) and a payload, copied into the
// batch's arena; reused, it does not allocate.
type Batch struct {
	msgs  []ipv4.Message
	oob   [][]byte
	arena []byte
	n     int            // messages in use
	start int            // arena offset of the current message
	seg   int            // current message's segment size
	count int            // datagrams in the current message
	dst   netip.AddrPort // current message's destination
	gso   bool
}

// NewBatch makes room for max messages.
func NewBatch(max int) *Batch {
	b := &Batch{msgs: make([]ipv4.Message, max), oob: make([][]byte, max)}
	for i := range b.msgs {
		b.oob[i] = make([]byte, segmentCmsgLen)
		b.msgs[i].Buffers = make([][]byte, 1)
	}
	return b
}

// Reset empties the batch for about size bytes of datagrams (more only
// costs a larger arena); without gso every datagram is its own message.
func (b *Batch) Reset(size int, gso bool) {
	for i := 0; i < b.n; i++ {
		b.msgs[i].Buffers[0], b.msgs[i].Addr, b.msgs[i].OOB = nil, nil, nil
	}
	if cap(b.arena) < size {
		b.arena = make([]byte, 0, size)
	}
	b.arena = b.arena[:0]
	b.n, b.start, b.count, b.gso = 0, 0, 0, gso
}

// Add appends one datagram, hdr then payload, to addr (dst is the same
// address as a value, for comparing). It reports false, adding nothing,
// when the batch holds its maximum of messages: send them and Reset.
func (b *Batch) Add(addr net.Addr, dst netip.AddrPort, hdr, payload []byte) bool {
	l := len(hdr) + len(payload)
	cur := len(b.arena) - b.start
	join := b.gso && b.n > 0 && dst == b.dst && b.count < MaxSegments &&
		l <= b.seg && cur%b.seg == 0 && cur+l <= MaxGSOBytes && len(b.arena)+l <= cap(b.arena)
	if !join {
		if b.n == len(b.msgs) {
			return false
		}
		if len(b.arena)+l > cap(b.arena) {
			// Earlier messages keep the old arena alive; new ones go here.
			b.arena = make([]byte, 0, max(2*cap(b.arena), l))
		}
		b.start, b.seg, b.count, b.dst = len(b.arena), l, 0, dst
		m := &b.msgs[b.n]
		m.Addr, m.OOB = addr, nil
		b.n++
	}
	b.arena = append(b.arena, hdr...)
	b.arena = append(b.arena, payload...)
	b.count++
	m := &b.msgs[b.n-1]
	m.Buffers[0] = b.arena[b.start:len(b.arena)]
	if b.count == 2 {
		putSegment(b.oob[b.n-1], uint16(b.seg))
		m.OOB = b.oob[b.n-1]
	}
	return true
}

// Messages are the laid-out messages.
func (b *Batch) Messages() []ipv4.Message { return b.msgs[:b.n] }

// putSegment writes a UDP_SEGMENT control message for size into oob.
func putSegment(oob []byte, size uint16) {
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level = unix.SOL_UDP
	h.Type = unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(oob[unix.CmsgLen(0):], size)
}

// IsGSOUnsupported tells a kernel (or a route) without UDP GSO from other
// send errors.
func IsGSOUnsupported(err error) bool {
	return errors.Is(err, syscall.EIO) || errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOPROTOOPT) || errors.Is(err, syscall.EOPNOTSUPP)
}
