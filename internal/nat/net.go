package nat

import (
	"fmt"
	"net"

	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"

	"github.com/punchd/punchd/internal/sockbuf"
)

// bufferedNet is the network pion/ice opens its own sockets through: the
// standard one, except that UDP sockets get large buffers. The only UDP
// sockets an agent opens itself (host and srflx candidates use the tunnel
// socket through the mux) are TURN client sockets, and on a relay path the
// whole tunnel arrives there: with default buffers it overflowed under a
// single TCP stream.
type bufferedNet struct{ *stdnet.Net }

func newBufferedNet() (bufferedNet, error) {
	n, err := stdnet.NewNet()
	if err != nil {
		return bufferedNet{}, fmt.Errorf("list network interfaces for ICE: %w", err)
	}
	return bufferedNet{n}, nil
}

func (n bufferedNet) ListenPacket(network, address string) (net.PacketConn, error) {
	c, err := n.Net.ListenPacket(network, address)
	if err != nil {
		return nil, err
	}
	_, _ = sockbuf.Set(c, sockbuf.Size)
	return c, nil
}

func (n bufferedNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	_, _ = sockbuf.Set(c, sockbuf.Size)
	return c, nil
}

func (n bufferedNet) DialUDP(network string, laddr, raddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.DialUDP(network, laddr, raddr)
	if err != nil {
		return nil, err
	}
	_, _ = sockbuf.Set(c, sockbuf.Size)
	return c, nil
}
