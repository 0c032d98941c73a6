package tunnel

import (
	"encoding/binary"
	"net"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"

	"github.com/punchd/punchd/internal/udpbatch"
)

// UDP generic receive offload (Linux UDP_GRO): the kernel hands us runs of
// same-sized datagrams from one source as one buffer plus a segment size,
// one syscall slot instead of dozens. We read into our own large buffers
// and cut them into the device's packet slots; what does not fit waits for
// the next call.

// groMessages is how many coalesced buffers one read fills.
const groMessages = 8

// groBufSize holds the largest coalesced read (a 64 KiB IP datagram).
const groBufSize = 65535

type groReader struct {
	msgs []udpbatch.Message
	bufs [][]byte
	oobs [][]byte
	segs []int // segment size per message; 0 when not coalesced
	n    int   // messages read in the last batch
	idx  int   // message being handed out
	off  int   // offset of the next segment in it
}

func newGROReader() *groReader {
	g := &groReader{
		msgs: make([]udpbatch.Message, groMessages),
		bufs: make([][]byte, groMessages),
		oobs: make([][]byte, groMessages),
		segs: make([]int, groMessages),
	}
	for i := range g.msgs {
		g.bufs[i] = make([]byte, groBufSize)
		g.oobs[i] = make([]byte, unix.CmsgSpace(4)*2)
		g.msgs[i].Buf = g.bufs[i]
		g.msgs[i].OOB = g.oobs[i]
	}
	return g
}

// enableGRO asks the kernel to coalesce; false when it cannot.
func enableGRO(c *net.UDPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	ok := false
	_ = rc.Control(func(fd uintptr) {
		ok = unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_GRO, 1) == nil
	})
	return ok
}

// groSegment finds the UDP_GRO segment size in a control message buffer,
// without allocating; 0 when there is none.
func groSegment(oob []byte) int {
	hdr := unix.CmsgLen(0)
	for len(oob) >= hdr {
		h := (*unix.Cmsghdr)(unsafePointer(&oob[0]))
		l := int(h.Len)
		if l < hdr || l > len(oob) {
			return 0
		}
		if h.Level == unix.SOL_UDP && h.Type == unix.UDP_GRO && l >= hdr+2 {
			if l >= hdr+4 {
				return int(binary.NativeEndian.Uint32(oob[hdr:]))
			}
			return int(binary.NativeEndian.Uint16(oob[hdr:]))
		}
		next := unix.CmsgSpace(l - hdr)
		if next > len(oob) {
			return 0 // the last message, unpadded: nothing follows it
		}
		oob = oob[next:]
	}
	return 0
}

// segmentAt cuts the datagram at off out of a coalesced read of segment
// size seg (the last one may be shorter; a seg of 0 or beyond the data
// means one datagram) and returns it with the next datagram's offset.
func segmentAt(data []byte, seg, off int) ([]byte, int) {
	if seg <= 0 || seg > len(data) {
		seg = len(data)
	}
	end := min(off+seg, len(data))
	return data[off:end], end
}

// receiveGRO is receiveSocket for a socket with UDP_GRO on.
func (b *Bind) receiveGRO(d side) conn.ReceiveFunc {
	g := newGROReader()
	return func(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		for {
			if g.idx >= g.n {
				got, err := d.readBatch(g.msgs)
				if err != nil {
					return 0, err
				}
				g.n, g.idx, g.off = got, 0, 0
				for i := 0; i < got; i++ {
					g.segs[i] = groSegment(g.oobs[i][:g.msgs[i].NN])
				}
			}
			srcs := sources{byAddr: *b.byAddr.Load()}
			out := 0
			for g.idx < g.n && out < len(packets) {
				m := &g.msgs[g.idx]
				data := g.bufs[g.idx][:m.N]
				for g.off < len(data) && out < len(packets) {
					var pkt []byte
					pkt, g.off = segmentAt(data, g.segs[g.idx], g.off)
					if b.sort(pkt, m.Addr, &srcs, d.stun, packets[out], &sizes[out], &eps[out]) {
						out++
					}
				}
				if g.off >= len(data) {
					g.idx++
					g.off = 0
				}
			}
			if out > 0 {
				return out, nil
			}
		}
	}
}
