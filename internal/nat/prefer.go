package nat

import (
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/stun/v4"
)

// The controlling side's rule on top of pion's nomination: a direct pair
// that answers beats any relayed pair, whatever their ICE priorities, and
// while relayed we keep trying the direct pairs. DESIGN: "relay is a
// fallback, never a dead end".
//
// ICE priorities alone pick the wrong pair in a common race. The peer's
// first check from its TURN relay often arrives before the relay candidate
// itself (trickled through the rendezvous, a longer way). The agent then
// learns the relay's address as a peer-reflexive candidate, whose priority
// is high, and pion keeps that priority when the trickled relay candidate
// replaces it. A pair through the peer's relay then outranks every direct
// pair, and pion nominates it once the relay acceptance wait is over. In
// the lab grid, restricted x restricted went relayed in about one run in
// twenty that way, with a direct pair answering since the first 100 ms.
//
// pion's automatic renomination is no substitute: it moves off a relay only
// to host-host pairs or on RTT and a quality score, and on RTT it also moves
// back onto a relay, so the path could flap every few seconds.
//
// The preference runs inside pion's agent loop (WithBindingRequestHandler),
// the one place from which RenominateCandidate may be called safely. The
// peer's binding requests arrive every check interval while checking and
// every keepalive interval once connected (consent), so it runs often
// enough without a timer of its own.
const (
	// nominationGrace leaves the first moments after the peer's first
	// check to pion's own nomination, which picks a direct pair in the
	// ordinary case; two nominations in flight at once could leave the
	// ends on different pairs.
	nominationGrace = 150 * time.Millisecond
	// freshResponse: a pair that answered one of our checks this recently
	// works now.
	freshResponse = 2 * keepaliveInterval
	// nominateEvery spaces our nominations, so each gets its answer (or
	// not) before the next.
	nominateEvery = 250 * time.Millisecond
	// probeEvery: while relayed, one direct pair (round robin) is tried
	// this often by nominating it; if it answers, pion selects it.
	probeEvery = 500 * time.Millisecond
	// maxTrackedPairs bounds the pairs remembered per attempt.
	maxTrackedPairs = 64
)

// directPreference belongs to one controlling attempt.
type directPreference struct {
	agent atomic.Pointer[ice.Agent] // set once the agent exists
	log   *slog.Logger

	// mu guards the candidates, written by our loop and pion's candidate
	// callback, read in pion's agent loop. Nothing is called while held.
	mu      sync.Mutex
	locals  []ice.Candidate // ours on the shared socket (host, srflx)
	remotes []ice.Candidate // the peer's, as signalled, except relays

	// Touched only from pion's agent loop.
	begun         time.Time            // the peer's first check
	direct        []*ice.CandidatePair // direct pairs the peer has checked
	lastNominated time.Time
	lastProbe     time.Time
	nextProbe     int // round robin over probeTargets
}

func newDirectPreference(log *slog.Logger) *directPreference {
	return &directPreference{log: log}
}

// addLocal and addRemote learn the candidates direct pairs are made of:
// after a path broke, the peer's checks never arrive on a direct pair, so
// the pairs it checked do not tell which ones to try.
func (d *directPreference) addLocal(c ice.Candidate)  { d.add(&d.locals, c) }
func (d *directPreference) addRemote(c ice.Candidate) { d.add(&d.remotes, c) }

