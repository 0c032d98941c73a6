package tunnel

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.zx2c4.com/wireguard/conn"

	"github.com/punchd/punchd/internal/identity"
	"github.com/punchd/punchd/internal/sockbuf"
	"github.com/punchd/punchd/internal/udpbatch"
)

const (
	// batchSize is how many datagrams one recvmmsg/sendmmsg moves, as
	// wireguard-go's own bind does.
	batchSize = conn.IdealBatchSize
	// relayQueue bounds packets delivered from relays waiting for the device.
	relayQueue = 1024
	// relayBufSize fits a WireGuard data packet for the largest MTU a TUN
	// usually gets; larger relayed packets get a buffer of their own.
	relayBufSize = 2048
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
// ICE selected. See docs/architecture.md, "Packet path". Where the host has
// IPv6 a second, IPv6-only socket on the same port carries IPv6 paths
// (bind6.go).
//
// Life cycle: wireguard-go Opens and Closes it (possibly many times); the
// Device's Close ends with Shutdown, after which STUNConn reads fail.
// Paths and peers survive a Close/Open cycle.
type Bind struct {
	log   *slog.Logger
	opts  BindOptions
	stun  *stunConn
	stun6 *stunConn // the IPv6 socket's (bind6.go)

	// mu serializes Open/Close and guards exclude and writes of byAddr.
	// The packet paths never take it.
	mu      sync.Mutex
	exclude string // interface never advertised (our TUN)
	// peers holds each peer's logical endpoint; read-locked per relayed
	// packet, write-locked once per peer.
	peersMu sync.RWMutex
	peers   map[identity.PublicKey]*peerEndpoint
	// sock is the open socket, nil while closed; an atomic pointer so each
	// Send loads it without a lock.
	sock atomic.Pointer[socket]
	// byAddr maps a peer's direct remote address to its endpoint; copied on
	// write so the receive path reads it without a lock.
	byAddr atomic.Pointer[map[netip.AddrPort]*peerEndpoint]

	// punch gets the birthday packets that arrive on the socket; nil
	// drops them.
	punch atomic.Pointer[func(pkt []byte, from netip.AddrPort)]

	relayIn   chan relayPacket
	relayBufs sync.Pool // *[]byte, copies of relayed packets
	// Packets dropped because a queue was full (see Drops).
	relayDrops, stunDrops atomic.Uint64

	// Peer relays (see peerrelay.go).
	relayFor           atomic.Bool
	onProbe            atomic.Pointer[func(ProbeResult)]
	relayed, relayJunk atomic.Uint64

	sendPool   sync.Pool       // *sendBuffers
	gsoBatches sync.Pool       // *udpbatch.Batch
	gso        udpbatch.Writer // the shared socket's
	gso6       udpbatch.Writer // the IPv6 socket's
	relayGSO   udpbatch.Writer // the TURN client sockets' (relay shortcut)
}

type relayPacket struct {
	ep  *peerEndpoint
	buf *[]byte // from relayBufs; returned once copied to the device
}

// socket is one Open's socket; replaced on every Open.
type socket struct {
	udp  *net.UDPConn
	udp6 *net.UDPConn     // nil without IPv6 (bind6.go)
	pc   *ipv4.PacketConn // for batched writes
	rd   *udpbatch.Reader // for batched reads, by the one socket receiver
	// The IPv6 socket's, as pc and rd (x/net's batch calls take either
	// family); nil without it.
	pc6    *ipv4.PacketConn
	rd6    *udpbatch.Reader
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
		exclude: opts.ExcludeInterface,
		peers:   make(map[identity.PublicKey]*peerEndpoint),
		relayIn: make(chan relayPacket, relayQueue),
	}
	b.stun = newSTUNConn(b)
	b.stun6 = newSTUNConn(b)
	b.stun6.setLocal(&net.UDPAddr{IP: net.IPv6unspecified})
	empty := map[netip.AddrPort]*peerEndpoint{}
	b.byAddr.Store(&empty)
	b.relayBufs.New = func() any {
		buf := make([]byte, 0, relayBufSize)
		return &buf
	}
	b.sendPool.New = func() any { return newSendBuffers() }
	b.gso = udpbatch.Writer{Log: log, What: "tunnel"}
	b.gso6 = udpbatch.Writer{Log: log, What: "tunnel (IPv6)"}
	b.relayGSO = udpbatch.Writer{Log: log, What: "TURN channel"}
	return b
}

var _ conn.Bind = (*Bind)(nil)

