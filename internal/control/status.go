// Package control is the daemon's local control channel: a small HTTP API on a
// unix socket that `punchd status` and `punchd ping` use to ask the
// running daemon what it knows. The socket is the trust boundary: whoever can
// open it may read the status, so it is created 0660 in the state directory.
package control

import "time"

// Status is what `punchd status --json` prints. Field names are part of the
// user-facing contract (scripts parse them); add fields, never rename them.
type Status struct {
	Self  Self         `json:"self"`
	Peers []PeerStatus `json:"peers"`
}

// Self describes this host.
type Self struct {
	ID          string `json:"id"`
	OverlayIPv4 string `json:"overlay_ipv4,omitempty"`
	OverlayIPv6 string `json:"overlay_ipv6,omitempty"`
	Interface   string `json:"interface"`
	ListenPort  uint16 `json:"listen_port"`
	Rendezvous  string `json:"rendezvous"`
	// Name is how network members see this host, and Network the start
	// of the network's topic id (which network, without its secret);
	// both empty without --network.
	Name    string `json:"name,omitempty"`
	Network string `json:"network,omitempty"`
	// RendezvousConnected is false while the daemon is reconnecting; the
	// tunnels stay up meanwhile.
	RendezvousConnected bool      `json:"rendezvous_connected"`
	Started             time.Time `json:"started"`
	// NAT is this host's NAT behaviour as probed against the
	// rendezvous' STUN server; absent until the first probe finished.
	NAT *NAT `json:"nat,omitempty"`
	// Warnings are problems of this host's setup a person should act on,
	// e.g. the rendezvous offers no STUN server.
	Warnings []string `json:"warnings,omitempty"`
	// SignalingRefused counts what the rendezvous client refused since
	// start, per cause: sealed messages from keys that are not our peers
	// (unknown-sender), that do not open (bad-seal), replays (replay),
	// unparsable frames (bad-frame), ICE server entries left out
	// (bad-ice-server).
	SignalingRefused map[string]uint64 `json:"signaling_refused,omitempty"`
	// Drops are packets the daemon dropped because a queue was full.
	Drops Drops `json:"drops"`
	// PortMapping is the tunnel port's mapping on the gateway (UPnP-IGD,
	// NAT-PMP or PCP), offered to peers as a candidate; absent without.
	PortMapping *PortMapping `json:"port_mapping,omitempty"`
}

// PortMapping is a port the gateway forwards to the tunnel socket.
type PortMapping struct {
	Protocol string `json:"protocol"` // "pcp", "nat-pmp", "upnp"
	External string `json:"external"` // the gateway's address and port
	// LeaseLeftSeconds is how long the gateway keeps it unless renewed
	// (the daemon renews it well before).
	LeaseLeftSeconds int `json:"lease_left_seconds"`
}

// NAT is what RFC 5780 found about the NAT in front of this host (see
// `punchd nat` for the whole report).
type NAT struct {
	Type         string `json:"type"` // open, full-cone, restricted, port-restricted, symmetric, udp-blocked, unknown
	Mapping      string `json:"mapping"`
	Filtering    string `json:"filtering"`
	ExternalIPv4 string `json:"external_ipv4,omitempty"`
}

// Drops counts packets dropped inside the daemon since it started: relayed
// WireGuard packets the tunnel device did not take in time, and STUN
// packets ICE did not read in time. Kernel socket drops are not counted
// here (see /proc/net/snmp RcvbufErrors).
type Drops struct {
	RelayQueue uint64 `json:"relay_queue"`
	STUNQueue  uint64 `json:"stun_queue"`
}

// PeerStatus describes one configured peer.
type PeerStatus struct {
	ID    string `json:"id"`
	Alias string `json:"alias,omitempty"`
	// Member: learned from the network (not a --peer); MemberName is the
	// display name it announced.
	Member     bool   `json:"member,omitempty"`
	MemberName string `json:"member_name,omitempty"`
	State      string `json:"state"`
	Path       string `json:"path"` // "direct", "relay" or "none"
	// Via says how a direct path was made when ICE alone could not:
	// "birthday" (birthday punching), "prediction" (a sequential NAT's
	// next ports) or "port mapping"; empty for plain ICE.
	Via string `json:"via,omitempty"`
	// Probes is how many probes birthday punching or prediction took.
	Probes int    `json:"probes,omitempty"`
	Reason string `json:"reason,omitempty"`
	// RelayVia names the member relaying the tunnel (a peer relay);
	// then Path is "relay" and Relay empty.
	RelayVia string `json:"relay_via,omitempty"`
	// Relay is the TURN relay address carrying the path, when relayed.
	Relay       string `json:"relay,omitempty"`
	OverlayIPv4 string `json:"overlay_ipv4,omitempty"`
	OverlayIPv6 string `json:"overlay_ipv6,omitempty"`
	// NAT is the peer's NAT type as the peer reported it.
	NAT string `json:"nat,omitempty"`

	LocalCandidate  *Candidate `json:"local_candidate,omitempty"`
	RemoteCandidate *Candidate `json:"remote_candidate,omitempty"`

	RxBytes       uint64     `json:"rx_bytes"`
	TxBytes       uint64     `json:"tx_bytes"`
	LastHandshake *time.Time `json:"last_handshake,omitempty"`
	ConnectedAt   *time.Time `json:"connected_at,omitempty"`
}

// Candidate is one end of the ICE pair that carries the tunnel.
type Candidate struct {
	Type    string `json:"type"` // host, srflx, prflx, relay
	Address string `json:"address"`
	// RelayProtocol is how our relay candidate reaches the TURN server
	// ("udp", "tcp", "tls"); TCP and TLS carry the tunnel TCP-in-TCP.
	RelayProtocol string `json:"relay_protocol,omitempty"`
	// RelayFamily is the family our relay candidate reaches the TURN
	// server over ("ipv4", "ipv6"): a host whose IPv4 UDP is blocked
	// may reach it over IPv6 while the relayed address is IPv4.
	RelayFamily string `json:"relay_family,omitempty"`
}
