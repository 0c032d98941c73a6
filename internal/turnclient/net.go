package turnclient

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"

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
type Net struct {
	*stdnet.Net
	deliver func([]byte)
	log     *slog.Logger // for the TURN client sockets; may be nil
	sockets turnSockets
}

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
	return &batchedTCP{TCPConn: c, b: batchconn.New(c, false)}, nil
}

// batchedTCP is a TCP connection to a TURN server with coalesced writes;
// the TCP-only methods reach the socket.
type batchedTCP struct {
	transport.TCPConn
	b *batchconn.Conn
}

func (c *batchedTCP) Read(p []byte) (int, error)  { return c.b.Read(p) }
func (c *batchedTCP) Write(p []byte) (int, error) { return c.b.Write(p) }
func (c *batchedTCP) Close() error                { return c.b.Close() }

// ReadFrom keeps io.Copy from writing past the queue.
func (c *batchedTCP) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(struct{ io.Writer }{c.b}, r)
}
