package natkind

import (
	"slices"
	"strings"
)

// Behaviour is an RFC 4787 / RFC 5780 mapping or filtering behaviour.
type Behaviour string

// The behaviours, in RFC 5780's words.
const (
	EndpointIndependent     Behaviour = "endpoint-independent"
	AddressDependent        Behaviour = "address-dependent"
	AddressAndPortDependent Behaviour = "address-and-port-dependent"
	BehaviourUnknown        Behaviour = "unknown"
)

// NATType is the classic name of a NAT, as the lab and pystun3 use them.
type NATType string

// The classic NAT types; TypeOpen is no NAT at all.
const (
	TypeOpen           NATType = "open"
	TypeFullCone       NATType = "full-cone"
	TypeRestricted     NATType = "restricted"
	TypePortRestricted NATType = "port-restricted"
	TypeSymmetric      NATType = "symmetric"
	TypeUDPBlocked     NATType = "udp-blocked"
	TypeUnknown        NATType = "unknown"
)

// NATTypes lists the known types from the friendliest to the most hostile.
func NATTypes() []NATType {
	return []NATType{TypeOpen, TypeFullCone, TypeRestricted, TypePortRestricted, TypeSymmetric, TypeUDPBlocked}
}

// Classify names what RFC 5780 found. behindNAT false means the server saw
// this host's own address: then the filtering alone decides between open
// and a firewall that filters like a cone NAT would.
func Classify(behindNAT bool, mapping, filtering Behaviour) (NATType, string) {
	if mapping == BehaviourUnknown || filtering == BehaviourUnknown {
		return TypeUnknown, "unknown"
	}
	if mapping != EndpointIndependent {
		return TypeSymmetric, "symmetric NAT"
	}
	if !behindNAT {
		switch filtering {
		case EndpointIndependent:
			return TypeOpen, "open internet (no NAT)"
		case AddressDependent:
			return TypeRestricted, "no NAT, but a firewall that filters like a restricted cone NAT"
		default:
			return TypePortRestricted, "no NAT, but a firewall that filters like a port-restricted cone NAT"
		}
	}
	switch filtering {
	case EndpointIndependent:
		return TypeFullCone, "full cone NAT"
	case AddressDependent:
		return TypeRestricted, "restricted cone NAT"
	default:
		return TypePortRestricted, "port-restricted cone NAT"
	}
}

// NeedsRelay reports whether two hosts behind NATs of types a and b can
// only meet through a relay: when either has no UDP, or when one maps per
// destination (symmetric) and the other filters by port, so that neither
// side's hole punch ever lands. Everything else connects directly.
func NeedsRelay(a, b NATType) bool {
	hard := func(t NATType) bool { return t == TypePortRestricted || t == TypeSymmetric }
	switch {
	case a == TypeUDPBlocked || b == TypeUDPBlocked:
		return true
	case a == TypeSymmetric && hard(b), b == TypeSymmetric && hard(a):
		return true
	}
	return false
}

// Birthday reports whether birthday punching can find a path between NATs
// of types a and b that ICE alone cannot: one symmetric, the other
// port-restricted. Two symmetric NATs make the search space 2^32: hopeless
// without a port mapping.
func Birthday(a, b NATType) bool {
	return a == TypeSymmetric && b == TypePortRestricted || a == TypePortRestricted && b == TypeSymmetric
}

// Advice says in one sentence what a NAT type means for punchd's paths.
func Advice(t NATType) string {
	if t == TypeUDPBlocked {
		return "no UDP: punchd can only relay, over TURN on TCP or TLS (turns: on port 443 passes most firewalls); expect relay speed"
	}
	if !slices.Contains(NATTypes(), t) {
		return "NAT behaviour unknown: punchd still tries direct first and falls back to the relay"
	}
	var relayWith []string
	for _, o := range NATTypes() {
		if o != TypeUDPBlocked && NeedsRelay(t, o) {
			relayWith = append(relayWith, string(o))
		}
	}
	switch {
	case len(relayWith) == 0 && t == TypeOpen:
		return "direct with every peer that has UDP; only a peer with UDP blocked needs the relay"
	case len(relayWith) == 0:
		return "direct with every peer that has UDP, even one behind a symmetric NAT; only a peer with UDP blocked needs the relay"
	case t == TypeSymmetric:
		return "ICE alone goes direct only with peers on open, full-cone or restricted NATs; with a port-restricted peer punchd tries birthday punching " +
			"(bounded, the relay carries the tunnel meanwhile); a peer behind another symmetric NAT needs the relay unless one of the routers " +
			"offers port mapping (UPnP/NAT-PMP/PCP), which punchd uses"
	default:
		return "direct with most peers; with a peer behind a " + joinOr(relayWith) + " NAT punchd tries birthday punching " +
			"(bounded, the relay carries the tunnel meanwhile)"
	}
}

func joinOr(words []string) string {
	if len(words) <= 1 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}
