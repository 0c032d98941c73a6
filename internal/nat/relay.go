package nat

import (
	"errors"
	"net"
	"net/netip"

	"github.com/pion/turn/v5"

	"github.com/punchd/punchd/internal/sockbuf"
)

// Relay ports, as coturn's defaults: the range other allocations live in.
const (
	relayMinPort = 49152
	relayMaxPort = 65535
)

// relayGenerator allocates relays in a known port range and wraps each so
// that, toward the server's own address, it only reaches that range: two
// relayed peers (both behind UDP-blocking firewalls) can meet relay to
// relay, but nobody can use a relay to reach the server's own UDP services.
type relayGenerator struct {
	turn.RelayAddressGeneratorPortRange
	self netip.Addr
}

func newRelayGenerator(relayIP netip.Addr) *relayGenerator {
	return &relayGenerator{
		RelayAddressGeneratorPortRange: turn.RelayAddressGeneratorPortRange{
			RelayAddress: relayIP.AsSlice(),
			Address:      "0.0.0.0",
			MinPort:      relayMinPort,
			MaxPort:      relayMaxPort,
			MaxRetries:   50,
		},
		self: relayIP,
	}
}

func (g *relayGenerator) AllocatePacketConn(conf turn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	conn, addr, err := g.RelayAddressGeneratorPortRange.AllocatePacketConn(conf)
	if err != nil {
		return nil, nil, err
	}
	// A relay socket carries a whole tunnel; the server's listening
	// socket says once when the kernel caps buffers.
	_, _ = sockbuf.Set(conn, sockbuf.Size)
	return &guardedRelay{PacketConn: conn, self: g.self}, addr, nil
}

var errOwnService = errors.New("relaying to the server's own services is refused")

type guardedRelay struct {
	net.PacketConn
	self netip.Addr
}

func (c *guardedRelay) WriteTo(p []byte, addr net.Addr) (int, error) {
	if ua, ok := addr.(*net.UDPAddr); ok {
		ap := ua.AddrPort()
		if ap.Addr().Unmap() == c.self && (ap.Port() < relayMinPort) {
			return 0, errOwnService
		}
	}
	return c.PacketConn.WriteTo(p, addr)
}
