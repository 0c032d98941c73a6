package turnclient

import (
	"encoding/binary"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v4"
	"golang.org/x/net/ipv4"

	"github.com/punchd/punchd/internal/channeldata"
	"github.com/punchd/punchd/internal/udpbatch"
)

// The relay shortcut. pion/ice hands a relay pair's traffic to the tunnel
// through four goroutines and as many copies per packet (TURN client read
// loop, relay conn queue, candidate reader, agent buffer, ice.Conn.Read),
// with a few allocations each, and sends it one datagram and several map
// lookups at a time. For a relay pair's WireGuard traffic we do neither:
// the TURN client's own UDP socket (which pion opens through Net)
// is a turnSocket that
//
//   - reads in batches (recvmmsg) and hands ChannelData carrying anything
//     but STUN straight to the tunnel (OnRelayPacket), on pion's read
//     goroutine, without ever returning it to pion;
//   - watches pion's ChannelBind transactions, so it knows which channel
//     number pion bound to which peer address once the server confirmed it;
//   - lets the tunnel write ChannelData (RFC 8656 §12) to the server itself,
//     in batches (and with UDP GSO), on such a confirmed channel.
//
// pion keeps doing everything else: allocation, permissions, refreshing
// allocation, permissions and channel bindings on its timers (which run
// whether or not data passes through it), ICE checks and consent (STUN,
// which always goes to pion), and the data of a pair whose channel is not
// bound yet (Send and Data indications). Over TCP or TLS to the TURN
// server there is no turnSocket and the tunnel uses ice.Conn as before.

const (
	// turnBatch is how many datagrams one recvmmsg reads.
	turnBatch = 32
	// turnBufSize holds ChannelData with a jumbo-MTU packet (TURN servers
	// take less: pion's drops anything over 1600 bytes), 512 KiB a socket.
	turnBufSize = 16 << 10
)

// turnSocket is the UDP socket of one TURN client; see the relay shortcut.
// ReadFrom is called by pion's TURN client read loop only (one goroutine);
// WriteTo and the channel methods from any.
type turnSocket struct {
	*net.UDPConn
	pc      *ipv4.PacketConn
	deliver func([]byte) // the tunnel's sink; the slice is reused after it returns

	in *udpbatch.Stream // read by pion's read loop only

	server atomic.Pointer[net.UDPAddr] // where pion sends; set on its first write
	shown  *net.UDPAddr                // LocalAddr on IPv6 (see ipv4Relay); nil: the true one

	// Datagrams from anyone but the server are dropped: the socket's
	// port is no secret (it is in the relay candidate's related address
	// and any on-path observer sees it), and ChannelData from a stranger
	// would otherwise reach the tunnel, a forged ChannelBind answer the
	// channel table. Counted, logged at most once a minute.
	log     *slog.Logger // nil: not logged
	stray   atomic.Uint64
	strayAt atomic.Int64 // unix nanoseconds of the last log

	mu      sync.Mutex
	pending map[[stun.TransactionIDSize]byte]channelBinding // ChannelBind requests in flight
	// bound maps a peer address to its confirmed channel number; copied
	// on write so that senders read it without a lock.
	bound atomic.Pointer[map[netip.AddrPort]uint16]
}

type channelBinding struct {
	peer   netip.AddrPort
	number uint16
}

func newTurnSocket(c *net.UDPConn, deliver func([]byte)) (*turnSocket, error) {
	in, err := udpbatch.NewStream(c, turnBatch, turnBufSize)
	if err != nil {
		return nil, err
	}
	s := &turnSocket{
		UDPConn: c,
		pc:      ipv4.NewPacketConn(c),
		deliver: deliver,
		in:      in,
		pending: make(map[[stun.TransactionIDSize]byte]channelBinding),
	}
	empty := map[netip.AddrPort]uint16{}
	s.bound.Store(&empty)
	return s, nil
}

// ReadFrom returns the next datagram pion must see. ChannelData that is
// not STUN (the tunnel's packets) goes to the tunnel instead.
func (s *turnSocket) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		m, err := s.in.Next()
		if err != nil {
			return 0, nil, err
		}
		if !s.fromServer(m.Addr) {
			s.dropStray(m.Addr)
			continue
		}
		data := m.Data()
		if payload, ok := channeldata.Payload(data); ok && s.deliver != nil && !stun.IsMessage(payload) {
			s.deliver(payload)
			continue
		}
		if stun.IsMessage(data) {
			s.observeResponse(data)
		}
		// Only what pion gets costs an address.
		return copy(p, data), net.UDPAddrFromAddrPort(m.Addr), nil
	}
}

// fromServer: src is the TURN server pion talks to. Before pion's first
// write nothing can be an answer.
func (s *turnSocket) fromServer(src netip.AddrPort) bool {
	srv := s.server.Load()
	if srv == nil {
		return false
	}
	ap := srv.AddrPort()
	return src.Port() == ap.Port() && src.Addr().Unmap() == ap.Addr().Unmap()
}

