package tunnel

import (
	"net"

	"golang.org/x/net/ipv4"

	sysroute "github.com/punchd/punchd/internal/route" // tunnel has a route type of its own
	"github.com/punchd/punchd/internal/udpbatch"
)

// The IPv6 side of the tunnel socket: a second socket on the same port,
// IPv6 only, so that hosts with global IPv6 can go direct where their IPv4
// is behind hopeless NATs. STUN from it goes to STUNConn6 (ICE's IPv6 mux),
// WireGuard to the device. It is read and written as the IPv4 socket is:
// recvmmsg and sendmmsg, UDP GRO and GSO where the kernel has them (its
// own GSO state: a kernel may refuse it on one family only).

// openIPv6 opens the IPv6 socket on port; without IPv6 on the host the
// tunnel is IPv4 only, and that is no error.
func (b *Bind) openIPv6(s *socket) {
	udp, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6unspecified, Port: int(s.port)})
	if err != nil {
		b.log.Debug("no IPv6 tunnel socket", "err", err)
		return
	}
	setBuffers(udp, b.log)
	rd, err := udpbatch.NewReader(udp, batchSize)
	if err != nil {
		_ = udp.Close()
		b.log.Warn("no IPv6 tunnel socket", "err", err)
		return
	}
	s.udp6, s.pc6, s.rd6 = udp, ipv4.NewPacketConn(udp), rd
	b.stun6.setLocal(advertiseAddr6(s.port))
}

// STUNConn6 is STUNConn's IPv6 twin: its LocalAddr is the host's global
// IPv6 address (unspecified when it has none), for a second ICE mux.
func (b *Bind) STUNConn6() net.PacketConn { return b.stun6 }

// advertiseAddr6 is the source address of the IPv6 default route, or the
// unspecified address when there is none (no IPv6 host candidate then).
func advertiseAddr6(port uint16) *net.UDPAddr {
	ip := sysroute.DefaultSource6()
	if !ip.Is6() || !ip.IsGlobalUnicast() { // DefaultSource6 unmaps IPv4-mapped addresses
		return &net.UDPAddr{IP: net.IPv6unspecified, Port: int(port)}
	}
	return &net.UDPAddr{IP: ip.AsSlice(), Port: int(port)}
}
