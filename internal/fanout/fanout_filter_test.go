package fanout

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

// udp4To builds IPv4/UDP from the overlay to dst with the given ports.
func udp4To(dst string, sport, dport uint16) []byte {
	p := ipv4UDP("10.188.0.1", dst, "payload")
	binary.BigEndian.PutUint16(p[20:22], sport)
	binary.BigEndian.PutUint16(p[22:24], dport)
	return p
}

// ipv6With builds IPv6 to dst whose payload starts with the extension
// headers exts (each: next header, then its 8-byte body) and ends with
// UDP (ports 5353) or, with proto, another upper layer.
func ipv6With(dst string, exts []byte, proto byte) []byte {
	payload := make([]byte, 0, 64)
	first := proto
	// exts is a list of header types; each gets an 8-byte header whose
	// next-header field names the following one.
	for i := len(exts) - 1; i >= 0; i-- {
		h := make([]byte, 8)
		h[0] = first
		if exts[i] == ipv6AH {
			// AH length is in 4-byte units minus 2: 8 bytes = 0.
			h[1] = 0
		}
		payload = append(h, payload...)
		first = exts[i]
	}
	udp := make([]byte, 8+4)
	binary.BigEndian.PutUint16(udp[0:2], 5353)
	binary.BigEndian.PutUint16(udp[2:4], 5353)
	binary.BigEndian.PutUint16(udp[4:6], uint16(len(udp)))
	payload = append(payload, udp...)
	p := ipv6Packet("fd50::1", dst, first, string(payload))
	return p
}