// Open binds the socket. wireguard-go calls it on Up, and again after Close
// on port changes and on BindUpdate; it returns two receivers: the socket
// (WireGuard only: STUN is diverted to STUNConn) and the packets relays
// handed to DeliverRelay.
func (b *Bind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sock.Load() != nil {
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
	rd, err := udpbatch.NewReader(udp, batchSize)
	if err != nil {
		_ = udp.Close()
		return nil, 0, fmt.Errorf("tunnel socket udp %s: %w", laddr, err)
	}
	s := &socket{
		udp:    udp,
		pc:     ipv4.NewPacketConn(udp),
		rd:     rd,
		port:   uint16(udp.LocalAddr().(*net.UDPAddr).Port),
		closed: make(chan struct{}),
	}
	b.stun.setLocal(b.advertiseAddr(s.port))
	if !b.opts.ListenAddr.IsValid() || b.opts.ListenAddr.IsUnspecified() {
		b.openIPv6(s)
	}
	b.sock.Store(s)
	fns := []conn.ReceiveFunc{b.receiver(side{s: s, udp: udp, rd: rd, stun: b.stun}), b.receiveRelay(s)}
	if s.udp6 != nil {
		fns = append(fns, b.receiver(side{s: s, udp: s.udp6, rd: s.rd6, stun: b.stun6}))
	}
	return fns, s.port, nil
}

// setBuffers asks for large socket buffers (see sockbuf): default ones
// overflow under a single TCP stream and cost a fifth of the throughput in
// retransmits.
func setBuffers(c *net.UDPConn, log *slog.Logger) {
	got, err := sockbuf.Set(c, sockbuf.Size)
	if err != nil || got.Short(sockbuf.Size) {
		log.Info("tunnel socket buffers are small; expect retransmits under load: "+sockbuf.Advice, "recv", got.Recv, "send", got.Send, "err", err)
	}
}

// Close closes the socket; receive functions return net.ErrClosed. The
// Bind stays usable: wireguard-go may Open it again, STUNConn keeps
// blocking in ReadFrom meanwhile, and sends fail until then.
func (b *Bind) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.sock.Swap(nil)
	if s == nil {
		return nil
	}
	close(s.closed)
	if s.udp6 != nil {
		_ = s.udp6.Close()
	}
	return s.udp.Close()
}

// Shutdown ends the Bind for good: STUNConn().ReadFrom returns
// net.ErrClosed from now on, which stops the ICE mux reading it. Close
// alone does not, because wireguard-go closes and reopens the Bind on
// port changes and the mux must survive those. Device.Close calls it;
// call it yourself only for a Bind that no Device owns. Idempotent.
func (b *Bind) Shutdown() {
	b.stun.shutdown()
	b.stun6.shutdown()
}

// SetMark is not needed: punchd routes only the overlay into the TUN.
func (b *Bind) SetMark(uint32) error { return nil }

// BatchSize is the most packets per receive and send.
func (b *Bind) BatchSize() int { return batchSize }

// LocalPort is the bound port, 0 when closed.
func (b *Bind) LocalPort() uint16 {
	if s := b.sock.Load(); s != nil {
		return s.port
	}
	return 0
}

// Drops counts packets the Bind dropped because the reader of a queue
// lagged behind: what UDP would do, but worth seeing in `punchd status`.
type Drops struct {
	Relay uint64 // relayed WireGuard packets; the device was relayQueue behind
	STUN  uint64 // STUN packets; ICE was stunQueue behind
}

// Drops returns the counts since NewBind.
func (b *Bind) Drops() Drops {
	return Drops{Relay: b.relayDrops.Load(), STUN: b.stunDrops.Load()}
}

// STUNConn is the net.PacketConn to give ice.NewUniversalUDPMuxDefault.
func (b *Bind) STUNConn() net.PacketConn { return b.stun }

// SetAdvertiseIP overrides the address STUNConn reports as local (and so
// the host candidate ICE announces); the zero Addr goes back to the
// default-route source address. Call it before ICE starts using STUNConn:
// pion's mux reads LocalAddr once.
func (b *Bind) SetAdvertiseIP(ip netip.Addr) {
	ip = ip.Unmap()
	b.stun.override.Store(&ip)
	b.mu.Lock()
	defer b.mu.Unlock()
	if s := b.sock.Load(); s != nil {
		b.stun.setLocal(b.advertiseAddr(s.port))
	}
}

// RefreshLocal recomputes the address STUNConn reports as local (the host
// candidate) after the host's addresses or routes changed (a move from
// Wi-Fi to LTE), and returns it and whether it changed; STUNConn6's too
// (a global IPv6 address that came or went; see LocalAddr6). The socket is
// bound to the wildcard address and needs nothing; only ICE's next
// gathering announces the new address.
func (b *Bind) RefreshLocal() (netip.Addr, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.sock.Load()
	if s == nil {
		return netip.Addr{}, false
	}
	old, _ := b.stun.LocalAddr().(*net.UDPAddr)
	now := b.advertiseAddr(s.port)
	b.stun.setLocal(now)
	if s.udp6 != nil {
		b.stun6.setLocal(advertiseAddr6(s.port))
	}
	ip := now.AddrPort().Addr().Unmap()
	return ip, old == nil || old.AddrPort().Addr().Unmap() != ip
}

