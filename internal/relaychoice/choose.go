package relaychoice

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/punchd/punchd/internal/identity"
)

// Peer relays, the choice (the data path is in the tunnel): for every peer
// without a direct path, probe the round trip over its own path (the TURN
// relay, if any) and through every peer we reach directly, and send
// through the best of those when it beats the TURN relay clearly (or there
// is no relay path at all). A direct path always wins.

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

// Peer is one peer of the daemon as the chooser sees it.
type Peer struct {
	Key identity.PublicKey
	// Direct: ICE or birthday punching found a direct path to it, so it
	// needs no relay and may relay for others.
	Direct bool
}

// Bind is the tunnel's peer-relay data path (tunnel.Bind).
type Bind interface {
	// Via is the peer relaying for peer now; zero: none.
	Via(peer identity.PublicKey) identity.PublicKey
	// SetVia makes via (zero: none) carry peer's packets.
	SetVia(peer, via identity.PublicKey)
	// Probe sends a round-trip probe to peer through via (zero: its own
	// path); the answer comes back through Chooser.OnProbe.
	Probe(peer, via identity.PublicKey) error
}

// Config is what a Chooser is given by the daemon.
type Config struct {
	Bind Bind
	// Peers lists the daemon's peers, once per round.
	Peers func() []Peer
	// Chosen reports the choice for a peer after each round: via (zero:
	// its own path), the round trips through via and over its own path
	// (0: no answer), and whether the choice changed. Called from Run.
	Chosen func(peer, via identity.PublicKey, rtt, own time.Duration, changed bool)
}

type probeKey struct{ peer, via identity.PublicKey }

type probeResult struct {
	rtt time.Duration
	at  time.Time
}

// Chooser owns the probe results and the choice per peer.
type Chooser struct {
	c Config

	mu      sync.Mutex
	results map[probeKey]probeResult
}

// New returns a Chooser; the caller routes probe answers to OnProbe and
// runs Run.
func New(c Config) *Chooser {
	return &Chooser{c: c, results: make(map[probeKey]probeResult)}
}

// OnProbe runs on a receive path: record and return. The round trip is
// smoothed (as TCP smooths its RTT, gain 1/4), so that one queued probe
// under load does not move the path. The table is bounded, whatever
// peers answer.
func (c *Chooser) OnProbe(peer, via identity.PublicKey, rtt time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := probeKey{peer, via}
	old, ok := c.results[k]
	switch {
	case ok && time.Since(old.at) <= probeFresh:
		c.results[k] = probeResult{old.rtt + (rtt-old.rtt)/4, time.Now()}
	case ok || len(c.results) < maxProbeResults:
		c.results[k] = probeResult{rtt, time.Now()}
	}
}

// Run chooses and probes every probeEvery until ctx is done.
func (c *Chooser) Run(ctx context.Context) {
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
func (c *Chooser) round() {
	peers := c.c.Peers()
	var direct []identity.PublicKey
	for _, p := range peers {
		if p.Direct {
			direct = append(direct, p.Key)
		}
	}
	now := time.Now()
	for _, p := range peers {
		if p.Direct {
			c.setVia(p.Key, identity.PublicKey{}, 0, 0)
			continue
		}
		own, ownOK := c.fresh(p.Key, identity.PublicKey{}, now)
		if !ownOK {
			own = 0
		}
		var cands []Candidate
		for _, m := range direct {
			if m == p.Key {
				continue
			}
			if rtt, ok := c.fresh(p.Key, m, now); ok {
				cands = append(cands, Candidate{m, rtt})
			}
		}
		best, bestRTT := Choose(own, cands, c.c.Bind.Via(p.Key))
		c.setVia(p.Key, best, bestRTT, own)
		_ = c.c.Bind.Probe(p.Key, identity.PublicKey{})
		for _, m := range direct {
			if m != p.Key {
				_ = c.c.Bind.Probe(p.Key, m)
			}
		}
	}
	c.prune(now)
}

// Candidate is a peer we reach directly that answered a probe to the
// peer in question through it.
type Candidate struct {
	Via identity.PublicKey
	RTT time.Duration
}

// Choose picks the relaying peer for a peer without a direct path: the
// candidate with the smallest round trip, if it beats own (the round trip
// over the peer's own path, through the TURN relay; 0 when that does not
// answer) by beatBy, or at all for the one in use now (cur), so that two
// close figures do not make the path flap. Zero: keep the own path.
func Choose(own time.Duration, cands []Candidate, cur identity.PublicKey) (identity.PublicKey, time.Duration) {
	var best identity.PublicKey
	var bestRTT time.Duration
	found := false
	for _, c := range cands {
		limit := beatBy
		if c.Via == cur {
			limit = 1
		}
		if own > 0 && float64(c.RTT) >= limit*float64(own) {
			continue
		}
		if !found || c.RTT < bestRTT {
			best, bestRTT, found = c.Via, c.RTT, true
		}
	}
	return best, bestRTT
}

func (c *Chooser) fresh(peer, via identity.PublicKey, now time.Time) (time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.results[probeKey{peer, via}]
	if !ok || now.Sub(r.at) > probeFresh {
		return 0, false
	}
	return r.rtt, true
}

func (c *Chooser) prune(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, r := range c.results {
		if now.Sub(r.at) > probeFresh {
			delete(c.results, k)
		}
	}
}

// setVia makes via (zero: none) carry peer's packets and tells the daemon.
func (c *Chooser) setVia(peer, via identity.PublicKey, rtt, own time.Duration) {
	changed := c.c.Bind.Via(peer) != via
	if changed {
		c.c.Bind.SetVia(peer, via)
	}
	if c.c.Chosen != nil {
		c.c.Chosen(peer, via, rtt, own, changed)
	}
}

// Reason is the status sentence for a peer relayed via the peer named via.
func Reason(via string, rtt, own time.Duration) string {
	if own == 0 {
		return fmt.Sprintf("relay via %s (%s round trip): no direct path, and no TURN relay path answers", via, rtt.Round(10*time.Microsecond))
	}
	return fmt.Sprintf("relay via %s: %s round trip against %s through the TURN relay", via, rtt.Round(10*time.Microsecond), own.Round(10*time.Microsecond))
}
