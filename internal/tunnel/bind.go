package tunnel

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"

	"github.com/punchd/punchd/internal/identity"
)

const (
	// batchSize is how many datagrams one recvmmsg/sendmmsg moves, as
	// wireguard-go's own bind does.
	batchSize = conn.IdealBatchSize
	// socketBuffer is the socket buffer size we ask for. Measured on the lab
	// machines: default buffers overflow under a single TCP stream and cost
	// a fifth of the throughput in retransmits.
	socketBuffer = 7 << 20
	// relayQueue bounds packets delivered from relays waiting for the device.
	relayQueue = 1024
)

// BindOptions tune a Bind; the zero value is what `punchd up` uses.
type BindOptions struct {
	// ListenAddr is the IPv4 address the socket binds to; unspecified
	// (the default) listens on all addresses.
	ListenAddr netip.Addr
	// ExcludeInterface is never used to pick the advertised address (the
	// TUN device itself).
	ExcludeInterface string
}

// Bind is a conn.Bind that owns one IPv4 UDP socket, reads and writes it in
// batches, diverts STUN to ICE and sends each peer's packets over the path
// ICE selected. See DESIGN "Data path".
type Bind struct {
	log  *slog.Logger
	opts BindOptions
	stun *stunConn

	mu    sync.Mutex // guards sock, peers writes and Open/Close
	sock  *socket
	peers map[identity.PublicKey]*peerEndpoint
	// byAddr maps a peer's direct remote address to its endpoint; copied on
	// write so the receive path reads it without a lock.
	byAddr atomic.Pointer[map[netip.AddrPort]*peerEndpoint]

	relayIn chan relayPacket

	sendPool sync.Pool // *[]ipv4.Message
	gso      gsoState
}

type relayPacket struct {
	ep  *peerEndpoint
	pkt []byte
}

// socket is one Open's socket; replaced on every Open.
type socket struct {
	udp    *net.UDPConn
	pc     *ipv4.PacketConn
	port   uint16
	closed chan struct{}
}

// NewBind returns a Bind; wireguard-go opens it when the device goes up.
func NewBind(log *slog.Logger, opts BindOptions) *Bind {
	if log == nil {
		log = slog.Default()
	}
	b := &Bind{
		log:     log,
		opts:    opts,
		peers:   make(map[identity.PublicKey]*peerEndpoint),
		relayIn: make(chan relayPacket, relayQueue),
	}
	b.stun = newSTUNConn(b)
	empty := map[netip.AddrPort]*peerEndpoint{}
	b.byAddr.Store(&empty)
	b.sendPool.New = func() any {
		msgs := make([]ipv4.Message, batchSize)
		for i := range msgs {
			msgs[i].Buffers = make([][]byte, 1)
		}
		return &msgs
	}
	return b
}

var _ conn.Bind = (*Bind)(nil)

// Open binds the socket. wireguard-go calls it on Up and on port changes.
func (b *Bind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sock != nil {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	laddr := &net.UDPAddr{Port: int(port)}
	if b.opts.ListenAddr.IsValid() {
		laddr.IP = b.opts.ListenAddr.AsSlice()
	}
	udp, err := net.ListenUDP("udp4", laddr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, 0, fmt.Errorf("tunnel socket udp %s: %w; choose another --listen-port or 0", laddr, err)
		}
		return nil, 0, fmt.Errorf("tunnel socket udp %s: %w", laddr, err)
	}
	setBuffers(udp, b.log)
	s := &socket{
		udp:    udp,
		pc:     ipv4.NewPacketConn(udp),
		port:   uint16(udp.LocalAddr().(*net.UDPAddr).Port),
		closed: make(chan struct{}),
	}
	b.sock = s
	b.stun.setLocal(b.advertiseAddr(s.port))
	recv := b.receiveSocket(s)
	if enableGRO(udp) {
		recv = b.receiveGRO(s)
	}
	return []conn.ReceiveFunc{recv, b.receiveRelay(s)}, s.port, nil
}

// setBuffers asks for large socket buffers, forcing past rmem_max when we
// may (CAP_NET_ADMIN), else taking what the kernel allows.
func setBuffers(c *net.UDPConn, log *slog.Logger) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		for _, o := range []struct{ force, plain int }{{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}, {unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}} {
			if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o.force, socketBuffer); err != nil {
				if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o.plain, socketBuffer); err != nil {
					log.Debug("socket buffer", "err", err)
				}
			}
		}
	})
}

// Close closes the socket; receive functions return net.ErrClosed.
func (b *Bind) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sock == nil {
		return nil
	}
	close(b.sock.closed)
	err := b.sock.udp.Close()
	b.sock = nil
	return err
}

