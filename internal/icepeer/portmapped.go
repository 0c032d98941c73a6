package icepeer

import (
	"net/netip"
	"slices"

	"github.com/pion/ice/v4"
)

// portMapFoundation marks the candidate of a gateway port mapping, so the
// peer can tell it from an ordinary server-reflexive one (and say "direct
// via port mapping").
const portMapFoundation = "portmap"

// portMappedCandidate renders the gateway's mapping of the tunnel socket
// as a server-reflexive candidate. The peer's checks to it reach the
// tunnel socket through the gateway's forward; our agent answers them as
// from a peer-reflexive remote, as for any srflx candidate. Nothing when
// there is no mapping.
func portMappedCandidate(external, local netip.AddrPort) string {
	if !external.IsValid() || !external.Addr().Is4() {
		return ""
	}
	c, err := ice.NewCandidateServerReflexive(&ice.CandidateServerReflexiveConfig{
		Network:    "udp",
		Address:    external.Addr().String(),
		Port:       int(external.Port()),
		Component:  ice.ComponentRTP,
		Foundation: portMapFoundation,
		RelAddr:    local.Addr().String(),
		RelPort:    int(local.Port()),
	})
	if err != nil {
		return ""
	}
	return c.Marshal()
}

// noteReflexive records a server-reflexive IPv4 candidate of the current
// attempt in the status: ours (remote false) or the peer's.
func (p *Peer) noteReflexive(raw string, remote bool) {
	c, err := ice.UnmarshalCandidate(raw)
	if err != nil || c.Type() != ice.CandidateTypeServerReflexive || c.NetworkType() != ice.NetworkTypeUDP4 {
		return
	}
	ip, err := netip.ParseAddr(c.Address())
	if err != nil {
		return
	}
	addr := netip.AddrPortFrom(ip.Unmap(), uint16(c.Port()))
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case remote && c.Foundation() == portMapFoundation:
		p.status.RemoteMapped = addr
	case remote:
		p.status.RemoteReflexive = addr
	case c.Foundation() != portMapFoundation:
		p.status.LocalReflexive = addr
	}
}

// PortMappingChanged tells the Peer the gateway mapping appeared or
// changed: the current attempt trickles it as a new candidate at once
// (the lease may come after the attempt gathered); later attempts offer
// it as they gather.
func (p *Peer) PortMappingChanged() {
	p.tryPost("port mapping", func() {
		if a := p.cur; a != nil && p.cfg.PortMapped != nil && !p.cfg.RelayOnly {
			if raw := portMappedCandidate(p.cfg.PortMapped()); raw != "" && !slices.Contains(a.local, raw) {
				p.onLocalCandidate(a, raw)
			}
		}
	})
}
