package lab

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
)

// NATType is a NAT behaviour the lab can build.
type NATType string

// The lab's NAT types (RFC 4787 terms in the comments).
const (
	NATNone           NATType = "none"            // public address
	NATFullCone       NATType = "full-cone"       // EIM, endpoint-independent filtering
	NATRestricted     NATType = "restricted"      // EIM, address-dependent filtering
	NATPortRestricted NATType = "port-restricted" // EIM, address+port-dependent filtering
	NATSymmetric      NATType = "symmetric"       // address+port-dependent mapping and filtering
	NATUDPBlocked     NATType = "udp-blocked"     // no UDP at all; TCP masqueraded
	// NATHTTPSOnly is the office or campus firewall that passes nothing
	// from the LAN but TCP to port 443 (masqueraded). Not in AllNATTypes:
	// it is no NAT behaviour of its own, and the grid would only repeat
	// udp-blocked; the 443-only tests use it by name.
	NATHTTPSOnly NATType = "https-only"
	// NATSymmetricSequential is symmetric, but hands out UDP ports in
	// sequence: each new mapping (whatever its destination) gets the port
	// after the last one, as many carrier-grade and older home NATs do.
	// Port prediction guesses its next ports. It is not in AllNATTypes (the
	// grid of classic types); scenarios ask for it by name.
	NATSymmetricSequential NATType = "symmetric-sequential"
)

// sequentialBase and sequentialSpan are the port range the sequential NAT
// counts through (it wraps after the last port, long after conntrack has
// forgotten the first mappings of a test).
const (
	sequentialBase = 20000
	sequentialSpan = 4096
)

// knownNATTypes is every type the lab builds.
func knownNATTypes() []NATType {
	return append(AllNATTypes(), NATSymmetricSequential, NATHTTPSOnly)
}

// AllNATTypes lists every type, in order of increasing hostility.
func AllNATTypes() []NATType {
	return []NATType{NATNone, NATFullCone, NATRestricted, NATPortRestricted, NATSymmetric, NATUDPBlocked}
}

// Validate reports whether t is a known type.
func (t NATType) Validate() error {
	for _, k := range knownNATTypes() {
		if t == k {
			return nil
		}
	}
	names := make([]string, 0, 7)
	for _, k := range knownNATTypes() {
		names = append(names, string(k))
	}
	return fmt.Errorf("unknown NAT type %q (known: %s)", t, strings.Join(names, ", "))
}

