package tunnel

import (
	"errors"
	"net"
	"net/netip"

	"golang.zx2c4.com/wireguard/conn"
)

// The IPv6 side of the tunnel socket: a second socket on the same port,
// IPv6 only, so that hosts with global IPv6 can go direct where their IPv4
// is behind hopeless NATs. STUN from it goes to STUNConn6 (ICE's IPv6 mux),
// WireGuard to the device. It reads and writes one datagram at a time: the
// batched I/O of the IPv4 socket (recvmmsg, GSO, GRO) is IPv4 only so far.

// openIPv6 opens the IPv6 socket on port; without IPv6 on the host the
// tunnel is IPv4 only, and that is no error.
func (b *Bind) openIPv6(s *socket) {
	udp, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6unspecified, Port: int(s.port)})
	if err != nil {
		b.log.Debug("no IPv6 tunnel socket", "err", err)
		return
	}
	setBuffers(udp, b.log)
	s.udp6 = udp
	b.stun6.setLocal(advertiseAddr6(s.port))
}

// STUNConn6 is STUNConn's IPv6 twin: its LocalAddr is the host's global
// IPv6 address (unspecified when it has none), for a second ICE mux.
func (b *Bind) STUNConn6() net.PacketConn { return b.stun6 }

func (b *Bind) receive6(s *socket) conn.ReceiveFunc {
	return func(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		for {
			n, from, err := s.udp6.ReadFromUDPAddrPort(packets[0])
			if err != nil {
				select {
				case <-s.closed:
					return 0, net.ErrClosed
				default:
				}
				if errors.Is(err, net.ErrClosed) {
					return 0, net.ErrClosed
				}
				continue
			}
			srcs := sources{byAddr: *b.byAddr.Load()}
			pkt := packets[0][:n]
			switch Classify(pkt) {
			case KindWireGuard:
				sizes[0] = n
				eps[0] = srcs.endpoint(from)
				return 1, nil
			case KindSTUN:
				b.stun6.deliver(pkt, net.UDPAddrFromAddrPort(from))
			}
		}
	}
}

// sendTo6 writes bufs to dst on the IPv6 socket, one at a time.
func (b *Bind) sendTo6(bufs [][]byte, dst netip.AddrPort) error {
	s := b.sock.Load()
	if s == nil {
		return errNoSocket
	}
	if s.udp6 == nil {
		return errNoIPv6(dst)
	}
	for _, buf := range bufs {
		if _, err := s.udp6.WriteToUDPAddrPort(buf, dst); err != nil {
			return err
		}
	}
	return nil
}

// advertiseAddr6 is the source address of the IPv6 default route, or the
// unspecified address when there is none (no IPv6 host candidate then).
func advertiseAddr6(port uint16) *net.UDPAddr {
	c, err := net.Dial("udp6", "[2001:db8::1]:9") // connecting sends nothing
	if err != nil {
		return &net.UDPAddr{IP: net.IPv6unspecified, Port: int(port)}
	}
	defer c.Close()
	a := c.LocalAddr().(*net.UDPAddr)
	ip, _ := netip.AddrFromSlice(a.IP)
	if !ip.IsGlobalUnicast() || ip.Is4In6() {
		return &net.UDPAddr{IP: net.IPv6unspecified, Port: int(port)}
	}
	return &net.UDPAddr{IP: a.IP, Port: int(port)}
}
