package daemon

import (
	"time"

	"github.com/punchd/punchd/internal/control"
	"github.com/punchd/punchd/internal/icepeer"
	"github.com/punchd/punchd/internal/natkind"
	"github.com/punchd/punchd/internal/natprobe"
)

// status gathers what `punchd status` shows from the parts that own it: ICE
// for state and candidates, WireGuard for bytes and handshakes.
func (d *daemon) status() control.Status {
	st := control.Status{Self: control.Self{
		ID:          d.self.String(),
		OverlayIPv4: addrString(firstOf(d.selfIPs, true)),
		OverlayIPv6: addrString(firstOf(d.selfIPs, false)),
		Interface:   d.cfg.Interface,
		ListenPort:  d.dev.ListenPort(),
		Rendezvous:  d.cfg.RendezvousURL,
		Started:     d.started,
	}}
	dr := d.dev.Drops()
	st.Self.Drops = control.Drops{RelayQueue: dr.Relay, STUNQueue: dr.STUN}
	if rv := d.rv.Load(); rv != nil {
		st.Self.RendezvousConnected = rv.Connected()
		st.Self.SignalingRefused = rv.Dropped()
	}
	st.Self.Warnings = d.iceChoice().warnings(d.offered.Load())
	natRep := d.nat.Current()
	if natRep != nil {
		st.Self.NAT = &control.NAT{Type: string(natRep.NATType), Mapping: string(natRep.Mapping),
			Filtering: string(natRep.Filtering), ExternalIPv4: natRep.ExternalIPv4}
	}
	if d.lease != nil {
		if m, _ := d.lease.Current(); !m.IsZero() {
			st.Self.PortMapping = &control.PortMapping{Protocol: string(m.Protocol), External: m.External.String(),
				LeaseLeftSeconds: int(time.Until(m.Expires).Seconds())}
		}
	}
	stats, err := d.dev.Stats()
	if err != nil {
		d.log.Warn("read wireguard stats", "err", err)
	}
	if d.net != nil {
		st.Self.Name = d.net.Name()
		st.Self.Network = d.net.Topic()[:8]
	}
	for _, ps := range d.snapshot() {
		is := ps.ice.Status()
		ps.mu.Lock()
		name, relayVia, viaReason := ps.name, ps.via, ps.viaReason
		ps.mu.Unlock()
		out := peerStatus(is, natRep)
		out.ID, out.Alias, out.Member, out.MemberName = ps.key.String(), ps.alias, ps.member, name
		out.OverlayIPv4 = addrString(firstOf(ps.routes, true))
		out.OverlayIPv6 = addrString(firstOf(ps.routes, false))
		if is.Path.Kind() == icepeer.PathDirect && d.viaPortMapping(is, natRep) {
			out.Via = "port mapping"
		}
		via, probes, remote, miss := ps.hard.Status()
		if via != "" {
			// A birthday path carries the tunnel; ICE's (relayed) pair
			// stands by.
			out.Path, out.Via, out.Probes, out.Reason, out.Relay = icepeer.PathDirect.String(), via, probes, "", ""
			out.LocalCandidate, out.RemoteCandidate = nil, &control.Candidate{Type: "prflx", Address: remote.String()}
		} else if is.Path.Kind() == icepeer.PathRelay && miss != "" {
			out.Reason += "; last try: " + miss
		}
		if relayVia != "" {
			// A member carries the tunnel (see peerrelay.go): it
			// answered our probes through it a moment ago.
			out.State, out.Path, out.RelayVia, out.Reason = icepeer.StateConnected.String(), icepeer.PathRelay.String(), relayVia, viaReason
			out.Relay, out.LocalCandidate, out.RemoteCandidate = "", nil, nil
		}
		if s, ok := stats[ps.key]; ok {
			out.RxBytes, out.TxBytes = s.RxBytes, s.TxBytes
			if !s.LastHandshake.IsZero() {
				hs := s.LastHandshake
				out.LastHandshake = &hs
			}
		}
		// ICE's: a restart's new path counts as new, though the
		// tunnel never went without one (make-before-break).
		if !is.ConnectedAt.IsZero() {
			at := is.ConnectedAt
			out.ConnectedAt = &at
		}
		st.Peers = append(st.Peers, out)
	}
	return st
}

// peerStatus is what ICE knows of a peer, as `punchd status` shows it;
// natRep is this host's latest NAT probe (nil before the first).
func peerStatus(is icepeer.PeerStatus, natRep *natprobe.Report) control.PeerStatus {
	out := control.PeerStatus{
		State:  is.State.String(),
		Path:   is.Path.Kind().String(),
		Reason: is.Reason,
		NAT:    string(is.RemoteNAT),
	}
	if is.Path.Kind() != icepeer.PathNone {
		out.LocalCandidate = candidate(is.Path.Local)
		out.RemoteCandidate = candidate(is.Path.Remote)
	}
	if is.Path.Kind() == icepeer.PathRelay {
		out.Relay = is.Path.RelayAddr().String()
		if out.Reason == "" {
			out.Reason = natkind.RelayReason(out.Relay, natRep.Local(), is.RemoteNAT)
		}
	}
	return out
}

func candidate(c icepeer.Candidate) *control.Candidate {
	if c.IsZero() {
		return nil
	}
	out := &control.Candidate{Type: c.Type.String(), Address: c.Addr.String(), RelayProtocol: c.RelayProtocol}
	if c.RelayProtocol != "" {
		out.RelayFamily = "ipv4"
		if c.RelayOver6 {
			out.RelayFamily = "ipv6"
		}
	}
	return out
}

// viaPortMapping reports whether a direct path goes through a gateway's
// port mapping: the peer's mapped candidate is the remote end, or we hold
// a mapping and the two NATs allow no direct path without one.
func (d *daemon) viaPortMapping(is icepeer.PeerStatus, natRep *natprobe.Report) bool {
	if is.RemoteMapped.IsValid() && is.Path.Remote.Addr == is.RemoteMapped {
		return true
	}
	if d.lease == nil || natRep == nil {
		return false
	}
	m, _ := d.lease.Current()
	return !m.IsZero() && natkind.NeedsRelay(natRep.NATType, is.RemoteNAT)
}