// Shutdown ends the Bind for good: the STUN side returns net.ErrClosed so
// the ICE mux stops. Call after the device is closed; idempotent.
func (b *Bind) Shutdown() { b.stun.shutdown() }

// SetMark is not needed: punchd routes only the overlay into the TUN.
func (b *Bind) SetMark(uint32) error { return nil }

// BatchSize is the most packets per receive and send.
func (b *Bind) BatchSize() int { return batchSize }

// LocalPort is the bound port, 0 when closed.
func (b *Bind) LocalPort() uint16 {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sock == nil {
		return 0
	}
	return b.sock.port
}

// STUNConn is the net.PacketConn to give ice.NewUniversalUDPMuxDefault.
func (b *Bind) STUNConn() net.PacketConn { return b.stun }

// SetAdvertiseIP overrides the address STUNConn reports as local.
func (b *Bind) SetAdvertiseIP(ip netip.Addr) {
	b.stun.override.Store(&ip)
	if port := b.LocalPort(); port != 0 {
		b.stun.setLocal(b.advertiseAddr(port))
	}
}

func (b *Bind) peer(key identity.PublicKey) *peerEndpoint {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.peers[key]
	if !ok {
		e = &peerEndpoint{key: key}
		b.peers[key] = e
	}
	return e
}