// LocalAddr6 is the IPv6 host candidates' address (STUNConn6's), the
// zero Addr while the host has no global IPv6 address.
func (b *Bind) LocalAddr6() netip.Addr {
	a, _ := b.stun6.LocalAddr().(*net.UDPAddr)
	if a == nil || a.IP.IsUnspecified() {
		return netip.Addr{}
	}
	return a.AddrPort().Addr()
}

// setExcludeInterface keeps name (our TUN) out of the advertised address.
func (b *Bind) setExcludeInterface(name string) {
	b.mu.Lock()
	b.exclude = name
	b.mu.Unlock()
}

// side is one of an Open's two UDP sockets (IPv4, IPv6) as its receiver
// reads it: STUN from it goes to its own stunConn (ICE's mux of that
// family).
type side struct {
	s    *socket
	udp  *net.UDPConn
	rd   *udpbatch.Reader
	stun *stunConn
}

// receiver reads d in batches, with UDP GRO when the kernel has it.
func (b *Bind) receiver(d side) conn.ReceiveFunc {
	if enableGRO(d.udp) {
		return b.receiveGRO(d)
	}
	return b.receiveSocket(d)
}

// receiveSocket reads a socket in batches: WireGuard packets go to the
// device, STUN to ICE, everything else is dropped.
func (b *Bind) receiveSocket(d side) conn.ReceiveFunc {
	msgs := make([]udpbatch.Message, batchSize)
	return func(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		for {
			n := min(len(packets), len(msgs))
			for i := 0; i < n; i++ {
				msgs[i].Buf = packets[i]
			}
			got, err := d.readBatch(msgs[:n])
			if err != nil {
				return 0, err
			}
			out := 0
			srcs := sources{byAddr: *b.byAddr.Load()}
			for i := 0; i < got; i++ {
				m := &msgs[i]
				if b.sort(packets[i][:m.N], m.Addr, &srcs, d.stun, packets[out], &sizes[out], &eps[out]) {
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
// tells wireguard-go to stop this receiver rather than retry. One
// receiver at a time: the reader's state is the socket's.
func (d side) readBatch(msgs []udpbatch.Message) (int, error) {
	got, err := d.rd.Read(msgs)
	if err != nil {
		select {
		case <-d.s.closed:
			return 0, net.ErrClosed
		default:
		}
	}
	return got, err
}

// sources finds the endpoint for a datagram's source during one receive
// call: the peer whose direct path it is, else the plain address. Runs of
// datagrams from one source (every segment of a GRO read, most batches)
// hash the address once; hashing a netip.AddrPort per packet was 4% of
// the receiver's CPU.
type sources struct {
	byAddr map[netip.AddrPort]*peerEndpoint
	last   netip.AddrPort
	ep     conn.Endpoint // for last; nil before the first lookup
}

func (s *sources) endpoint(from netip.AddrPort) conn.Endpoint {
	if s.ep != nil && from == s.last {
		return s.ep
	}
	src := netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	if e, ok := s.byAddr[src]; ok {
		s.ep = e
	} else {
		s.ep = addrEndpoint{dst: src}
	}
	s.last = from
	return s.ep
}

// sort routes one received datagram: STUN to ICE (stun, the receiving
// socket's); WireGuard into slot (copied unless it is already there) with
// the endpoint of the peer whose path it came from. It reports whether it
// filled the slot.
func (b *Bind) sort(pkt []byte, from netip.AddrPort, srcs *sources, stun *stunConn, slot []byte, size *int, ep *conn.Endpoint) bool {
	switch Classify(pkt) {
	case KindWireGuard:
		if &slot[0] != &pkt[0] {
			copy(slot, pkt)
		}
		*size = len(pkt)
		*ep = srcs.endpoint(from)
		return true
	case KindSTUN:
		// A fresh address per STUN packet: ICE keeps it.
		stun.deliver(pkt, net.UDPAddrFromAddrPort(from))
	case KindPunch:
		if h := b.punch.Load(); h != nil {
			(*h)(pkt, netip.AddrPortFrom(from.Addr().Unmap(), from.Port()))
		}
	default:
		src, _ := srcs.endpoint(from).(*peerEndpoint)
		switch {
		case isPeerRelay(pkt):
			return b.sortRelay(pkt, src, slot, size, ep)
		case isProbe(pkt) && src != nil:
			b.answerProbe(pkt, src, nil)
		}
	}
	return false
}

// SetPunchHandler hands every birthday packet arriving on the socket to fn
// (nil: drop them). fn runs on the receive path: it must not block or keep
// pkt.
func (b *Bind) SetPunchHandler(fn func(pkt []byte, from netip.AddrPort)) {
	if fn == nil {
		b.punch.Store(nil)
		return
	}
	b.punch.Store(&fn)
}

// WriteRaw sends one datagram on the shared socket (a birthday probe): the
// path it finds is then the socket WireGuard already uses.
func (b *Bind) WriteRaw(p []byte, to netip.AddrPort) error {
	_, err := b.writeTo(p, net.UDPAddrFromAddrPort(to))
	return err
}
