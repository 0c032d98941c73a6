package daemon

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/punchd/punchd/internal/icepeer"
	"github.com/punchd/punchd/internal/identity"
	"github.com/punchd/punchd/internal/tunnel"
)

// Peer relays, the daemon's half (the data path is tunnel/peerrelay.go):
// for every peer without a direct path, probe the round trip over its own
// path (the TURN relay, if any) and through every peer we reach directly,
// and send through the best of those when it beats the TURN relay clearly
// (or there is no relay path at all). A direct path always wins.

const (
	// probeEvery is how often paths are probed.
	probeEvery = 2 * time.Second
	// probeFresh: older answers do not count.
	probeFresh = 3 * probeEvery
	// beatBy: a member must beat the TURN relay's RTT by this factor to be
	// chosen, and keeps being used while it beats it at all (hysteresis).
	beatBy = 0.8
	// maxProbeResults bounds the results kept whatever peers answer.
	maxProbeResults = 4096
)

type probeKey struct{ peer, via identity.PublicKey }

type probeResult struct {
	rtt time.Duration
	at  time.Time
}

// relayChooser owns the probe results and the choice per peer.
type relayChooser struct {
	d *daemon

	mu      sync.Mutex
	results map[probeKey]probeResult
}

func newRelayChooser(d *daemon) *relayChooser {
	c := &relayChooser{d: d, results: make(map[probeKey]probeResult)}
	d.bind.SetProbeHandler(c.onProbe)
	return c
}

// onProbe runs on a receive path: record and return. The round trip is
// smoothed (as TCP smooths its RTT, gain 1/4), so that one queued probe
// under load does not move the path.
func (c *relayChooser) onProbe(r tunnel.ProbeResult) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := probeKey{r.Peer, r.Via}
	old, ok := c.results[k]
	switch {
	case ok && time.Since(old.at) <= probeFresh:
		c.results[k] = probeResult{old.rtt + (r.RTT-old.rtt)/4, time.Now()}
	case ok || len(c.results) < maxProbeResults:
		c.results[k] = probeResult{r.RTT, time.Now()}
	}
}

func (c *relayChooser) run(ctx context.Context) {
	t := time.NewTicker(probeEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.round()
	}
}

// round chooses with what the last probes said, then probes again.
func (c *relayChooser) round() {
	peers := c.d.snapshot()
	var direct []*peerState
	for _, ps := range peers {
		if ps.hasDirectPath() {
			direct = append(direct, ps)
		}
	}
	now := time.Now()
	for _, ps := range peers {
		if ps.hasDirectPath() {
			c.setVia(ps, nil, 0, 0)
			continue
		}
		own, ownOK := c.fresh(ps.key, identity.PublicKey{}, now)
		if !ownOK {
			own = 0
		}
		var cands []viaCandidate
		for _, m := range direct {
			if m == ps {
				continue
			}
			if rtt, ok := c.fresh(ps.key, m.key, now); ok {
				cands = append(cands, viaCandidate{m, rtt})
			}
		}
		best, bestRTT := chooseVia(own, cands, c.d.bind.Via(ps.key))
		c.setVia(ps, best, bestRTT, own)
		_ = c.d.bind.Probe(ps.key, identity.PublicKey{})
		for _, m := range direct {
			if m != ps {
				_ = c.d.bind.Probe(ps.key, m.key)
			}
		}
	}
	c.prune(now)
}

// viaCandidate is a peer we reach directly that answered a probe to the
// peer in question through it.
type viaCandidate struct {
	via *peerState
	rtt time.Duration
}

// chooseVia picks the relaying peer for a peer without a direct path: the
// candidate with the smallest round trip, if it beats own (the round trip
// over the peer's own path, through the TURN relay; 0 when that does not
// answer) by beatBy, or at all for the one in use now (cur), so that two
// close figures do not make the path flap. nil: keep the own path.
func chooseVia(own time.Duration, cands []viaCandidate, cur identity.PublicKey) (*peerState, time.Duration) {
	var best *peerState
	var bestRTT time.Duration
	for _, c := range cands {
		limit := beatBy
		if c.via.key == cur {
			limit = 1
		}
		if own > 0 && float64(c.rtt) >= limit*float64(own) {
			continue
		}
		if best == nil || c.rtt < bestRTT {
			best, bestRTT = c.via, c.rtt
		}
	}
	return best, bestRTT
}

func (c *relayChooser) fresh(peer, via identity.PublicKey, now time.Time) (time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.results[probeKey{peer, via}]
	if !ok || now.Sub(r.at) > probeFresh {
		return 0, false
	}
	return r.rtt, true
}

func (c *relayChooser) prune(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, r := range c.results {
		if now.Sub(r.at) > probeFresh {
			delete(c.results, k)
		}
	}
}

// setVia makes via (nil: none) carry ps's packets and says why in status.
func (c *relayChooser) setVia(ps *peerState, via *peerState, rtt, own time.Duration) {
	var key identity.PublicKey
	if via != nil {
		key = via.key
	}
	if c.d.bind.Via(ps.key) == key {
		if via != nil {
			ps.mu.Lock()
			ps.via = via.displayName()
			ps.viaReason = viaReason(ps.via, rtt, own)
			ps.mu.Unlock()
		}
		return
	}
	c.d.bind.SetVia(ps.key, key)
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if via == nil {
		if ps.via != "" {
			ps.log.Info("peer relay no longer used", "via", ps.via)
		}
		ps.via, ps.viaReason = "", ""
		return
	}
	ps.via = via.displayName()
	ps.viaReason = viaReason(ps.via, rtt, own)
	ps.log.Info("relay via member", "via", ps.via, "rtt", rtt, "own_path_rtt", own)
}

func viaReason(via string, rtt, own time.Duration) string {
	if own == 0 {
		return fmt.Sprintf("relay via %s (%s round trip): no direct path, and no TURN relay path answers", via, rtt.Round(10*time.Microsecond))
	}
	return fmt.Sprintf("relay via %s: %s round trip against %s through the TURN relay", via, rtt.Round(10*time.Microsecond), own.Round(10*time.Microsecond))
}

// hasDirectPath reports whether ICE selected a direct pair for ps, or
// birthday punching found one (see hardnat.go).
func (ps *peerState) hasDirectPath() bool {
	if via, _, _, _ := ps.hard.status(); via != "" {
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
