// Package pathpref is the controlling ICE side's path rule on top of
// pion's nomination (see the comment below): direct beats relayed, relays
// reached over UDP beat TURN over TCP/TLS, and while relayed the direct
// pairs keep being tried. It is apart from icepeer because it is a policy
// over pion's candidate pairs with three entry points (the agent's binding
// request handler and the candidates it learns), tested on its own pairs.
package pathpref

import (
	"cmp"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/stun/v4"
)

// The controlling side's rule on top of pion's nomination: a direct pair
// that answers beats any relayed pair, whatever their ICE priorities, and
// while relayed we keep trying the direct pairs: a relay is a fallback,
// never a dead end. Among relayed pairs, one whose relays are
// reached over UDP beats one through TURN over TCP or TLS, which would
// carry the tunnel's TCP inside TCP, and where one end has no UDP (its
// relay is reached over TCP either way), the other end still reaches its
// relay over UDP, or uses none.
//
// pion alone often lands on TURN over TCP at both ends there: all those
// pairs have the same lower candidate priority (the peer's TCP relay), so
// pion nominates whichever answered first once the relay acceptance wait
// is over, and with UDP and TCP allocations made at once that is either.
// Once a pair is selected neither agent checks the others, so a better
// relayed pair is never seen to answer unless we try it (as direct pairs).
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
// Keepalive is the keepalive (consent) interval the agent must be given
// (ice.WithKeepaliveInterval): the peer's checks arrive this often once
// connected, which is what runs the preference, and a pair counts as
// working for two of them.
const Keepalive = 500 * time.Millisecond

const (
	// nominationGrace leaves the first moments after the peer's first
	// check to pion's own nomination, which picks a direct pair in the
	// ordinary case; two nominations in flight at once could leave the
	// ends on different pairs.
	nominationGrace = 150 * time.Millisecond
	// freshResponse: a pair that answered one of our checks this recently
	// works now.
	freshResponse = 2 * Keepalive
	// nominateEvery spaces our nominations, so each gets its answer (or
	// not) before the next.
	nominateEvery = 250 * time.Millisecond
	// probeEvery: while relayed, one direct pair (round robin) is tried
	// this often by nominating it; if it answers, pion selects it.
	probeEvery = 500 * time.Millisecond
	// maxTrackedPairs bounds the pairs remembered per attempt.
	maxTrackedPairs = 64
)

// Preference belongs to one controlling attempt (one agent).
type Preference struct {
	agent atomic.Pointer[ice.Agent] // set once the agent exists
	log   *slog.Logger

	// mu guards the candidates, written by our loop and pion's candidate
	// callback, read in pion's agent loop. Nothing is called while held.
	mu      sync.Mutex
	locals  []ice.Candidate // ours on the shared socket (host, srflx)
	remotes []ice.Candidate // the peer's, as signalled, except relays

	// Touched only from pion's agent loop.
	begun         time.Time            // the peer's first check
	pairs         []*ice.CandidatePair // pairs the peer has checked, classTCPRelay and better
	lastNominated time.Time
	lastProbe     time.Time
	nextProbe     int // round robin over probeTargets
}

// New returns the preference for one agent; give it the agent with
// SetAgent and its OnBindingRequest to ice.WithBindingRequestHandler.
func New(log *slog.Logger) *Preference {
	if log == nil {
		log = slog.Default()
	}
	return &Preference{log: log}
}

// SetAgent gives the preference its agent, once it exists; until then
// binding requests leave the choice to pion.
func (d *Preference) SetAgent(a *ice.Agent) { d.agent.Store(a) }

// AddLocal and AddRemote learn the candidates direct pairs are made of:
// after a path broke, the peer's checks never arrive on a direct pair, so
// the pairs it checked do not tell which ones to try.
func (d *Preference) AddLocal(c ice.Candidate) { d.add(&d.locals, c) }

// AddRemote learns a candidate of the peer (see AddLocal).
func (d *Preference) AddRemote(c ice.Candidate) { d.add(&d.remotes, c) }

