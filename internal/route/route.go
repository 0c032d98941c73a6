// Package route answers "which local address does the kernel use toward
// X": the source address of the route to a destination, found by
// connecting a UDP socket (which sends nothing).
package route

import (
	"net"
	"net/netip"
)

// Source is the local address the kernel uses toward dst (connecting
// a UDP socket sends nothing).
func Source(dst netip.AddrPort) netip.Addr {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
	if err != nil {
		return netip.Addr{}
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
}