// ruleset renders the nftables recipe for a router of type t whose first
// LAN host is host. Interfaces: eth0 faces the internet, lan0 the LAN.
//
// Two rules matter for every type:
//   - Inbound packets that would create new conntrack state are dropped
//     in a prerouting filter *before* conntrack confirms them, unless the
//     recipe admits them. Otherwise an early ICE check arriving before the
//     host's own packet leaves an entry that moves the host's next mapping
//     to another port, and a port-restricted NAT acts symmetric.
//   - Masquerade keeps the source port when it can (endpoint-independent
//     mapping), except for the symmetric types: symmetric randomises
//     fully, symmetric-sequential counts up. Only what the LAN sends is
//     translated: the router's own sockets (miniupnpd's STUN check of
//     its external address) keep their address and port, as on a real
//     router.
//
// A router with UPnP (RouterOptions.UPnP) also admits what miniupnpd
// forwards (its guard runs after DNAT) and the answers of the STUN server
// miniupnpd checks its external address with.
func ruleset(t NATType, host netip.Addr, o RouterOptions) (string, error) {
	var admitNew, dnat, masq, forward string
	masq = "iifname \"lan0\" oifname \"eth0\" masquerade"
	switch t {
	case NATFullCone:
		admitNew = "iifname \"eth0\" meta l4proto udp accept"
		dnat = fmt.Sprintf("iifname \"eth0\" meta l4proto udp dnat to %s", host)
	case NATRestricted:
		// Filter state is per mapping (the host's port) and remote address,
		// as in a real address-restricted NAT: what one socket contacted
		// does not open the door for another.
		admitNew = "iifname \"eth0\" udp dport . ip saddr @contacted accept"
		dnat = fmt.Sprintf("iifname \"eth0\" udp dport . ip saddr @contacted dnat to %s", host)
	case NATPortRestricted:
	case NATSymmetric:
		masq = "iifname \"lan0\" oifname \"eth0\" masquerade random,fully-random"
	case NATSymmetricSequential:
		// The NAT chain sees only the first packet of a flow, so numgen
		// counts new mappings: one port per new (source, destination)
		// pair, in sequence, shared by all hosts and destinations.
		// Filtering stays conntrack's: address and port dependent. The
		// map turns the counter into a port: numgen's value is in host
		// byte order, a port in network order (without the map ports
		// would step by 256 on little-endian machines).
		masq = fmt.Sprintf("iifname \"lan0\" oifname \"eth0\" meta l4proto udp masquerade to :numgen inc mod %d map { %s }\n    iifname \"lan0\" oifname \"eth0\" masquerade",
			sequentialSpan, sequentialPorts())
	case NATUDPBlocked:
		forward = "meta l4proto udp drop"
	case NATHTTPSOnly:
		// Only new flows are filtered: what passes is TCP to 443 and
		// its answers (established, below).
		forward = "iifname \"lan0\" oifname \"eth0\" ct state new tcp dport != 443 drop\n" +
			"    iifname \"lan0\" oifname \"eth0\" ct state new meta l4proto != tcp drop"
	default:
		return "", fmt.Errorf("no NAT recipe for %q", t)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "table ip punchdlab {\n")
	fmt.Fprintf(&b, "  set contacted { type inet_service . ipv4_addr; flags timeout; timeout 120s; }\n")
	// With UPnP the guard runs after DNAT (nftables runs every nat chain
	// at the NAT core's priority, dstnat, whatever its own): it has to see
	// what miniupnpd forwards. Still before conntrack confirms anything.
	guardPrio := "-150"
	if o.UPnP {
		guardPrio = "dstnat + 10"
	}
	fmt.Fprintf(&b, "  chain guard {\n    type filter hook prerouting priority %s; policy accept;\n", guardPrio)
	if admitNew != "" {
		fmt.Fprintf(&b, "    iifname \"eth0\" ct state new %s\n", strings.TrimPrefix(admitNew, "iifname \"eth0\" "))
	}
	if o.UPnP {
		fmt.Fprintf(&b, "    iifname \"eth0\" ct state new ct status dnat accept\n")
		if len(o.STUN) > 0 {
			ips := make([]string, len(o.STUN))
			for i, a := range o.STUN {
				ips[i] = a.String()
			}
			fmt.Fprintf(&b, "    iifname \"eth0\" ct state new ip saddr { %s } udp sport { 3478, 3479 } fib daddr type local accept\n", strings.Join(ips, ", "))
		}
	}
	fmt.Fprintf(&b, "    iifname \"eth0\" ct state new drop\n  }\n")
	fmt.Fprintf(&b, "  chain nat_pre {\n    type nat hook prerouting priority dstnat; policy accept;\n")
	if dnat != "" {
		fmt.Fprintf(&b, "    %s\n", dnat)
	}
	fmt.Fprintf(&b, "  }\n")
	fmt.Fprintf(&b, "  chain nat_post {\n    type nat hook postrouting priority srcnat; policy accept;\n    %s\n  }\n", masq)
	fmt.Fprintf(&b, "  chain forwarding {\n    type filter hook forward priority 0; policy drop;\n")
	if forward != "" {
		fmt.Fprintf(&b, "    %s\n", forward)
	}
	fmt.Fprintf(&b, "    iifname \"lan0\" oifname \"eth0\" update @contacted { udp sport . ip daddr }\n")
	fmt.Fprintf(&b, "    ct state established,related accept\n")
	fmt.Fprintf(&b, "    iifname \"lan0\" oifname \"eth0\" accept\n")
	fmt.Fprintf(&b, "    ct status dnat accept\n  }\n}\n")
	return b.String(), nil
}

// sequentialPorts renders the counter-to-port map of the sequential NAT.
func sequentialPorts() string {
	var b strings.Builder
	for i := range sequentialSpan {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d : %d", i, sequentialBase+i)
	}
	return b.String()
}

func applyNAT(ctx context.Context, r *Router, host netip.Addr) error {
	rs, err := ruleset(r.Type, host, r.opts)
	if err != nil {
		return err
	}
	if err := r.nft(ctx, rs); err != nil {
		return fmt.Errorf("nft recipe %s: %w\n%s", r.Type, err, rs)
	}
	return nil
}
