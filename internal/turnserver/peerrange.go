package turnserver

import (
	"net/netip"
)

// A TURN relay sends wherever its client asks, from the server's own
// network. Left open, a stranger with credentials reaches what only the
// server should: its LAN, a cloud's metadata service, a carrier's CGNAT
// neighbours, the server's loopback. As coturn's denied-peer-ip, peers in
// ranges that are not globally reachable (IANA's special-purpose address
// registries, RFC 6890 and successors) are refused unless the operator
// allows a range (--turn-allow-peers: a LAN party, a lab).

// deniedRange is one range relays do not reach by default.
type deniedRange struct {
	prefix netip.Prefix
	name   string
}

var deniedRanges = func() []deniedRange {
	var out []deniedRange
	for _, r := range []struct{ p, name string }{
		{"0.0.0.0/8", "this network"},
		{"10.0.0.0/8", "private (RFC 1918)"},
		{"100.64.0.0/10", "shared address space (CGNAT)"},
		{"127.0.0.0/8", "loopback"},
		{"169.254.0.0/16", "link-local"},
		{"172.16.0.0/12", "private (RFC 1918)"},
		{"192.0.0.0/24", "IETF protocol assignments"},
		{"192.0.2.0/24", "documentation (TEST-NET-1)"},
		{"192.88.99.0/24", "6to4 relay anycast"},
		{"192.168.0.0/16", "private (RFC 1918)"},
		{"198.18.0.0/15", "benchmarking"},
		{"198.51.100.0/24", "documentation (TEST-NET-2)"},
		{"203.0.113.0/24", "documentation (TEST-NET-3)"},
		{"224.0.0.0/4", "multicast"},
		{"240.0.0.0/4", "reserved"}, // includes 255.255.255.255
		{"::/128", "unspecified"},
		{"::1/128", "loopback"},
		{"64:ff9b::/96", "NAT64 (reaches IPv4 behind the translator)"},
		{"64:ff9b:1::/48", "local NAT64"},
		{"100::/64", "discard-only"},
		{"2001::/23", "IETF protocol assignments"},
		{"2001:db8::/32", "documentation"},
		{"2002::/16", "6to4 (reaches IPv4)"},
		{"3fff::/20", "documentation"},
		{"5f00::/16", "segment routing SIDs"},
		{"fc00::/7", "unique local (ULA)"},
		{"fe80::/10", "link-local"},
		{"fec0::/10", "site-local"},
		{"ff00::/8", "multicast"},
	} {
		out = append(out, deniedRange{netip.MustParsePrefix(r.p), r.name})
	}
	return out
}()

// deniedPeer says whether ip is in a range relays do not reach by default,
// and which. IPv4-mapped IPv6 addresses are judged as the IPv4 address.
func deniedPeer(ip netip.Addr) (string, bool) {
	ip = ip.Unmap()
	for _, r := range deniedRanges {
		if r.prefix.Contains(ip) {
			return r.name, true
		}
	}
	return "", false
}
