package natkind

// Local is what this host's NAT probe found out about its own NAT.
type Local struct {
	Type       NATType
	Mapping    Behaviour
	UDPBlocked bool
	// Error says why the type is unknown, when it is.
	Error string
}

// RelayReason explains a relayed path with what we know of both NATs:
// ours from the probe (nil before it finished), the peer's as it told us
// ("" when it has not).
func RelayReason(relay string, local *Local, remote NATType) string {
	why := "relayed via " + relay + ": "
	ours := TypeUnknown
	if local != nil {
		ours = local.Type
		if local.UDPBlocked {
			ours = TypeUDPBlocked
		}
	}
	known := func(t NATType) bool { return t != "" && t != TypeUnknown }
	switch {
	case ours == TypeUDPBlocked:
		return why + "UDP is blocked here, so only TURN over TCP or TLS works"
	case remote == TypeUDPBlocked:
		return why + "the peer has no UDP, so only its relay over TCP or TLS reaches it"
	case known(ours) && known(remote) && NeedsRelay(ours, remote) && Birthday(ours, remote):
		return why + "no direct path exists between this host's " + string(ours) + " NAT and the peer's " + string(remote) +
			" NAT for ICE alone (one maps a new port per destination, the other drops what comes from unknown ports); birthday punching is tried " +
			"(and not repeated for a while after a miss); a port mapping (UPnP/NAT-PMP/PCP) on either router would avoid the relay"
	case known(ours) && known(remote) && NeedsRelay(ours, remote):
		return why + "no direct path exists between this host's " + string(ours) + " NAT and the peer's " + string(remote) +
			" NAT (one maps a new port per destination, the other drops what comes from unknown ports); a port mapping (UPnP/NAT-PMP/PCP) on either router would avoid the relay"
	case known(ours) && known(remote):
		return why + "no direct pair answered, though this host's " + string(ours) + " NAT and the peer's " + string(remote) +
			" NAT usually allow one (a firewall in between?); still probing the direct pairs"
	case ours == TypeSymmetric:
		return why + "no direct pair answered; this host's NAT is symmetric (" + string(local.Mapping) +
			" mapping), so only peers behind open, full-cone or restricted NATs can reach it directly"
	case known(ours):
		return why + "no direct pair answered; this host's NAT is " + string(ours) + ", so the peer's side (a symmetric NAT or a firewall) is what needs the relay"
	case local == nil:
		return why + "no direct pair answered (a symmetric NAT or a UDP-blocking firewall is in the way; this host's NAT is still being probed)"
	default:
		return why + "no direct pair answered (a symmetric NAT or a UDP-blocking firewall is in the way; this host's NAT type is unknown: " + local.Error + ")"
	}
}
