package turnserver

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/turn/v5"

	"github.com/punchd/punchd/internal/sockbuf"
)

// Relay ports, as coturn's defaults: the range other allocations live in.
const (
	relayMinPort = 49152
	relayMaxPort = 65535
)

// relayQueue bounds datagrams handed from one of our relays to another
// that has not read them yet; beyond it they are dropped, as a full
// socket buffer would. The queue is made on the first hand-over: most
// allocations never receive one, and 8192 slots preallocated per
// allocation were 128 KiB each that any credential holder could pin.
const relayQueue = 8192

// relayGenerator allocates relays in a known port range and wraps each so
// that, toward the server's own address, it only reaches that range: two
// relayed peers (both behind UDP-blocking firewalls) can meet relay to
// relay, but nobody can use a relay to reach the server's own UDP services.
//
// Relay to relay is also the common case when both peers are relayed, and
// there the generator takes a shortcut: a datagram one of our relays sends
// to another of our relays is handed over in the process instead of going
// through the kernel (one sendto and one recvfrom less per packet, about a
// quarter of the server's CPU per relayed packet). pion still applies the
// receiving allocation's permissions and channels to it, as it does for
// any datagram its relay socket reads.
//
// With an IPv6 relay address (addIPv6) the generator also allocates IPv6
// relays, for clients that ask for one (RFC 6156 REQUESTED-ADDRESS-FAMILY);
// each family has its own port range generator and its own self.
type relayGenerator struct {
	turn.RelayAddressGeneratorPortRange                                      // IPv4
	v6                                  *turn.RelayAddressGeneratorPortRange // nil: no IPv6 relays
	self, self6                         netip.Addr
	log                                 *slog.Logger

	mu     sync.Mutex                                       // serializes writers of relays
	relays atomic.Pointer[map[netip.AddrPort]*guardedRelay] // by relayed address; copied on write
	bufs   sync.Pool                                        // *[]byte for handed-over datagrams
	closed RelayedBytes                                     // of relays closed; under mu
}

// RelayedBytes counts payload bytes relayed by TURN allocations, on the
// relay side (between a relay address and the peers it talks to): ToPeers
// what relays sent, FromPeers what they received. A datagram handed from
// one of our relays to another counts once in each.
type RelayedBytes struct {
	ToPeers, FromPeers uint64
}

func newRelayGenerator(relayIP netip.Addr, log *slog.Logger) *relayGenerator {
	g := &relayGenerator{
		RelayAddressGeneratorPortRange: turn.RelayAddressGeneratorPortRange{
			RelayAddress: relayIP.AsSlice(),
			Address:      "0.0.0.0",
			MinPort:      relayMinPort,
			MaxPort:      relayMaxPort,
			MaxRetries:   50,
		},
		self: relayIP,
		log:  orDefault(log),
	}
	empty := map[netip.AddrPort]*guardedRelay{}
	g.relays.Store(&empty)
	g.bufs.New = func() any {
		b := make([]byte, 0, 2048)
		return &b
	}
	return g
}

// addIPv6 lets the generator allocate IPv6 relays on ip, in the same port
// range and under the same guard as the IPv4 ones.
func (g *relayGenerator) addIPv6(ip netip.Addr) {
	g.v6 = &turn.RelayAddressGeneratorPortRange{
		RelayAddress: ip.AsSlice(),
		Address:      "::",
		MinPort:      relayMinPort,
		MaxPort:      relayMaxPort,
		MaxRetries:   50,
	}
	g.self6 = ip
}

// Validate checks both families' generators (pion calls it at start).
func (g *relayGenerator) Validate() error {
	if err := g.RelayAddressGeneratorPortRange.Validate(); err != nil {
		return err
	}
	if g.v6 != nil {
		return g.v6.Validate()
	}
	return nil
}

// errNoIPv6Relay: an IPv6 relay was asked for and --relay-ip6 is not set.
var errNoIPv6Relay = errors.New("no IPv6 relay address configured (--relay-ip6)")

func (g *relayGenerator) AllocatePacketConn(conf turn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	gen, self := &g.RelayAddressGeneratorPortRange, g.self
	if conf.Network == "udp6" {
		if g.v6 == nil {
			return nil, nil, errNoIPv6Relay
		}
		gen, self = g.v6, g.self6
	}
	conn, addr, err := gen.AllocatePacketConn(conf)
	if err != nil {
		return nil, nil, err
	}
	// A relay socket carries a whole tunnel; the server's listening
	// socket says once when the kernel caps buffers.
	_, _ = sockbuf.Set(conn, sockbuf.Size)
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return &guardedRelay{PacketConn: conn, self: self}, addr, nil
	}
	r := &guardedRelay{
		PacketConn: conn,
		self:       self,
		gen:        g,
		port:       uint16(ua.Port),
		addr:       &net.UDPAddr{IP: self.AsSlice(), Port: ua.Port},
	}
	g.update(func(m map[netip.AddrPort]*guardedRelay) { m[r.key()] = r })
	return r, addr, nil
}

// errTCPRelay: RFC 6062 (TCP allocations and Connect) is refused. punchd
// clients relay UDP only (over any transport to the server); a TCP relay
// would open connections from the server's own address, to its own
// services among others, which the UDP guard cannot see.
var errTCPRelay = errors.New("TURN TCP relaying (RFC 6062) is not offered")

// AllocateListener refuses TCP allocations (see errTCPRelay).
func (g *relayGenerator) AllocateListener(conf turn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
	g.log.Info("TURN TCP allocation refused", "user", conf.UserID, "err", errTCPRelay)
	return nil, nil, errTCPRelay
}

