package daemon

import (
	"time"

	"github.com/punchd/punchd/internal/icepeer"
	"github.com/punchd/punchd/internal/identity"
	"github.com/punchd/punchd/internal/relaychoice"
	"github.com/punchd/punchd/internal/tunnel"
)

// newRelayChooser wires the peer-relay choice (internal/relaychoice) to
// the peers and the Bind: the chooser sees which peers are direct and
// tells which one relays for which; status shows it.
func (d *daemon) newRelayChooser() *relaychoice.Chooser {
	c := relaychoice.New(relaychoice.Config{
		Bind:   d.bind,
		Peers:  d.relayPeers,
		Chosen: d.relayChosen,
	})
	d.bind.SetProbeHandler(func(r tunnel.ProbeResult) { c.OnProbe(r.Peer, r.Via, r.RTT) })
	return c
}

func (d *daemon) relayPeers() []relaychoice.Peer {
	peers := d.snapshot()
	out := make([]relaychoice.Peer, 0, len(peers))
	for _, ps := range peers {
		out = append(out, relaychoice.Peer{Key: ps.key, Direct: ps.hasDirectPath()})
	}
	return out
}

// relayChosen records the choice for status and logs a change.
func (d *daemon) relayChosen(peer, via identity.PublicKey, rtt, own time.Duration, changed bool) {
	ps, ok := d.peer(peer)
	if !ok {
		return
	}
	var name string
	if via != (identity.PublicKey{}) {
		vs, ok := d.peer(via)
		if !ok {
			return
		}
		name = vs.displayName()
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	switch {
	case name != "":
		ps.via, ps.viaReason = name, relaychoice.Reason(name, rtt, own)
		if changed {
			ps.log.Info("relay via member", "via", ps.via, "rtt", rtt, "own_path_rtt", own)
		}
	case changed:
		if ps.via != "" {
			ps.log.Info("peer relay no longer used", "via", ps.via)
		}
		ps.via, ps.viaReason = "", ""
	}
}

// hasDirectPath reports whether ICE selected a direct pair for ps, or
// birthday punching found one (internal/hardnat).
func (ps *peerState) hasDirectPath() bool {
	if via, _, _, _ := ps.hard.Status(); via != "" {
		return true
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.lastPath.Kind() == icepeer.PathDirect
}

// displayName is how logs and status name a peer: alias, announced name,
// or the start of its ID.
func (ps *peerState) displayName() string {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	switch {
	case ps.alias != "":
		return ps.alias
	case ps.name != "":
		return ps.name
	}
	return ps.key.Short()
}