func (s *turnSocket) dropStray(src netip.AddrPort) {
	n := s.stray.Add(1)
	if s.log == nil {
		return
	}
	now, last := time.Now().UnixNano(), s.strayAt.Load()
	if now-last >= int64(time.Minute) && s.strayAt.CompareAndSwap(last, now) {
		s.log.Info("TURN client socket: dropped datagrams that did not come from the TURN server", "from", src.String(), "dropped", n)
	}
}

// Stray is how many datagrams from others than the server were dropped.
func (s *turnSocket) Stray() uint64 { return s.stray.Load() }

// WriteTo sends what pion sends, noting the server and ChannelBind requests.
func (s *turnSocket) WriteTo(p []byte, addr net.Addr) (int, error) {
	if ua, ok := addr.(*net.UDPAddr); ok && s.server.Load() == nil {
		s.server.Store(ua)
	}
	if stun.IsMessage(p) {
		s.observeRequest(p)
	}
	return s.UDPConn.WriteTo(p, addr)
}

// observeRequest remembers a ChannelBind request until its answer.
func (s *turnSocket) observeRequest(raw []byte) {
	m := &stun.Message{Raw: append([]byte(nil), raw...)}
	if m.Decode() != nil || m.Type != stun.NewType(stun.MethodChannelBind, stun.ClassRequest) {
		return
	}
	num, err := m.Get(stun.AttrChannelNumber)
	if err != nil || len(num) < 2 {
		return
	}
	var peer stun.XORMappedAddress
	if peer.GetFromAs(m, stun.AttrXORPeerAddress) != nil {
		return
	}
	ip, ok := netip.AddrFromSlice(peer.IP)
	if !ok {
		return
	}
	b := channelBinding{peer: netip.AddrPortFrom(ip.Unmap(), uint16(peer.Port)), number: binary.BigEndian.Uint16(num)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) >= 64 {
		clear(s.pending) // bounded: answers that never came
	}
	s.pending[m.TransactionID] = b
}

// observeResponse confirms (or forgets) a ChannelBind on its answer.
func (s *turnSocket) observeResponse(raw []byte) {
	if len(raw) < 20 || binary.BigEndian.Uint16(raw[0:2])&^0x0110 != uint16(stun.MethodChannelBind) {
		return // cheap: only ChannelBind answers need decoding
	}
	m := &stun.Message{Raw: append([]byte(nil), raw...)}
	if m.Decode() != nil || m.Type.Method != stun.MethodChannelBind {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.pending[m.TransactionID]
	if !ok {
		return
	}
	delete(s.pending, m.TransactionID)
	cur := *s.bound.Load()
	next := make(map[netip.AddrPort]uint16, len(cur)+1)
	for k, v := range cur {
		// One number per peer and one peer per number, as the server keeps them.
		if k != b.peer && v != b.number {
			next[k] = v
		}
	}
	if m.Type.Class == stun.ClassSuccessResponse {
		next[b.peer] = b.number
	}
	s.bound.Store(&next)
}

// Channel is a relay path's confirmed TURN channel toward the peer:
// the tunnel writes its packets as ChannelData on the TURN client's socket
// itself (see the relay shortcut). It is only valid while Bound says so.
type Channel struct {
	sock *turnSocket
	peer netip.AddrPort
}

// Bound returns the channel number and the TURN server's address once
// pion's ChannelBind for the peer has succeeded; until then (and over TCP
// or TLS) the packets go through ice.Conn.
func (c *Channel) Bound() (number uint16, server *net.UDPAddr, ok bool) {
	srv := c.sock.server.Load()
	if srv == nil {
		return 0, nil, false
	}
	n, ok := (*c.sock.bound.Load())[c.peer]
	return n, srv, ok
}

// WriteBatch writes ChannelData messages built by the caller to the TURN
// server, as sendmmsg (ipv4.PacketConn.WriteBatch).
func (c *Channel) WriteBatch(msgs []ipv4.Message, flags int) (int, error) {
	return c.sock.pc.WriteBatch(msgs, flags)
}

// turnSockets keeps one agent's TURN client sockets by local port, so
// that the selected relay candidate (whose related address is its
// socket's) finds its own.
type turnSockets struct {
	mu       sync.Mutex
	byPort   map[int]*turnSocket
	channels map[channelKey]*Channel // one per pair, so equal pairs give equal Paths
}

type channelKey struct {
	port int
	peer netip.AddrPort
}

// LocalAddr is what pion sees as the socket's address (see ipv4Relay).
func (s *turnSocket) LocalAddr() net.Addr {
	if s.shown != nil {
		return s.shown
	}
	return s.UDPConn.LocalAddr()
}

func (t *turnSockets) add(s *turnSocket) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byPort == nil {
		t.byPort = make(map[int]*turnSocket)
	}
	t.byPort[s.LocalAddr().(*net.UDPAddr).Port] = s
}

func (t *turnSockets) channel(localPort int, peer netip.AddrPort) *Channel {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.byPort[localPort]
	if !ok {
		return nil
	}
	k := channelKey{localPort, peer}
	c, ok := t.channels[k]
	if !ok {
		if t.channels == nil {
			t.channels = make(map[channelKey]*Channel)
		}
		c = &Channel{sock: s, peer: peer}
		t.channels[k] = c
	}
	return c
}