func (d *Preference) add(to *[]ice.Candidate, c ice.Candidate) {
	if c == nil || c.Type() == ice.CandidateTypeRelay {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(*to) < maxTrackedPairs {
		*to = append(*to, c)
	}
}

// OnBindingRequest is the agent's binding request handler. It never asks
// pion to switch by itself (false): nominations go through
// RenominateCandidate, so the controlled side follows.
func (d *Preference) OnBindingRequest(_ *stun.Message, _, _ ice.Candidate, pair *ice.CandidatePair) bool {
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
		d.log.Debug("nominate pair", "why", why, "pair", target.String(), "err", err)
		return false
	}
	d.log.Debug("nominating pair", "why", why, "local", target.Local.String(), "remote", target.Remote.String())
	return false
}

func (d *Preference) track(pair *ice.CandidatePair) {
	if pairClass(pair.Local, pair.Remote) <= classTCPRelays || len(d.pairs) >= maxTrackedPairs {
		return
	}
	for _, p := range d.pairs {
		if p == pair {
			return
		}
	}
	d.pairs = append(d.pairs, pair)
}

// choose says which pair to nominate now, if any, and why. sel is the
// selected pair (nil while checking).
func (d *Preference) choose(now time.Time, sel *ice.CandidatePair) (*ice.CandidatePair, string) {
	cur := classNone
	if sel != nil {
		cur = pairClass(sel.Local, sel.Remote)
	}
	switch {
	case cur == classDirect:
		return nil, ""
	case now.Sub(d.lastNominated) < nominateEvery:
		return nil, ""
	case sel == nil && now.Sub(d.begun) < nominationGrace:
		return nil, ""
	}
	// While checking, a pair with TURN over TCP/TLS at one end is not
	// worth pre-empting pion for (a direct pair may answer next); pion
	// nominates one after its relay acceptance wait, and once a pair is
	// selected we move to the one with the fewest such legs.
	floor := cur
	if sel == nil {
		floor = classTCPRelay
	}
	if best := freshest(d.pairs, now, floor); best != nil {
		d.lastNominated = now
		switch {
		case pairClass(best.Local, best.Remote) != classDirect:
			return best, "a relayed pair with fewer legs of TURN over TCP/TLS answers"
		case sel == nil:
			return best, "a direct pair answers while a relayed pair outranks it"
		default:
			return best, "a direct pair answers; leaving the relay"
		}
	}
	// No direct pair known to answer. Try one; a nomination is a check,
	// and if it is answered pion selects that pair. While relayed, nobody
	// else checks the other pairs. While checking with nothing nominated
	// after the grace, pion is most likely holding back a relayed pair
	// that outranks the direct ones (see the top): the peer stops checking
	// a pair once it answered, so the pair we would have seen answer may
	// never reach the handler; try the direct pairs quickly then (and
	// no relayed one, which would win over a direct pair that answers
	// later).
	every, why := probeEvery, "probing a direct pair while relayed"
	if sel == nil {
		every, why = nominateEvery, "probing a direct pair while a relayed pair outranks it"
	}
	if now.Sub(d.lastProbe) < every {
		return nil, ""
	}
	targets := d.probeTargets(cur)
	if len(targets) == 0 {
		return nil, ""
	}
	d.lastProbe, d.lastNominated = now, now
	p := targets[d.nextProbe%len(targets)]
	d.nextProbe++
	if pairClass(p.Local, p.Remote) != classDirect {
		why = "probing a relayed pair with fewer legs of TURN over TCP/TLS"
	}
	return p, why
}

