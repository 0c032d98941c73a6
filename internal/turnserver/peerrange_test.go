package turnserver

import (
	"net/netip"
	"testing"
)

// Sample addresses from IANA's IPv4 and IPv6 Special-Purpose Address
// Registries, written down by hand, with whether each is globally
// reachable (the registry's "Globally Reachable" column; ranges whose
// entry says false or N/A are denied, plus multicast and the reserved
// 240/4, which are not unicast peers at all).
func TestDeniedPeerRanges(t *testing.T) {
	for _, tt := range []struct {
		ip     string
		denied bool
	}{
		{"0.1.2.3", true},         // 0.0.0.0/8 "this network"
		{"10.20.30.40", true},     // RFC 1918
		{"100.64.0.1", true},      // 100.64.0.0/10 shared address space
		{"100.127.255.254", true}, // its top
		{"100.128.0.1", false},    // just above it: global
		{"127.0.0.1", true},       // loopback
		{"169.254.169.254", true}, // link-local (cloud metadata service)
		{"172.16.0.1", true},      // RFC 1918
		{"172.31.255.255", true},
		{"172.32.0.1", false}, // just above 172.16/12
		{"192.0.0.8", true},   // 192.0.0.0/24 IETF protocol assignments
		{"192.0.2.1", true},   // TEST-NET-1
		{"192.88.99.1", true}, // 6to4 relay anycast (deprecated)
		{"192.168.1.1", true}, // RFC 1918
		{"198.18.0.1", true},  // benchmarking 198.18.0.0/15
		{"198.19.255.255", true},
		{"198.20.0.1", false},      // just above it
		{"198.51.100.7", true},     // TEST-NET-2
		{"203.0.113.9", true},      // TEST-NET-3
		{"224.0.0.1", true},        // multicast
		{"239.255.255.250", true},  // multicast
		{"240.0.0.1", true},        // reserved
		{"255.255.255.255", true},  // limited broadcast
		{"1.1.1.1", false},         // global
		{"192.0.43.10", false},     // global
		{"::", true},               // unspecified
		{"::1", true},              // loopback
		{"::ffff:10.0.0.1", true},  // IPv4-mapped: judged as 10.0.0.1
		{"::ffff:8.8.4.4", false},  // IPv4-mapped global
		{"64:ff9b::a00:1", true},   // NAT64 well-known prefix
		{"64:ff9b:1::1", true},     // local-use NAT64
		{"100::1", true},           // discard-only
		{"2001::1", true},          // Teredo (in 2001::/23)
		{"2001:db8::1", true},      // documentation
		{"2002:a00:1::1", true},    // 6to4
		{"3fff::1", true},          // documentation (RFC 9637)
		{"5f00::1", true},          // SRv6 SIDs
		{"fc00::1", true},          // ULA
		{"fd12:3456::1", true},     // ULA
		{"fe80::1", true},          // link-local
		{"fec0::1", true},          // site-local (deprecated)
		{"ff02::1", true},          // multicast
		{"2001:4860::8888", false}, // global
		{"2606:4700::1111", false}, // global
		{"2001:200::1", false},     // just above 2001::/23: global
	} {
		why, denied := deniedPeer(netip.MustParseAddr(tt.ip))
		if denied != tt.denied {
			t.Errorf("%s: denied %v (%s), want %v", tt.ip, denied, why, tt.denied)
		}
	}
}