// AllocateConn refuses Connect requests (see errTCPRelay); pion asks for
// them on UDP allocations too.
func (g *relayGenerator) AllocateConn(conf turn.AllocateConnConfig) (net.Conn, error) {
	g.log.Info("TURN Connect refused", "user", conf.UserID, "peer", conf.RemoteAddr.String(), "err", errTCPRelay)
	return nil, errTCPRelay
}

// relayed sums the relayed bytes of live and closed relays (at scrape
// time; the data path only adds to its own relay's counters).
func (g *relayGenerator) relayed() RelayedBytes {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := g.closed
	for _, r := range *g.relays.Load() {
		out.ToPeers += r.toPeers.Load()
		out.FromPeers += r.fromPeers.Load()
	}
	return out
}

// update changes the relay table, copied so that senders read it without
// a lock.
func (g *relayGenerator) update(fn func(map[netip.AddrPort]*guardedRelay)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	cur := *g.relays.Load()
	next := make(map[netip.AddrPort]*guardedRelay, len(cur)+1)
	for k, v := range cur {
		next[k] = v
	}
	fn(next)
	g.relays.Store(&next)
}

var errOwnService = errors.New("relaying to the server's own services is refused")

// guardedRelay is one allocation's relay socket (see relayGenerator).
type guardedRelay struct {
	net.PacketConn
	self netip.Addr

	// The relay-to-relay shortcut; gen is nil for a relay without it.
	gen  *relayGenerator
	port uint16
	addr *net.UDPAddr                    // the relayed address, the source of what we hand over
	in   atomic.Pointer[chan handedOver] // made on the first hand-over
	// blocked: the reader sits in a socket read, which a sender cuts
	// short with a past deadline to deliver from in. Nobody else sets
	// deadlines on relay sockets (pion does not), so a deadline error is
	// always such a kick.
	blocked   atomic.Bool
	closeOnce sync.Once
	// Relayed bytes, for metrics: one atomic add per datagram on the
	// allocation's own counters (written by its one reader and its one
	// writer), summed at scrape time, so relays share no cache line.
	toPeers, fromPeers atomic.Uint64
}

// key is the relay's entry in its generator's table: its relayed address.
func (c *guardedRelay) key() netip.AddrPort { return netip.AddrPortFrom(c.self, c.port) }

type handedOver struct {
	buf  *[]byte
	from *net.UDPAddr
}

func (c *guardedRelay) WriteTo(p []byte, addr net.Addr) (int, error) {
	if ua, ok := addr.(*net.UDPAddr); ok {
		ap := ua.AddrPort()
		if ap.Addr().Unmap() == c.self {
			if ap.Port() < relayMinPort {
				return 0, errOwnService
			}
			if c.gen != nil {
				if dst := (*c.gen.relays.Load())[netip.AddrPortFrom(c.self, ap.Port())]; dst != nil && dst != c {
					c.toPeers.Add(uint64(len(p)))
					dst.handOver(p, c.addr)
					return len(p), nil
				}
			}
		}
	}
	n, err := c.PacketConn.WriteTo(p, addr)
	c.toPeers.Add(uint64(n))
	return n, err
}

// handOver queues p for c's reader as if it had arrived from from.
func (c *guardedRelay) handOver(p []byte, from *net.UDPAddr) {
	in := c.in.Load()
	if in == nil {
		q := make(chan handedOver, relayQueue)
		if !c.in.CompareAndSwap(nil, &q) {
			in = c.in.Load()
		} else {
			in = &q
		}
	}
	bp := c.gen.bufs.Get().(*[]byte)
	*bp = append((*bp)[:0], p...)
	select {
	case *in <- handedOver{buf: bp, from: from}:
	default:
		c.gen.bufs.Put(bp)
		return
	}
	if c.blocked.Load() {
		_ = c.PacketConn.SetReadDeadline(time.Unix(1, 0))
	}
}

// ReadFrom returns what other relays handed over and what the socket
// received, whichever comes first. pion's allocation reads it from one
// goroutine.
func (c *guardedRelay) ReadFrom(p []byte) (int, net.Addr, error) {
	n, addr, err := c.readFrom(p)
	c.fromPeers.Add(uint64(n))
	return n, addr, err
}

func (c *guardedRelay) readFrom(p []byte) (int, net.Addr, error) {
	if c.gen == nil {
		return c.PacketConn.ReadFrom(p)
	}
	for {
		// A nil queue (nothing handed over yet) reads as empty.
		var in chan handedOver
		if q := c.in.Load(); q != nil {
			in = *q
		}
		select {
		case h := <-in:
			return c.take(p, h)
		default:
		}
		c.blocked.Store(true)
		// Again after announcing the read: a sender that queued just
		// before saw blocked false and did not kick.
		if q := c.in.Load(); q != nil {
			in = *q
		}
		select {
		case h := <-in:
			c.blocked.Store(false)
			return c.take(p, h)
		default:
		}
		n, addr, err := c.PacketConn.ReadFrom(p)
		c.blocked.Store(false)
		if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
			_ = c.PacketConn.SetReadDeadline(time.Time{})
			continue
		}
		return n, addr, err
	}
}

func (c *guardedRelay) take(p []byte, h handedOver) (int, net.Addr, error) {
	n := copy(p, *h.buf)
	c.gen.bufs.Put(h.buf)
	return n, h.from, nil
}

// Close leaves the relay table (once), then closes the socket.
func (c *guardedRelay) Close() error {
	if c.gen != nil {
		c.closeOnce.Do(func() {
			c.gen.update(func(m map[netip.AddrPort]*guardedRelay) {
				if m[c.key()] == c {
					delete(m, c.key())
				}
				c.gen.closed.ToPeers += c.toPeers.Load()
				c.gen.closed.FromPeers += c.fromPeers.Load()
			})
		})
	}
	return c.PacketConn.Close()
}
