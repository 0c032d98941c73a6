package tunnel

import (
	"fmt"
	"net"
	"net/netip"
	"slices"

	"golang.org/x/net/ipv4"
	"golang.zx2c4.com/wireguard/conn"

	"github.com/punchd/punchd/internal/channeldata"
	"github.com/punchd/punchd/internal/identity"
	"github.com/punchd/punchd/internal/udpbatch"
)

// route is a Path resolved once in SetPath, so that Send does not build a
// socket address per call.
type route struct {
	Path
	dst *net.UDPAddr // Direct as the socket wants it; nil for a relay path
}

func newRoute(p Path) *route {
	r := &route{Path: p}
	if p.Relay == nil && p.Direct.IsValid() {
		r.dst = net.UDPAddrFromAddrPort(p.Direct)
	}
	return r
}

// peer is the logical endpoint of key, made on first use.
func (b *Bind) peer(key identity.PublicKey) *peerEndpoint {
	b.peersMu.RLock()
	e, ok := b.peers[key]
	b.peersMu.RUnlock()
	if ok {
		return e
	}
	b.peersMu.Lock()
	defer b.peersMu.Unlock()
	if e, ok = b.peers[key]; !ok {
		e = &peerEndpoint{key: key}
		b.peers[key] = e
	}
	return e
}

// SetPath points peer's packets at p, what ICE selected; the zero Path
// means none, and packets are then held (the newest maxPending) until a
// path comes. When both are set, Relay wins: a relay pair's Direct would
// be the relay's address, which the socket cannot reach with our
// allocation's permissions.
//
// Packets held while the peer had no path go out on the new path before
// any packet sent after it, so a handshake initiation is not overtaken by
// the data queued behind it.
func (b *Bind) SetPath(peer identity.PublicKey, p Path) {
	if p.Direct.IsValid() {
		// Receive-side lookups use unmapped addresses; a 4in6 Direct from
		// a dual-stack caller would otherwise never match.
		p.Direct = netip.AddrPortFrom(p.Direct.Addr().Unmap(), p.Direct.Port())
	}
	e := b.peer(peer)
	var next *route
	if !p.IsZero() {
		next = newRoute(p)
	}

	e.mu.Lock()
	pending := e.pending
	e.pending = nil
	if e.passive {
		// Both ends hold a handshake initiation until ICE selects a pair
		// and would fire them at the same instant; crossed initiations
		// left one direction on a key the other side had dropped until
		// WireGuard's 15 s retry. Only the active side sends its held
		// initiation; the passive side answers it.
		pending = slices.DeleteFunc(pending, func(b []byte) bool { return len(b) > 0 && b[0] == 1 })
	}
	if next != nil && len(pending) > 0 {
		// Still holding e.mu and before publishing the path: concurrent
		// Sends find no path, wait for e.mu, and so queue behind these.
		if err := b.sendRoute(pending, next); err != nil {
			b.log.Debug("flush held packets", "peer", peer.Short(), "err", err)
		}
	}
	old := e.path.Swap(next)
	e.mu.Unlock()

	var oldDirect netip.AddrPort
	if old != nil && old.dst != nil {
		oldDirect = old.Direct
	}
	var newDirect netip.AddrPort
	if next != nil && next.dst != nil {
		newDirect = next.Direct
	}
	if oldDirect != newDirect {
		b.setDirect(e, newDirect)
	}
}

// setDirect makes received packets from dst carry e's endpoint (and no
// other address of e). The map is copied on write so that receivers read
// it without a lock.
func (b *Bind) setDirect(e *peerEndpoint, dst netip.AddrPort) {
	b.mu.Lock()
	defer b.mu.Unlock()
	cur := *b.byAddr.Load()
	next := make(map[netip.AddrPort]*peerEndpoint, len(cur)+1)
	for k, v := range cur {
		if v != e {
			next[k] = v
		}
	}
	if dst.IsValid() {
		// Last writer wins, like the ICE mux: two peers behind one address
		// cannot both be direct there.
		next[dst] = e
	}
	b.byAddr.Store(&next)
}

// SetPassive marks peer as the side that does not send a held handshake
// initiation when a path appears (the ICE controlled side), so the two ends
// do not cross initiations.
func (b *Bind) SetPassive(peer identity.PublicKey, passive bool) {
	e := b.peer(peer)
	e.mu.Lock()
	e.passive = passive
	e.mu.Unlock()
}

// forgetPath drops peer's path and held packets (the peer left the
// device); its passive flag stays for when it comes back.
func (b *Bind) forgetPath(peer identity.PublicKey) {
	e := b.peer(peer)
	e.mu.Lock()
	e.pending = nil
	old := e.path.Swap(nil)
	e.mu.Unlock()
	if old != nil && old.dst != nil {
		b.setDirect(e, netip.AddrPort{})
	}
}

// Send writes bufs to ep's current path. It takes no Bind-wide lock: the
// path and the socket are atomic pointers; only a peer without a path
// takes that peer's lock to hold the packets.
func (b *Bind) Send(bufs [][]byte, ep conn.Endpoint) error {
	switch e := ep.(type) {
	case *peerEndpoint:
		if v := e.via.Load(); v != nil {
			if err := b.sendVia(v, idOf(e.key), bufs); err == nil {
				return nil
			}
			// The relaying peer lost its direct path: ICE's path, if any.
		}
		r := e.path.Load()
		if r == nil {
			e.mu.Lock()
			if r = e.path.Load(); r == nil {
				e.holdLocked(bufs)
				e.mu.Unlock()
				return nil
			}
			e.mu.Unlock()
		}
		return b.sendRoute(bufs, r)
	case addrEndpoint:
		// Cookie replies to unknown sources and plain ip:port endpoints;
		// rare, so building the address here is fine.
		return b.sendTo(bufs, net.UDPAddrFromAddrPort(e.dst))
	default:
		return conn.ErrWrongEndpointType
	}
}

