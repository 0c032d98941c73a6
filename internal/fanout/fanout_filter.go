package fanout

import (
	"encoding/binary"
	"net/netip"
)

// Which group packets the fan-out carries. A LAN game, mDNS or SSDP is
// application traffic and should reach every peer; routing and link
// control (router discovery, OSPF, VRRP, PIM, IGMP/MLD, DHCP) is about this
// host's own link and must never reach a peer's kernel, where a hostile or
// misconfigured peer could take part in its routing or address
// assignment. The filter is a deny list taken from the IANA registries
// (IPv4 Multicast Address Space: Local Network Control Block 224.0.0.0/24;
// IPv6 Multicast Address Space: link-local scope ff02::/16; Protocol
// Numbers; Service Names and Port Numbers).

// linkControlProtos are IP protocols (and IPv6 next headers) that are
// routing or link control whatever their destination.
var linkControlProtos = [256]bool{
	1:   true, // ICMP (router discovery to 224.0.0.1/2)
	2:   true, // IGMP
	46:  true, // RSVP
	58:  true, // ICMPv6 (neighbour discovery, MLD, router advertisements)
	88:  true, // EIGRP
	89:  true, // OSPF
	103: true, // PIM
	112: true, // VRRP (and CARP)
	115: true, // L2TP
	124: true, // IS-IS over IPv4
}

// linkControlGroups4 are groups of the Local Network Control Block that
// routing and link-control protocols use.
var linkControlGroups4 = map[[4]byte]bool{
	{224, 0, 0, 2}:   true, // all routers
	{224, 0, 0, 4}:   true, // DVMRP routers
	{224, 0, 0, 5}:   true, // OSPF all routers
	{224, 0, 0, 6}:   true, // OSPF designated routers
	{224, 0, 0, 9}:   true, // RIPv2 routers
	{224, 0, 0, 10}:  true, // EIGRP routers
	{224, 0, 0, 12}:  true, // DHCP server / relay agent
	{224, 0, 0, 13}:  true, // all PIM routers
	{224, 0, 0, 14}:  true, // RSVP encapsulation
	{224, 0, 0, 18}:  true, // VRRP
	{224, 0, 0, 19}:  true, // IS-IS over IP
	{224, 0, 0, 20}:  true, // IS-IS over IP
	{224, 0, 0, 21}:  true, // IS-IS over IP
	{224, 0, 0, 22}:  true, // IGMP (v3 reports)
	{224, 0, 0, 102}: true, // HSRPv2 / GLBP
	{224, 0, 0, 106}: true, // all snoopers (multicast router discovery)
}

// linkControlGroups6 are link-local (ff02::/16) and site DHCP groups that
// routing and link control use.
var linkControlGroups6 = map[[16]byte]bool{
	netip.MustParseAddr("ff02::2").As16():   true, // all routers
	netip.MustParseAddr("ff02::4").As16():   true, // DVMRP routers
	netip.MustParseAddr("ff02::5").As16():   true, // OSPFv3 all SPF routers
	netip.MustParseAddr("ff02::6").As16():   true, // OSPFv3 all DR routers
	netip.MustParseAddr("ff02::9").As16():   true, // RIPng routers
	netip.MustParseAddr("ff02::a").As16():   true, // EIGRP routers
	netip.MustParseAddr("ff02::d").As16():   true, // all PIM routers
	netip.MustParseAddr("ff02::12").As16():  true, // VRRP
	netip.MustParseAddr("ff02::16").As16():  true, // all MLDv2-capable routers
	netip.MustParseAddr("ff02::66").As16():  true, // HSRP for IPv6
	netip.MustParseAddr("ff02::6a").As16():  true, // all snoopers
	netip.MustParseAddr("ff02::1:2").As16(): true, // all DHCP relay agents and servers
	netip.MustParseAddr("ff05::1:3").As16(): true, // all DHCP servers (site)
}

// isLinkControlPort: UDP ports of address assignment and routing that
// are also sent to broadcast (DHCP, RIP) and so bypass the group lists.
func isLinkControlPort(port uint16) bool {
	switch port {
	case 67, 68, // DHCP / BOOTP
		520, 521, // RIP, RIPng
		546, 547, // DHCPv6
		647, 847: // DHCP failover
		return true
	}
	return false
}

// IPv6 extension headers the filter walks (RFC 8200 section 4).
const (
	ipv6HopByHop = 0
	ipv6Routing  = 43
	ipv6Fragment = 44
	ipv6ESP      = 50
	ipv6AH       = 51
	ipv6NoNext   = 59
	ipv6DestOpts = 60
	// maxExtHeaders bounds the walk; real packets carry one or two.
	maxExtHeaders = 8
)

// isGroupPacket: IPv4 to 255.255.255.255, to a subnet broadcast of ours or
// to a multicast group; IPv6 to a multicast group; in both cases not
// routing or link control (above), which stays on this host: it is about
// the link, not for the peers.
func isGroupPacket(pkt []byte, bcast []netip.Addr) bool {
	if len(pkt) < 20 {
		return false
	}
	switch pkt[0] >> 4 {
	case 4:
		return isGroupPacket4(pkt, bcast)
	case 6:
		return isGroupPacket6(pkt)
	}
	return false
}

func isGroupPacket4(pkt []byte, bcast []netip.Addr) bool {
	dst := [4]byte(pkt[16:20])
	group := dst[0]&0xf0 == 0xe0 || dst == [4]byte{255, 255, 255, 255}
	for i := 0; !group && i < len(bcast); i++ {
		group = bcast[i].As4() == dst
	}
	if !group {
		return false
	}
	// IP options (the Router Alert of IGMP and RSVP) are not for games.
	if pkt[0]&0x0f != 5 || linkControlProtos[pkt[9]] || linkControlGroups4[dst] {
		return false
	}
	// A first fragment (offset 0) carries the UDP header.
	if pkt[9] == 17 && binary.BigEndian.Uint16(pkt[6:8])&0x1fff == 0 {
		return len(pkt) >= 28 && !udpLinkControl(pkt[20:28])
	}
	return true
}

func isGroupPacket6(pkt []byte) bool {
	if len(pkt) < 40 || pkt[24] != 0xff || linkControlGroups6[[16]byte(pkt[24:40])] {
		return false
	}
	next, off := pkt[6], 40
	firstFragment := true
	for range maxExtHeaders {
		switch next {
		case ipv6HopByHop, ipv6Routing, ipv6ESP, ipv6NoNext:
			// Hop-by-hop options are MLD's router alert; a routing
			// header toward a group and opaque ESP are nothing a LAN
			// game sends.
			return false
		case ipv6Fragment:
			if len(pkt) < off+8 {
				return false
			}
			firstFragment = binary.BigEndian.Uint16(pkt[off+2:off+4])&0xfff8 == 0
			next, off = pkt[off], off+8
		case ipv6DestOpts:
			if len(pkt) < off+8 {
				return false
			}
			next, off = pkt[off], off+8*(int(pkt[off+1])+1)
		case ipv6AH:
			if len(pkt) < off+8 {
				return false
			}
			next, off = pkt[off], off+4*(int(pkt[off+1])+2)
		default:
			if linkControlProtos[next] {
				return false
			}
			if next == 17 && firstFragment {
				return len(pkt) >= off+8 && !udpLinkControl(pkt[off:off+8])
			}
			return true
		}
	}
	return false // more extension headers than any real packet has
}

func udpLinkControl(h []byte) bool {
	return isLinkControlPort(binary.BigEndian.Uint16(h[0:2])) || isLinkControlPort(binary.BigEndian.Uint16(h[2:4]))
}