// The groups and protocols below are taken by hand from the IANA
// registries (IPv4 and IPv6 Multicast Address Space, Protocol Numbers,
// Port Numbers), not from the filter's own tables: routing and link
// control stays on the host, what applications send goes to the peers.
func TestGroupFilterLinkControl(t *testing.T) {
	bcast := []netip.Addr{netip.MustParseAddr("10.188.255.255")}
	withOptions := ipv4UDP("10.188.0.1", "224.0.0.251", "q")
	withOptions = append(withOptions[:20:20], append([]byte{148, 4, 0, 0}, withOptions[20:]...)...)
	withOptions[0] = 0x46
	binary.BigEndian.PutUint16(withOptions[2:4], uint16(len(withOptions)))
	fragment4 := udp4To("224.0.0.251", 67, 67)
	binary.BigEndian.PutUint16(fragment4[6:8], 100) // offset 800: no UDP header here
	for _, tt := range []struct {
		name string
		pkt  []byte
		want bool
	}{
		// IPv4 Local Network Control Block, routing and link control.
		{"224.0.0.2 all routers", ipv4UDP("10.188.0.1", "224.0.0.2", "x"), false},
		{"224.0.0.4 DVMRP", ipv4UDP("10.188.0.1", "224.0.0.4", "x"), false},
		{"224.0.0.5 OSPF all routers", ipv4UDP("10.188.0.1", "224.0.0.5", "hello", 89), false},
		{"224.0.0.5 as UDP", ipv4UDP("10.188.0.1", "224.0.0.5", "hello"), false},
		{"224.0.0.6 OSPF designated routers", ipv4UDP("10.188.0.1", "224.0.0.6", "x", 89), false},
		{"224.0.0.9 RIPv2", udp4To("224.0.0.9", 520, 520), false},
		{"224.0.0.10 EIGRP", ipv4UDP("10.188.0.1", "224.0.0.10", "x", 88), false},
		{"224.0.0.12 DHCP relay", ipv4UDP("10.188.0.1", "224.0.0.12", "x"), false},
		{"224.0.0.13 PIM", ipv4UDP("10.188.0.1", "224.0.0.13", "x", 103), false},
		{"224.0.0.18 VRRP", ipv4UDP("10.188.0.1", "224.0.0.18", "advert", 112), false},
		{"224.0.0.18 as UDP", ipv4UDP("10.188.0.1", "224.0.0.18", "advert"), false},
		{"224.0.0.22 IGMPv3", ipv4UDP("10.188.0.1", "224.0.0.22", "report", 2), false},
		{"224.0.0.102 HSRPv2", ipv4UDP("10.188.0.1", "224.0.0.102", "x"), false},
		{"IGMP to any group", ipv4UDP("10.188.0.1", "239.1.2.3", "report", 2), false},
		{"VRRP to another group", ipv4UDP("10.188.0.1", "239.1.2.3", "x", 112), false},
		{"ICMP router solicitation", ipv4UDP("10.188.0.1", "224.0.0.2", "rs", 1), false},
		{"DHCP discover to broadcast", udp4To("255.255.255.255", 68, 67), false},
		{"RIPv1 to subnet broadcast", udp4To("10.188.255.255", 520, 520), false},
		{"IPv4 options (router alert)", withOptions, false},
		// What applications send.
		{"224.0.0.251 mDNS", udp4To("224.0.0.251", 5353, 5353), true},
		{"224.0.0.252 LLMNR", udp4To("224.0.0.252", 40000, 5355), true},
		{"239.255.255.250 SSDP", udp4To("239.255.255.250", 40000, 1900), true},
		{"game lobby to broadcast", udp4To("255.255.255.255", 40000, 27015), true},
		{"game lobby to subnet broadcast", udp4To("10.188.255.255", 40000, 4445), true},
		{"later fragment to a group", fragment4, true},
		// IPv6 link-local scope, routing and link control.
		{"ff02::2 all routers", ipv6With("ff02::2", nil, 17), false},
		{"ff02::5 OSPFv3", ipv6With("ff02::5", nil, 89), false},
		{"ff02::6 OSPFv3 DR", ipv6With("ff02::6", nil, 89), false},
		{"ff02::9 RIPng", ipv6With("ff02::9", nil, 17), false},
		{"ff02::d PIM", ipv6With("ff02::d", nil, 103), false},
		{"ff02::12 VRRP", ipv6With("ff02::12", nil, 112), false},
		{"ff02::16 MLDv2 routers", ipv6With("ff02::16", nil, 17), false},
		{"ff02::1:2 DHCPv6 agents", ipv6With("ff02::1:2", nil, 17), false},
		{"OSPFv3 to another group", ipv6With("ff02::1234", nil, 89), false},
		// IPv6 extension headers in front of link control.
		{"hop-by-hop then ICMPv6 (MLD)", ipv6With("ff02::fb", []byte{ipv6HopByHop}, 58), false},
		{"destination options then ICMPv6", ipv6With("ff02::fb", []byte{ipv6DestOpts}, 58), false},
		{"fragment then ICMPv6", ipv6With("ff02::fb", []byte{ipv6Fragment}, 58), false},
		{"dest opts, fragment then VRRP", ipv6With("ff02::fb", []byte{ipv6DestOpts, ipv6Fragment}, 112), false},
		{"AH then OSPFv3", ipv6With("ff02::fb", []byte{ipv6AH}, 89), false},
		{"routing header", ipv6With("ff02::fb", []byte{ipv6Routing}, 17), false},
		{"ESP", ipv6With("ff02::fb", []byte{ipv6ESP}, 17), false},
		{"hop-by-hop later in the chain", ipv6With("ff02::fb", []byte{ipv6DestOpts, ipv6HopByHop}, 17), false},
		{"endless chain", ipv6With("ff02::fb", []byte{60, 60, 60, 60, 60, 60, 60, 60, 60}, 17), false},
		{"truncated extension header", ipv6Packet("fd50::1", "ff02::fb", ipv6DestOpts, "abc"), false},
		// What applications send over IPv6.
		{"ff02::fb mDNS", ipv6With("ff02::fb", nil, 17), true},
		{"ff02::1:3 LLMNR", ipv6With("ff02::1:3", nil, 17), true},
		{"ff02::c SSDP", ipv6With("ff02::c", nil, 17), true},
		{"mDNS behind destination options", ipv6With("ff02::fb", []byte{ipv6DestOpts}, 17), true},
		{"mDNS in fragments", ipv6With("ff02::fb", []byte{ipv6Fragment}, 17), true},
	} {
		if got := isGroupPacket(tt.pkt, bcast); got != tt.want {
			t.Errorf("%s: isGroupPacket = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// FuzzIsGroupPacket: any bytes from the TUN are classified without a
// panic, and only multicast or broadcast destinations pass.
func FuzzIsGroupPacket(f *testing.F) {
	f.Add(udp4To("224.0.0.251", 5353, 5353))
	f.Add(ipv6With("ff02::fb", []byte{ipv6DestOpts, ipv6Fragment}, 17))
	f.Add(ipv6With("ff02::fb", []byte{ipv6AH}, 89))
	bcast := []netip.Addr{netip.MustParseAddr("10.188.255.255")}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		if !isGroupPacket(pkt, bcast) {
			return
		}
		switch pkt[0] >> 4 {
		case 4:
			if d := pkt[16]; d&0xf0 != 0xe0 && d != 255 && d != 10 {
				t.Fatalf("unicast %v passed", pkt[16:20])
			}
		case 6:
			if pkt[24] != 0xff {
				t.Fatal("IPv6 unicast passed")
			}
		default:
			t.Fatal("not IP passed")
		}
	})
}