func (b *Bind) sendRoute(bufs [][]byte, r *route) error {
	if r.Relay != nil {
		if r.Channel != nil {
			if number, server, ok := r.Channel.Bound(); ok {
				return b.sendChannel(bufs, r.Channel, number, server)
			}
		}
		// One by one, until the TURN channel is bound (or over TCP/TLS
		// to the TURN server, where there is none).
		for _, buf := range bufs {
			if _, err := r.Relay.Write(buf); err != nil {
				return fmt.Errorf("send via relay: %w", err)
			}
		}
		return nil
	}
	return b.sendTo(bufs, r.dst)
}

func errNoIPv6(dst netip.AddrPort) error {
	return fmt.Errorf("send to %s: this host has no IPv6 tunnel socket (no IPv6?)", dst)
}

// sendTo writes bufs to addr on the shared socket (the IPv6 one for an
// IPv6 address) in batches: with UDP GSO when the kernel takes it (see
// gso.go), else one sendmmsg per batch.
func (b *Bind) sendTo(bufs [][]byte, addr *net.UDPAddr) error {
	s := b.sock.Load()
	if s == nil {
		return errNoSocket
	}
	if addr.IP.To4() == nil {
		if s.pc6 == nil {
			return errNoIPv6(addr.AddrPort())
		}
		return b.sendBatched(s.pc6, &b.gso6, bufs, addr, 0)
	}
	return b.sendBatched(s.pc, &b.gso, bufs, addr, 0)
}

// sendBatched writes bufs to addr through w, framed as ChannelData when
// channel is nonzero: with UDP GSO while st allows it, else with one
// sendmmsg per batch of datagrams (of one or two buffers each: the
// ChannelData header is its own iovec, so packets are not copied).
func (b *Bind) sendBatched(c udpbatch.BatchConn, w *udpbatch.Writer, bufs [][]byte, addr *net.UDPAddr, channel uint16) error {
	if len(bufs) > 1 && w.GSO() {
		return b.sendGSO(c, w, bufs, addr, channel)
	}
	sb := b.sendPool.Get().(*sendBuffers)
	defer b.sendPool.Put(sb)
	for len(bufs) > 0 {
		n := min(len(bufs), len(sb.msgs))
		for i := 0; i < n; i++ {
			m := &sb.msgs[i]
			m.Addr = addr
			if channel != 0 {
				h := sb.hdrs[i][:]
				channeldata.PutHeader(h, channel, len(bufs[i]))
				m.Buffers = sb.pairs[i][:]
				m.Buffers[0], m.Buffers[1] = h, bufs[i]
			} else {
				m.Buffers = sb.pairs[i][:1]
				m.Buffers[0] = bufs[i]
			}
		}
		err := w.WriteAll(c, sb.msgs[:n])
		// Drop our references so pooled messages do not pin the device's
		// buffers.
		for i := 0; i < n; i++ {
			sb.pairs[i] = [2][]byte{}
			sb.msgs[i].Buffers = nil
			sb.msgs[i].Addr = nil
		}
		if err != nil {
			return err
		}
		bufs = bufs[n:]
	}
	return nil
}

// sendBuffers is one batched send's messages, reused through a pool.
type sendBuffers struct {
	msgs  []ipv4.Message
	pairs [][2][]byte // each message's iovecs: header and packet, or packet
	hdrs  [][channeldata.HeaderSize]byte
}

func newSendBuffers() *sendBuffers {
	return &sendBuffers{
		msgs:  make([]ipv4.Message, batchSize),
		pairs: make([][2][]byte, batchSize),
		hdrs:  make([][channeldata.HeaderSize]byte, batchSize),
	}
}

// sendGSO writes bufs in chunks of batchSize, each laid out by addFramed
// (runs of one size as one GSO message) while w still uses GSO.
func (b *Bind) sendGSO(c udpbatch.BatchConn, w *udpbatch.Writer, bufs [][]byte, addr *net.UDPAddr, channel uint16) error {
	g, _ := b.gsoBatches.Get().(*udpbatch.Batch)
	if g == nil {
		g = udpbatch.NewBatch(batchSize)
	}
	defer b.gsoBatches.Put(g)
	for len(bufs) > 0 {
		chunk := bufs[:min(len(bufs), batchSize)]
		if err := w.Send(c, g, coalescedSize(chunk, channel), func(g *udpbatch.Batch) { addFramed(g, chunk, addr, channel) }); err != nil {
			return err
		}
		bufs = bufs[len(chunk):]
	}
	return nil
}

// writeTo sends one datagram (STUN from ICE) on the current socket.
func (b *Bind) writeTo(p []byte, addr net.Addr) (int, error) {
	s := b.sock.Load()
	if s == nil {
		return 0, errNoSocket
	}
	if ua, ok := addr.(*net.UDPAddr); ok && ua.IP.To4() == nil {
		if s.udp6 == nil {
			return 0, errNoIPv6(ua.AddrPort())
		}
		return s.udp6.WriteTo(p, addr)
	}
	return s.udp.WriteTo(p, addr)
}
