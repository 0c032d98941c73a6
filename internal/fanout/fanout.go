package fanout

import (
	"encoding/binary"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"

	"golang.zx2c4.com/wireguard/tun"

	"github.com/punchd/punchd/internal/identity"
)

// Envelope: IPv4 header (20 bytes) | UDP header (8), both ports fanoutPort
// | fanoutMagic | the packet. Only a peer can send one (WireGuard checked
// the outer source against the peer's allowed IPs); the inner source must
// be that same peer's overlay address and the inner destination a group
// address, so an envelope reaches nothing its sender could not reach
// without it.
const (
	fanoutPort  = 28772 // "pd"
	fanoutMagic = "PDF1"
	envelopeLen = 20 + 8 + len(fanoutMagic)
	// maxPendingFanout bounds envelopes waiting for the next Read.
	maxPendingFanout = 512
)

type fanoutPeer struct{ v4, v6 netip.Addr }

// TUN wraps the TUN device given to wireguard-go (its Read and Write;
// the rest of tun.Device passes through). Read and Write are the
// hot path: a packet that is neither a group packet nor an envelope costs
// a few byte comparisons.
type TUN struct {
	tun.Device
	log   *slog.Logger
	self4 netip.Addr   // envelope source; invalid: no IPv4 overlay, no fan-out
	bcast []netip.Addr // subnet broadcasts of our IPv4 overlay prefixes

	mu    sync.Mutex // serializes peer changes
	byKey map[identity.PublicKey]fanoutPeer
	peers atomic.Pointer[[]fanoutPeer] // copy on write, read per packet

	// pending envelopes, handed to wireguard-go by the next Read.
	pendMu  sync.Mutex
	pending []*[]byte
	bufs    sync.Pool // *[]byte
	dropped atomic.Uint64
}

// New wraps dev for a daemon whose overlay addresses are self.
func New(dev tun.Device, self []netip.Prefix, log *slog.Logger) *TUN {
	f := &TUN{Device: dev, log: log, byKey: make(map[identity.PublicKey]fanoutPeer)}
	for _, p := range self {
		if p.Addr().Is4() && !f.self4.IsValid() {
			f.self4 = p.Addr()
		}
		if p.Addr().Is4() && p.Bits() < 31 {
			f.bcast = append(f.bcast, lastAddr(p))
		}
	}
	empty := []fanoutPeer{}
	f.peers.Store(&empty)
	f.bufs.New = func() any {
		b := make([]byte, 0, 2048)
		return &b
	}
	return f
}

// lastAddr is the highest address of p: its IPv4 broadcast.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	v := binary.BigEndian.Uint32(a[:]) | (1<<(32-p.Bits()) - 1)
	binary.BigEndian.PutUint32(a[:], v)
	return netip.AddrFrom4(a)
}

// SetPeer records a peer's overlay addresses (its /32 and /128 allowed
// IPs); RemovePeer forgets them.
func (f *TUN) SetPeer(key identity.PublicKey, allowed []netip.Prefix) {
	var p fanoutPeer
	for _, a := range allowed {
		switch {
		case a.Addr().Is4() && a.IsSingleIP() && !p.v4.IsValid():
			p.v4 = a.Addr()
		case a.Addr().Is6() && a.IsSingleIP() && !p.v6.IsValid():
			p.v6 = a.Addr()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.byKey[key] = p
	f.publishLocked()
}

// RemovePeer stops fan-out to a peer.
func (f *TUN) RemovePeer(key identity.PublicKey) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.byKey, key)
	f.publishLocked()
}

func (f *TUN) publishLocked() {
	peers := make([]fanoutPeer, 0, len(f.byKey))
	for _, p := range f.byKey {
		peers = append(peers, p)
	}
	f.peers.Store(&peers)
}

// Read hands wireguard-go what the kernel sent, with group packets
// replaced by one envelope per peer (those queued beyond this batch go
// out with the next Read, before anything new).
func (f *TUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if n := f.takePending(bufs, sizes, offset); n > 0 {
		return n, nil
	}
	n, err := f.Device.Read(bufs, sizes, offset)
	if n == 0 || !f.self4.IsValid() {
		return n, err
	}
	out := 0
	for i := 0; i < n; i++ {
		pkt := bufs[i][offset : offset+sizes[i]]
		if !isGroupPacket(pkt, f.bcast) {
			if out != i {
				// Only after a group packet in the same batch; the
				// buffers belong to wireguard-go's elements, so move
				// bytes, not slices.
				sizes[out] = copy(bufs[out][offset:], pkt)
			}
			out++
			continue
		}
		f.queueEnvelopes(pkt)
	}
	if out == 0 {
		return f.takePending(bufs, sizes, offset), err
	}
	return out, err
}

func (f *TUN) queueEnvelopes(pkt []byte) {
	peers := *f.peers.Load()
	f.pendMu.Lock()
	defer f.pendMu.Unlock()
	for _, p := range peers {
		if !p.v4.IsValid() {
			continue
		}
		if len(f.pending) >= maxPendingFanout {
			f.dropped.Add(1)
			continue
		}
		bp := f.bufs.Get().(*[]byte)
		*bp = appendEnvelope((*bp)[:0], f.self4, p.v4, pkt)
		f.pending = append(f.pending, bp)
	}
}