// probeTargets: while on TURN over TCP/TLS (cur), first the relayed pairs
// the peer checked that have fewer such legs, best first; then one direct
// pair per remote address: the pairs the peer checked (they include its
// peer-reflexive addresses), then our first local candidate with each
// signalled remote one. Every local candidate here is on the shared
// socket, so one local is as good as another.
func (d *Preference) probeTargets(cur pathClass) []*ice.CandidatePair {
	var out []*ice.CandidatePair
	if cur > classNone {
		for _, p := range d.pairs {
			if c := pairClass(p.Local, p.Remote); c > cur && c != classDirect {
				out = append(out, p)
			}
		}
		slices.SortStableFunc(out, func(x, y *ice.CandidatePair) int {
			return cmp.Or(cmp.Compare(pairClass(y.Local, y.Remote), pairClass(x.Local, x.Remote)), cmp.Compare(pairRank(y), pairRank(x)))
		})
	}
	seen := make(map[string]bool)
	add := func(p *ice.CandidatePair) {
		key := p.Remote.Address() + ":" + strconv.Itoa(p.Remote.Port())
		if !seen[key] {
			seen[key] = true
			out = append(out, p)
		}
	}
	for _, p := range d.pairs {
		if pairClass(p.Local, p.Remote) == classDirect {
			add(p)
		}
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
	// Public addresses first: where a relayed pair outranks the direct
	// ones, the direct path is through the peer's NAT (on one LAN, host
	// pairs win on priority anyway).
	hostLast := func(c ice.Candidate) int {
		if c.Type() == ice.CandidateTypeHost {
			return 1
		}
		return 0
	}
	remotes := slices.Clone(d.remotes)
	slices.SortStableFunc(remotes, func(x, y ice.Candidate) int { return cmp.Compare(hostLast(x), hostLast(y)) })
	for _, r := range remotes {
		add(&ice.CandidatePair{Local: local, Remote: r})
	}
	return out
}

// freshest is the best pair of a class above cur that answered within
// freshResponse: best class first, then rank, ties going to the latest
// answer.
func freshest(pairs []*ice.CandidatePair, now time.Time, cur pathClass) *ice.CandidatePair {
	var best *ice.CandidatePair
	var bestAt time.Time
	better := func(p *ice.CandidatePair, at time.Time) bool {
		pc, bc := pairClass(p.Local, p.Remote), pairClass(best.Local, best.Remote)
		if pc != bc {
			return pc > bc
		}
		if pairRank(p) != pairRank(best) {
			return pairRank(p) > pairRank(best)
		}
		return at.After(bestAt)
	}
	for _, p := range pairs {
		at := p.LastResponseReceivedAt()
		if pairClass(p.Local, p.Remote) <= cur || p.ResponsesReceived() == 0 || at.IsZero() || now.Sub(at) > freshResponse {
			continue
		}
		if best == nil || better(p, at) {
			best, bestAt = p, at
		}
	}
	return best
}

// pathClass orders what a pair's path is worth, best last.
type pathClass int

const (
	classNone      pathClass = iota // no pair
	classTCPRelays                  // through two TURN relays, both reached over TCP or TLS
	classTCPRelay                   // one end's relay is reached over TCP or TLS, the other's over UDP or none
	classUDPRelay                   // through relays reached over UDP
	classDirect                     // no relay
)

func pairClass(local, remote ice.Candidate) pathClass {
	switch {
	case local == nil || remote == nil:
		return classNone
	case isDirect(local, remote):
		return classDirect
	case relayOverStream(local) && relayOverStream(remote):
		return classTCPRelays
	case relayOverStream(local) || relayOverStream(remote):
		return classTCPRelay
	default:
		return classUDPRelay
	}
}

// relayOverStream tells a relay candidate reached over TCP or TLS. The
// candidate line does not carry the transport, but pion encodes it in the
// relay's local preference (the middle 16 bits of its priority: 3 for
// UDP, 2 DTLS, 1 TCP, 0 TLS), on our candidates and on the peer's alike,
// and it survives the copies pion hands out.
func relayOverStream(c ice.Candidate) bool {
	if c.Type() != ice.CandidateTypeRelay {
		return false
	}
	if r, ok := c.(*ice.CandidateRelay); ok && r.RelayProtocol() != "" {
		return r.RelayProtocol() == "tcp" || r.RelayProtocol() == "tls"
	}
	return (c.Priority()>>8)&0xffff < 2
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
