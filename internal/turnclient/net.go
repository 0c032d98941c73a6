package turnclient

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"

	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"

	"github.com/punchd/punchd/internal/batchconn"
	"github.com/punchd/punchd/internal/sockbuf"
)

// Net is the network pion/ice opens its own sockets through (ice.WithNet):
// the standard one, except that UDP sockets get large buffers. The only UDP
// sockets an agent opens itself (host and srflx candidates use the tunnel
// socket through the mux) are TURN client sockets, and on a relay path the
// whole tunnel arrives there: with default buffers it overflowed under a
// single TCP stream.
//
// The TURN client sockets are also where the relay shortcut lives: each is
// a turnSocket that hands relayed tunnel packets to deliver directly (see
// turnsock.go), and Channel finds them again for the selected pair.
//
// A TURN client socket over IPv6 gets an IPv4 relayed address (see
// ipv4Relay), so that the relay candidate pairs with IPv4-only peers.
type Net struct {
	*stdnet.Net
	deliver func([]byte)
	log     *slog.Logger // for the TURN client sockets; may be nil
	sockets turnSockets

	mu    sync.Mutex
	over6 map[relayBase]bool // TURN client sockets on IPv6
}

// relayBase names a TURN client socket: "udp" or "tcp", local port.
type relayBase struct {
	network string
	port    int
}

// ipv4Relay is the local address a TURN client socket on IPv6 shows pion:
// the IPv4 wildcard with the socket's port. pion/turn's client asks for a
// relayed address of its socket's family (REQUESTED-ADDRESS-FAMILY IPv6
// from an IPv6 socket), and pion/ice gives it no other choice when it
// gathers UDP4 and UDP6 candidates; an IPv6 relayed address would pair
// with nothing of a peer that has IPv4 only. Shown an IPv4 address, the
// client asks for nothing and gets an IPv4 relay (RFC 6156's default),
// which pairs with every peer's IPv4 candidates and relays, while the
// socket itself talks to the server over IPv6. The cost: the relay
// candidate's related address reads 0.0.0.0 (its port stays true, which
// is what Channel and Over6 look up).
func ipv4Relay(port int) *net.UDPAddr { return &net.UDPAddr{IP: net.IPv4zero, Port: port} }

// Over6 reports whether the relay candidate whose related port is
// localPort reaches its TURN server over IPv6; protocol is the
// candidate's relay protocol ("udp", "tcp" or "tls").
func (n *Net) Over6(protocol string, localPort int) bool {
	network := "tcp"
	if protocol == "udp" {
		network = "udp"
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.over6[relayBase{network, localPort}]
}

func (n *Net) markOver6(network string, port int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.over6 == nil {
		n.over6 = make(map[relayBase]bool)
	}
	n.over6[relayBase{network, port}] = true
}

// isIPv6 reports whether a is a true IPv6 address (not IPv4-mapped).
func isIPv6(ip net.IP) bool { return ip.To4() == nil && ip.To16() != nil }

// NewNet returns the network for one agent; deliver (may be nil) gets the
// tunnel packets relayed to it, as icepeer's OnRelayPacket. log (may be
// nil) hears about datagrams from strangers on the TURN client sockets.
func NewNet(deliver func([]byte), log *slog.Logger) (*Net, error) {
	n, err := stdnet.NewNet()
	if err != nil {
		return nil, fmt.Errorf("list network interfaces for ICE: %w", err)
	}
	return &Net{Net: n, deliver: deliver, log: log}, nil
}

// Channel is the TURN channel toward peer through the TURN client socket
// bound to localPort (a relay candidate's related port), or nil when no
// socket of this Net has that port (a TURN server over TCP or TLS). The
// same pair always gets the same *Channel, so equal paths compare equal.
func (n *Net) Channel(localPort int, peer netip.AddrPort) *Channel {
	return n.sockets.channel(localPort, peer)
}

// ListenPacket is how pion opens a TURN client's UDP socket.
func (n *Net) ListenPacket(network, address string) (net.PacketConn, error) {
	c, err := n.Net.ListenPacket(network, address)
	if err != nil {
		return nil, err
	}
	_, _ = sockbuf.Set(c, sockbuf.Size)
	uc, ok := c.(*net.UDPConn)
	if !ok {
		return c, nil
	}
	s, err := newTurnSocket(uc, n.deliver)
	if err != nil {
		_ = uc.Close()
		return nil, err
	}
	s.log = n.log
	if la := uc.LocalAddr().(*net.UDPAddr); isIPv6(la.IP) {
		s.shown = ipv4Relay(la.Port)
		n.markOver6("udp", la.Port)
	}
	n.sockets.add(s)
	return s, nil
}

func (n *Net) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	_, _ = sockbuf.Set(c, sockbuf.Size)
	return c, nil
}

func (n *Net) DialUDP(network string, laddr, raddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.DialUDP(network, laddr, raddr)
	if err != nil {
		return nil, err
	}
	_, _ = sockbuf.Set(c, sockbuf.Size)
	return c, nil
}

// DialTCP is how pion/ice connects to a TURN server over TCP or TLS (TLS
// runs on top of what this returns). pion's TURN client writes one frame
// per Write, one send per relayed packet; the connection's writes are
// coalesced instead (see batchconn), so a busy relay sends many frames
// per system call.
func (n *Net) DialTCP(network string, laddr, raddr *net.TCPAddr) (transport.TCPConn, error) {
	c, err := n.Net.DialTCP(network, laddr, raddr)
	if err != nil {
		return nil, err
	}
	bc := &batchedTCP{TCPConn: c, b: batchconn.New(c, false)}
	if la, ok := c.LocalAddr().(*net.TCPAddr); ok && isIPv6(la.IP) {
		// As ipv4Relay, for TURN over TCP (and TLS) on IPv6.
		bc.shown = &net.TCPAddr{IP: net.IPv4zero, Port: la.Port}
		n.markOver6("tcp", la.Port)
	}
	return bc, nil
}

// batchedTCP is a TCP connection to a TURN server with coalesced writes;
// the TCP-only methods reach the socket.
type batchedTCP struct {
	transport.TCPConn
	b     *batchconn.Conn
	shown *net.TCPAddr // LocalAddr over IPv6 (see ipv4Relay); nil: the true one
}

func (c *batchedTCP) LocalAddr() net.Addr {
	if c.shown != nil {
		return c.shown
	}
	return c.TCPConn.LocalAddr()
}

func (c *batchedTCP) Read(p []byte) (int, error)  { return c.b.Read(p) }
func (c *batchedTCP) Write(p []byte) (int, error) { return c.b.Write(p) }
func (c *batchedTCP) Close() error                { return c.b.Close() }

// ReadFrom keeps io.Copy from writing past the queue.
func (c *batchedTCP) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(struct{ io.Writer }{c.b}, r)
}