func (f *TUN) takePending(bufs [][]byte, sizes []int, offset int) int {
	f.pendMu.Lock()
	defer f.pendMu.Unlock()
	n := 0
	for n < len(bufs) && n < len(f.pending) {
		bp := f.pending[n]
		if len(*bp) > len(bufs[n])-offset {
			f.dropped.Add(1) // cannot happen with wireguard-go's buffers
			sizes[n] = 0
		} else {
			sizes[n] = copy(bufs[n][offset:], *bp)
		}
		f.bufs.Put(bp)
		n++
	}
	if n > 0 {
		rest := copy(f.pending, f.pending[n:])
		clear(f.pending[rest:])
		f.pending = f.pending[:rest]
	}
	return n
}

// Write passes what peers sent to the kernel, with envelopes opened; an
// envelope that breaks the rules is dropped.
func (f *TUN) Write(bufs [][]byte, offset int) (int, error) {
	var bad []int
	for i, b := range bufs {
		pkt := b[offset:]
		if !isEnvelope(pkt, f.self4) {
			continue
		}
		inner, ok := f.open(pkt)
		if !ok {
			bad = append(bad, i)
			continue
		}
		n := copy(pkt, inner) // overlapping: copy moves like memmove
		bufs[i] = b[:offset+n]
	}
	if len(bad) == 0 {
		return f.Device.Write(bufs, offset)
	}
	f.dropped.Add(uint64(len(bad)))
	f.log.Debug("dropped broadcast envelopes that break the rules", "count", len(bad))
	kept := make([][]byte, 0, len(bufs)-len(bad))
	for i, b := range bufs {
		if len(bad) > 0 && bad[0] == i {
			bad = bad[1:]
			continue
		}
		kept = append(kept, b)
	}
	if len(kept) == 0 {
		return len(bufs), nil
	}
	_, err := f.Device.Write(kept, offset)
	return len(bufs), err
}

// open returns the packet inside envelope env if its sender may send it:
// the envelope comes from a peer, the packet from that peer's own overlay
// address, to a group address.
func (f *TUN) open(env []byte) ([]byte, bool) {
	src := netip.AddrFrom4([4]byte(env[12:16]))
	var from fanoutPeer
	found := false
	for _, p := range *f.peers.Load() {
		if p.v4 == src {
			from, found = p, true
			break
		}
	}
	inner := env[envelopeLen:]
	if !found || len(inner) < 20 {
		return nil, false
	}
	switch inner[0] >> 4 {
	case 4:
		if int(binary.BigEndian.Uint16(inner[2:4])) != len(inner) ||
			netip.AddrFrom4([4]byte(inner[12:16])) != from.v4 || !isGroupPacket(inner, f.bcast) {
			return nil, false
		}
	case 6:
		if len(inner) < 40 || int(binary.BigEndian.Uint16(inner[4:6]))+40 != len(inner) ||
			netip.AddrFrom16([16]byte(inner[8:24])) != from.v6 || !isGroupPacket(inner, f.bcast) {
			return nil, false
		}
	default:
		return nil, false
	}
	return inner, true
}

// isEnvelope: IPv4 without options, UDP to self on fanoutPort, with the
// magic.
func isEnvelope(pkt []byte, self netip.Addr) bool {
	return len(pkt) >= envelopeLen && pkt[0] == 0x45 && pkt[9] == 17 && self.IsValid() &&
		[4]byte(pkt[16:20]) == self.As4() &&
		binary.BigEndian.Uint16(pkt[22:24]) == fanoutPort &&
		string(pkt[28:envelopeLen]) == fanoutMagic
}

// appendEnvelope appends pkt wrapped for dst to b.
func appendEnvelope(b []byte, src, dst netip.Addr, pkt []byte) []byte {
	total := envelopeLen + len(pkt)
	start := len(b)
	b = append(b, make([]byte, envelopeLen)...)
	h := b[start:]
	h[0] = 0x45 // IPv4, 20-byte header
	binary.BigEndian.PutUint16(h[2:4], uint16(total))
	h[8] = 64 // TTL
	h[9] = 17 // UDP
	s, d := src.As4(), dst.As4()
	copy(h[12:16], s[:])
	copy(h[16:20], d[:])
	binary.BigEndian.PutUint16(h[10:12], ipv4Checksum(h[:20]))
	binary.BigEndian.PutUint16(h[20:22], fanoutPort)
	binary.BigEndian.PutUint16(h[22:24], fanoutPort)
	binary.BigEndian.PutUint16(h[24:26], uint16(8+len(fanoutMagic)+len(pkt)))
	// UDP checksum 0: optional over IPv4, and the envelope never reaches
	// a kernel (the receiving TUN opens it).
	copy(h[28:], fanoutMagic)
	return append(b, pkt...)
}

func ipv4Checksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i : i+2]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
