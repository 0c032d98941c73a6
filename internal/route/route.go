// Package route answers "which local address does the kernel use toward
// X": the source address of the route to a destination, found by
// connecting a UDP socket (which sends nothing).
package route

import (
	"net"
	"net/netip"
)

// Source is the local address the kernel uses toward dst; the zero Addr
// when there is no route (or no address on it yet).
func Source(dst netip.AddrPort) netip.Addr {
	if !dst.IsValid() {
		return netip.Addr{} // dialing nothing would "route" to this host
	}
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
	if err != nil {
		return netip.Addr{}
	}
	defer c.Close()
	a := c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
	if a.IsUnspecified() {
		return netip.Addr{}
	}
	return a
}

// testNet1 stands for "the internet" (RFC 5737 TEST-NET-1): its route is
// the default route, and nothing is ever sent to it.
var testNet1 = netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, 1}), 9)

// DefaultSource is the IPv4 source address of the default route, the
// zero Addr without one.
func DefaultSource() netip.Addr { return Source(testNet1) }

// testNet6 is in the IPv6 documentation prefix: never a real destination.
var testNet6 = netip.AddrPortFrom(netip.MustParseAddr("2001:db8::1"), 9)

// DefaultSource6 is the source address of the IPv6 default route, or the
// zero Addr without one.
func DefaultSource6() netip.Addr { return Source(testNet6) }