func (d *directPreference) add(to *[]ice.Candidate, c ice.Candidate) {
	if c == nil || c.Type() == ice.CandidateTypeRelay {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(*to) < maxTrackedPairs {
		*to = append(*to, c)
	}
}

// onBindingRequest is the agent's binding request handler. It never asks
// pion to switch by itself (false): nominations go through
// RenominateCandidate, so the controlled side follows.
func (d *directPreference) onBindingRequest(_ *stun.Message, _, _ ice.Candidate, pair *ice.CandidatePair) bool {
	agent := d.agent.Load()
	if agent == nil || pair == nil {
		return false
	}
	now := time.Now()
	if d.begun.IsZero() {
		d.begun = now
	}
	d.track(pair)
	sel, err := agent.GetSelectedCandidatePair()
	if err != nil {
		return false
	}
	target, why := d.choose(now, sel)
	if target == nil {
		return false
	}
	if err := agent.RenominateCandidate(target.Local, target.Remote); err != nil {
		d.log.Debug("nominate direct pair", "why", why, "pair", target.String(), "err", err)
		return false
	}
	d.log.Debug("nominating direct pair", "why", why, "local", target.Local.String(), "remote", target.Remote.String())
	return false
}

func (d *directPreference) track(pair *ice.CandidatePair) {
	if !isDirect(pair.Local, pair.Remote) || len(d.direct) >= maxTrackedPairs {
		return
	}
	for _, p := range d.direct {
		if p == pair {
			return
		}
	}
	d.direct = append(d.direct, pair)
}

// choose says which direct pair to nominate now, if any, and why. sel is
// the selected pair (nil while checking).
func (d *directPreference) choose(now time.Time, sel *ice.CandidatePair) (*ice.CandidatePair, string) {
	switch {
	case sel != nil && isDirect(sel.Local, sel.Remote):
		return nil, ""
	case now.Sub(d.lastNominated) < nominateEvery:
		return nil, ""
	case sel == nil && now.Sub(d.begun) < nominationGrace:
		return nil, ""
	}
	if best := freshest(d.direct, now); best != nil {
		d.lastNominated = now
		if sel == nil {
			return best, "a direct pair answers while a relayed pair outranks it"
		}
		return best, "a direct pair answers; leaving the relay"
	}
	if sel == nil || now.Sub(d.lastProbe) < probeEvery {
		return nil, ""
	}
	// Relayed and no direct pair has answered lately: nobody checks the
	// other pairs after selection, so try one; a nomination is a check.
	targets := d.probeTargets()
	if len(targets) == 0 {
		return nil, ""
	}
	d.lastProbe, d.lastNominated = now, now
	p := targets[d.nextProbe%len(targets)]
	d.nextProbe++
	return p, "probing a direct pair while relayed"
}

// probeTargets is one pair per remote address: the pairs the peer checked
// (they include its peer-reflexive addresses), then our first local
// candidate with each signalled remote one. Every local candidate here is
// on the shared socket, so one local is as good as another.
func (d *directPreference) probeTargets() []*ice.CandidatePair {
	var out []*ice.CandidatePair
	seen := make(map[string]bool)
	add := func(p *ice.CandidatePair) {
		key := p.Remote.Address() + ":" + strconv.Itoa(p.Remote.Port())
		if !seen[key] {
			seen[key] = true
			out = append(out, p)
		}
	}
	for _, p := range d.direct {
		add(p)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.locals) == 0 {
		return out
	}
	local := d.locals[0]
	for _, c := range d.locals {
		if c.Type() == ice.CandidateTypeHost {
			local = c
			break
		}
	}
	for _, r := range d.remotes {
		add(&ice.CandidatePair{Local: local, Remote: r})
	}
	return out
}

// freshest is the best-ranked direct pair that answered within
// freshResponse, ties going to the latest answer.
func freshest(pairs []*ice.CandidatePair, now time.Time) *ice.CandidatePair {
	var best *ice.CandidatePair
	var bestAt time.Time
	for _, p := range pairs {
		at := p.LastResponseReceivedAt()
		if p.ResponsesReceived() == 0 || at.IsZero() || now.Sub(at) > freshResponse {
			continue
		}
		switch {
		case best == nil, pairRank(p) > pairRank(best), pairRank(p) == pairRank(best) && at.After(bestAt):
			best, bestAt = p, at
		}
	}
	return best
}

// isDirect: neither end is a TURN relay.
func isDirect(local, remote ice.Candidate) bool {
	return local != nil && remote != nil &&
		local.Type() != ice.CandidateTypeRelay && remote.Type() != ice.CandidateTypeRelay
}

// pairRank prefers pairs whose ends are more directly known: host over
// server-reflexive over peer-reflexive.
func pairRank(p *ice.CandidatePair) int {
	rank := func(c ice.Candidate) int {
		switch c.Type() {
		case ice.CandidateTypeHost:
			return 3
		case ice.CandidateTypeServerReflexive:
			return 2
		case ice.CandidateTypePeerReflexive:
			return 1
		}
		return 0
	}
	return rank(p.Local) + rank(p.Remote)
}