// SetPath points peer's packets at p (zero Path: hold them). Packets held
// while the peer had no path go out now.
func (b *Bind) SetPath(peer identity.PublicKey, p Path) {
	e := b.peer(peer)
	e.mu.Lock()
	var old *Path
	if p.IsZero() {
		old = e.path.Swap(nil)
	} else {
		np := p
		old = e.path.Swap(&np)
	}
	pending := e.pending
	e.pending = nil
	passive := e.passive
	e.mu.Unlock()
	if passive {
		// Both ends hold a handshake initiation until ICE selects a pair
		// and would fire them at the same instant; crossed initiations
		// left one direction on a key the other side had dropped until
		// WireGuard's 15 s retry. Only the active side sends its held
		// initiation; the passive side answers it.
		pending = slices.DeleteFunc(pending, func(b []byte) bool { return len(b) > 0 && b[0] == 1 })
	}

	if old == nil || old.Direct != p.Direct {
		b.mu.Lock()
		next := make(map[netip.AddrPort]*peerEndpoint, len(*b.byAddr.Load())+1)
		for k, v := range *b.byAddr.Load() {
			if v != e {
				next[k] = v
			}
		}
		if p.Direct.IsValid() {
			next[p.Direct] = e
		}
		b.byAddr.Store(&next)
		b.mu.Unlock()
	}
	if len(pending) > 0 && !p.IsZero() {
		if err := b.Send(pending, e); err != nil {
			b.log.Debug("flush held packets", "peer", peer.Short(), "err", err)
		}
	}
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

// DeliverRelay hands a packet that arrived through a relay to the device,
// as if it came from peer. It copies pkt; when the device lags, it drops.
func (b *Bind) DeliverRelay(peer identity.PublicKey, pkt []byte) {
	if Classify(pkt) != KindWireGuard {
		return
	}
	select {
	case b.relayIn <- relayPacket{ep: b.peer(peer), pkt: append([]byte(nil), pkt...)}:
	default:
	}
}

// Send writes bufs to ep's current path.
func (b *Bind) Send(bufs [][]byte, ep conn.Endpoint) error {
	switch e := ep.(type) {
	case *peerEndpoint:
		p := e.path.Load()
		if p == nil {
			e.mu.Lock()
			if p = e.path.Load(); p == nil {
				e.holdLocked(bufs)
				e.mu.Unlock()
				return nil
			}
			e.mu.Unlock()
		}
		if p.Relay != nil {
			for _, buf := range bufs {
				if _, err := p.Relay.Write(buf); err != nil {
					return fmt.Errorf("send via relay: %w", err)
				}
			}
			return nil
		}
		return b.sendTo(bufs, p.Direct)
	case addrEndpoint:
		return b.sendTo(bufs, e.dst)
	default:
		return conn.ErrWrongEndpointType
	}
}

func (b *Bind) sendTo(bufs [][]byte, dst netip.AddrPort) error {
	b.mu.Lock()
	s := b.sock
	b.mu.Unlock()
	if s == nil {
		return errNoSocket
	}
	addr := &net.UDPAddr{IP: dst.Addr().AsSlice(), Port: int(dst.Port())}
	if len(bufs) > 1 && b.gso.enabled() {
		err := b.sendGSO(s, bufs, addr)
		if err == nil || !isGSOUnsupported(err) {
			return err
		}
		b.log.Info("kernel refuses UDP GSO; sending datagram by datagram", "err", err)
		b.gso.disable()
	}
	msgsp := b.sendPool.Get().(*[]ipv4.Message)
	defer b.sendPool.Put(msgsp)
	msgs := *msgsp
	for len(bufs) > 0 {
		n := min(len(bufs), len(msgs))
		for i := 0; i < n; i++ {
			msgs[i].Buffers[0] = bufs[i]
			msgs[i].Addr = addr
		}
		if err := writeAll(s, msgs[:n]); err != nil {
			return err
		}
		bufs = bufs[n:]
	}
	return nil
}

func (b *Bind) sendGSO(s *socket, bufs [][]byte, addr *net.UDPAddr) error {
	g, _ := b.gso.pool.Get().(*gsoBuffers)
	if g == nil {
		g = newGSOBuffers()
	}
	defer b.gso.pool.Put(g)
	for len(bufs) > 0 {
		chunk := bufs[:min(len(bufs), batchSize)]
		n := coalesce(g, chunk, addr)
		if err := writeAll(s, g.msgs[:n]); err != nil {
			return err
		}
		bufs = bufs[len(chunk):]
	}
	return nil
}

func writeAll(s *socket, msgs []ipv4.Message) error {
	for sent := 0; sent < len(msgs); {
		k, err := s.pc.WriteBatch(msgs[sent:], 0)
		if err != nil {
			return err
		}
		sent += k
	}
	return nil
}

// writeTo sends one datagram (STUN from ICE) on the current socket.
func (b *Bind) writeTo(p []byte, addr net.Addr) (int, error) {
	b.mu.Lock()
	s := b.sock
	b.mu.Unlock()
	if s == nil {
		return 0, errNoSocket
	}
	return s.udp.WriteTo(p, addr)
}

// receiveSocket reads the shared socket in batches: WireGuard packets go to
// the device, STUN to ICE, everything else is dropped.
func (b *Bind) receiveSocket(s *socket) conn.ReceiveFunc {
	msgs := make([]ipv4.Message, batchSize)
	for i := range msgs {
		msgs[i].Buffers = make([][]byte, 1)
	}
	return func(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		for {
			n := min(len(packets), len(msgs))
			for i := 0; i < n; i++ {
				msgs[i].Buffers[0] = packets[i]
			}
			got, err := s.readBatch(msgs[:n])
			if err != nil {
				return 0, err
			}
			out := 0
			byAddr := *b.byAddr.Load()
			for i := 0; i < got; i++ {
				m := &msgs[i]
				if ua, ok := m.Addr.(*net.UDPAddr); ok && b.sort(packets[i][:m.N], ua, byAddr, packets[out], &sizes[out], &eps[out]) {
					out++
				}
			}
			if out > 0 {
				return out, nil
			}
		}
	}
}

// readBatch reads the socket; after Close it says net.ErrClosed, which
// tells wireguard-go to stop this receiver rather than retry.
func (s *socket) readBatch(msgs []ipv4.Message) (int, error) {
	got, err := s.pc.ReadBatch(msgs, 0)
	if err != nil {
		select {
		case <-s.closed:
			return 0, net.ErrClosed
		default:
		}
	}
	return got, err
}

// sort routes one received datagram: STUN to ICE; WireGuard into slot
// (copied unless it is already there) with the endpoint of the peer whose
// path it came from. It reports whether it filled the slot.
func (b *Bind) sort(pkt []byte, from *net.UDPAddr, byAddr map[netip.AddrPort]*peerEndpoint, slot []byte, size *int, ep *conn.Endpoint) bool {
	switch Classify(pkt) {
	case KindWireGuard:
		if &slot[0] != &pkt[0] {
			copy(slot, pkt)
		}
		*size = len(pkt)
		src := from.AddrPort()
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		if e, ok := byAddr[src]; ok {
			*ep = e
		} else {
			*ep = addrEndpoint{dst: src}
		}
		return true
	case KindSTUN:
		b.stun.deliver(pkt, from)
	}
	return false
}

// receiveRelay feeds the device what DeliverRelay queued.
func (b *Bind) receiveRelay(s *socket) conn.ReceiveFunc {
	return func(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		var rp relayPacket
		select {
		case rp = <-b.relayIn:
		case <-s.closed:
			return 0, net.ErrClosed
		}
		n := 0
		for {
			sizes[n] = copy(packets[n], rp.pkt)
			eps[n] = rp.ep
			n++
			if n == len(packets) {
				return n, nil
			}
			select {
			case rp = <-b.relayIn:
			default:
				return n, nil
			}
		}
	}
}
