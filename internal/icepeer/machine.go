package icepeer

import (
	"slices"
	"time"

	"github.com/pion/ice/v4"
	"github.com/punchd/punchd/internal/natkind"
)

// The state machine. Everything here runs on the loop in Run.
//
// The controlling side (the larger key) owns attempts: it offers a new gen
// when the peer comes online, when the peer says hello without having our
// current attempt, or after a failure (with backoff). The controlled side
// answers every new offer with a fresh agent, and asks for an offer with
// hello when it sees the peer online without an attempt or when its agent
// fails. Both ends must agree on the roles, so they follow from the keys.

const (
	// retryMin..retryMax bound the backoff between failed attempts and
	// between hellos; connecting resets it.
	retryMin = 200 * time.Millisecond
	retryMax = 5 * time.Second
	// offerRepeat: an unanswered offer is repeated this often (the peer
	// answers a repeated offer by repeating its answer), so one lost
	// message costs a second, not a failed attempt.
	offerRepeat = time.Second
	// answerTimeout: an offer unanswered this long is replaced by a new
	// attempt. The controlled side usually says hello first (its agent
	// fails after disconnected+failed = 7 s); this is the backstop.
	answerTimeout = disconnectedTimeout + failedTimeout + time.Second
	// maxEarlyGens bounds candidates kept for offers not seen yet.
	maxEarlyGens = 4
)

func (p *Peer) onPresence(online bool) {
	if online && !p.online && p.localNAT != "" {
		// A peer (re)appearing may not know our NAT yet.
		p.send(signalMsg{Kind: kindNAT})
	}
	p.online = online
	if !online {
		p.backoff = retryMin
		p.wantAttempt = false
		p.stopTimer()
		if a := p.cur; a != nil && !a.path.IsZero() && a.state != ice.ConnectionStateFailed {
			// The rendezvous is only for signaling: a path that answers
			// outlives the peer's session there (rendezvous restart, the
			// peer's websocket reconnecting). If it dies we close it then.
			p.setState(p.status.State, "peer left the rendezvous; keeping the path while it answers")
			return
		}
		p.closeAttempt("peer offline")
		p.setState(StateWaiting, "waiting for peer: it is not connected to the rendezvous")
		return
	}
	a := p.cur
	if a != nil && a.state == ice.ConnectionStateConnected {
		p.setState(StateConnected, "") // drop the "peer left" note
	}
	if p.controlling {
		switch {
		case a == nil || a.state == ice.ConnectionStateFailed:
			p.requestAttempt()
		case !a.started:
			// Our offer may have gone out before the peer was there.
			p.resendOffer()
		}
		return
	}
	if a == nil || a.state == ice.ConnectionStateFailed {
		p.sendHello(false)
		p.armRetry()
	}
}

func (p *Peer) onSignal(m signalMsg) {
	// A message from the peer proves it is at the rendezvous, even if
	// its presence has not reached us yet.
	p.online = true
	switch m.Kind {
	case kindHello:
		p.onHello(m)
	case kindOffer:
		if p.controlling {
			p.log.Warn("peer sent an ICE offer but we are the controlling side; is it a different punchd version?")
			return
		}
		if a := p.cur; a != nil && a.gen == m.Gen {
			// A repeated offer: our answer may have been lost.
			p.resendLocal(kindAnswer)
			return
		}
		p.lastGen = m.Gen
		p.acceptOffer(m)
	case kindAnswer:
		a := p.cur
		if !p.controlling || a == nil || a.gen != m.Gen || a.started {
			return // stale, repeated, or not for us
		}
		if err := p.start(a, m.Ufrag, m.Pwd); err != nil {
			p.fail(a, "cannot start ICE checks: "+err.Error())
			return
		}
		p.setState(StateChecking, "checking candidate pairs")
	case kindCandidate:
		p.onRemoteCandidate(m.Gen, m.Candidate)
	case kindNAT: // recorded below
	}
	if m.NAT != "" {
		p.mu.Lock()
		p.status.RemoteNAT = natkind.NATType(m.NAT)
		p.mu.Unlock()
	}
}

func (p *Peer) onHello(m signalMsg) {
	if !p.controlling {
		return
	}
	a := p.cur
	switch {
	case a == nil, a.state == ice.ConnectionStateFailed:
		p.requestAttempt()
	case m.Seen == a.gen:
		if m.Failed {
			p.log.Info("peer says our ICE attempt failed on its side or its network changed; restarting", "gen", a.gen)
			p.requestAttempt()
		}
	case !a.started:
		// The peer has not got our offer (it came up after we sent it).
		p.resendOffer()
	default:
		// The peer lost the attempt we both started (it restarted).
		p.requestAttempt()
	}
}

func (p *Peer) onRemoteCandidate(gen uint64, raw string) {
	a := p.cur
	switch {
	case a != nil && a.gen == gen && a.started:
		p.addRemote(a, raw)
	case a != nil && a.gen == gen:
		// Before the answer (controlling): keep it for the checks.
		if len(a.pending) < maxRemoteCandidates {
			a.pending = append(a.pending, raw)
		}
	case !p.controlling:
		// Trickle may overtake an offer if the transport reorders; keep
		// a few for the offer that may follow. Candidates of old gens
		// land here too and are simply never used.
		if _, ok := p.early[gen]; !ok && len(p.early) >= maxEarlyGens {
			clear(p.early)
		}
		if len(p.early[gen]) < maxRemoteCandidates {
			p.early[gen] = append(p.early[gen], raw)
		}
	default:
		p.log.Debug("dropping ICE candidate of another attempt", "gen", gen)
	}
}

func (p *Peer) onLocalCandidate(a *attempt, raw string) {
	if p.cur != a || len(a.local) >= maxRemoteCandidates {
		return
	}
	a.local = append(a.local, raw)
	p.noteReflexive(raw, false)
	p.send(signalMsg{Kind: kindCandidate, Gen: a.gen, Candidate: raw})
}

// requestAttempt (controlling) starts a new attempt now, or soon if the
// last one began moments ago: a peer that keeps saying hello must not make
// us churn agents.
func (p *Peer) requestAttempt() {
	if wait := retryMin - time.Since(p.lastNew); wait > 0 {
		p.wantAttempt = true
		p.armTimer(wait)
		return
	}
	p.newAttempt()
}

// newAttempt (controlling) replaces the agent and offers the new one.
func (p *Peer) newAttempt() {
	p.wantAttempt = false
	if p.keepForRestart(); p.prev == nil {
		p.closeAttempt("new attempt")
	}
	p.lastNew = time.Now()
	a, err := p.newAgent(randomGen())
	if err != nil {
		p.log.Error("create ICE agent", "err", err)
		p.setState(StateFailed, "cannot create an ICE agent: "+err.Error())
		p.armRetry()
		return
	}
	p.cur = a
	p.countAttempt()
	if p.prev != nil {
		p.setState(StateConnected, "restarting ICE; the current path carries the tunnel meanwhile")
	} else {
		p.setState(StateChecking, "offered a new attempt; waiting for the peer's answer")
	}
	p.log.Debug("ICE offer", "gen", a.gen)
	p.send(signalMsg{Kind: kindOffer, Gen: a.gen, Ufrag: a.ufrag, Pwd: a.pwd})
	p.gather(a)
	p.armTimer(offerRepeat)
}

// acceptOffer (controlled) replaces the agent with one for the offer.
func (p *Peer) acceptOffer(m signalMsg) {
	p.stopTimer()
	p.wantRestart = false
	if p.keepForRestart(); p.prev == nil {
		p.closeAttempt("new offer")
	}
	a, err := p.newAgent(m.Gen)
	if err != nil {
		p.log.Error("create ICE agent", "err", err)
		p.setState(StateFailed, "cannot create an ICE agent: "+err.Error())
		p.sendHello(true)
		p.armRetry()
		return
	}
	p.cur = a
	p.countAttempt()
	p.log.Debug("ICE answer", "gen", a.gen)
	p.send(signalMsg{Kind: kindAnswer, Gen: a.gen, Ufrag: a.ufrag, Pwd: a.pwd})
	a.pending = append(a.pending, p.early[m.Gen]...)
	clear(p.early)
	if err := p.start(a, m.Ufrag, m.Pwd); err != nil {
		p.fail(a, "cannot start ICE checks: "+err.Error())
		return
	}
	if p.prev == nil {
		p.setState(StateChecking, "checking candidate pairs")
	}
	p.gather(a)
}

func (p *Peer) gather(a *attempt) {
	if err := a.agent.GatherCandidates(); err != nil {
		p.log.Warn("gather ICE candidates", "err", err)
	}
	if p.cfg.PortMapped == nil || p.cfg.RelayOnly {
		return
	}
	if raw := portMappedCandidate(p.cfg.PortMapped()); raw != "" && !slices.Contains(a.local, raw) {
		p.onLocalCandidate(a, raw)
	}
}

// resendOffer repeats the current offer and our candidates so far.
func (p *Peer) resendOffer() { p.resendLocal(kindOffer) }

func (p *Peer) resendLocal(kind string) {
	a := p.cur
	p.send(signalMsg{Kind: kind, Gen: a.gen, Ufrag: a.ufrag, Pwd: a.pwd})
	for _, c := range a.local {
		p.send(signalMsg{Kind: kindCandidate, Gen: a.gen, Candidate: c})
	}
}

func (p *Peer) sendHello(failed bool) {
	p.send(signalMsg{Kind: kindHello, Seen: p.lastGen, Failed: failed})
}

func (p *Peer) onState(a *attempt, s ice.ConnectionState) {
	if a == p.prev && a != p.cur {
		p.onPrevState(a, s)
		return
	}
	if p.cur != a || a.state == ice.ConnectionStateFailed {
		return
	}
	a.state = s
	p.log.Debug("ICE state", "state", s.String(), "gen", a.gen)
	switch s {
	case ice.ConnectionStateChecking:
		if p.prev == nil { // else the kept path still carries the tunnel
			p.setState(StateChecking, "checking candidate pairs")
		}
	case ice.ConnectionStateConnected:
		p.backoff = retryMin
		if !p.wantAttempt {
			p.stopTimer() // else a restart the peer asked for is pending
		}
		p.setState(StateConnected, "")
		p.log.Info("ICE connected", "gen", a.gen, "after", time.Since(a.begun).Round(time.Millisecond))
	case ice.ConnectionStateDisconnected:
		if p.online {
			// The selected pair has been silent for the disconnected
			// timeout. pion would keep it until the failed timeout and
			// never move to another pair by itself; a new attempt finds
			// what works now (the relay when the direct path broke, a
			// new mapping after a NAT forgot ours) in well under a
			// second, with the peer reachable through the rendezvous.
			// The controlled side asks for one: the path may be broken
			// in its direction only (the peer's NAT moved its mapping).
			p.log.Info("selected pair stopped answering; asking for a new ICE attempt", "gen", a.gen,
				"silent_for", disconnectedTimeout)
			p.setState(StateDisconnected, "the selected pair stopped answering; reconnecting")
			if p.cfg.OnStalled != nil {
				p.cfg.OnStalled()
			}
			if p.controlling {
				p.requestAttempt()
			} else {
				// Repeated until an offer comes (onTimer): this hello
				// may be lost with a rendezvous connection that the
				// same fault broke.
				p.sendHello(true)
				p.armRetry()
			}
			return
		}
		// Keep the path: consent checks continue and ICE may recover.
		p.setState(StateDisconnected, "the selected pair has not answered for "+disconnectedTimeout.String()+"; still probing")
	case ice.ConnectionStateFailed:
		p.fail(a, p.failReason(a))
	case ice.ConnectionStateClosed:
		// We close agents only after replacing them, so the current one
		// closing means something else ended it: start over.
		p.fail(a, "the ICE agent was closed")
	}
}

// failReason says as precisely as we can why an attempt failed.
func (p *Peer) failReason(a *attempt) string {
	switch {
	case !a.path.IsZero():
		return "the path stopped answering for " + (disconnectedTimeout + failedTimeout).String()
	case !a.started:
		return "the peer did not answer our offer"
	case len(a.local) == 0:
		return "we found no local candidates (no usable interface or STUN answer?)"
	case a.remotes == 0:
		return "the peer sent no candidates"
	default:
		return "no candidate pair answered within " + (disconnectedTimeout + failedTimeout).String() +
			": the NATs or firewalls between us need a relay"
	}
}

// fail ends attempt a and schedules the next one.
func (p *Peer) fail(a *attempt, reason string) {
	a.state = ice.ConnectionStateFailed
	p.log.Info("ICE attempt failed; retrying", "gen", a.gen, "reason", reason)
	if !p.online {
		p.closeAttempt("failed while the peer is offline")
		p.setState(StateWaiting, "waiting for peer: it is not connected to the rendezvous (last path: "+reason+")")
		return
	}
	// Keep the failed agent until the next attempt replaces it: pion has
	// already released its candidates, and closing here would race the
	// peer's agent for nothing. A path kept for a restart goes with it.
	p.closePrev("the new attempt failed")
	p.setPath(Path{})
	p.setState(StateFailed, reason)
	if !p.controlling {
		p.sendHello(true)
	}
	p.armRetry()
}

func (p *Peer) onPair(a *attempt, local, remote ice.Candidate) {
	if p.cur != a || local == nil || remote == nil || a.state == ice.ConnectionStateFailed {
		return
	}
	a.path = pathFor(a, local, remote)
	p.log.Info("ICE selected pair", "gen", a.gen,
		"local", a.path.Local.String(), "remote", a.path.Remote.String())
	if p.keepPrevOver(a.path) {
		p.onRelayedPath(p.prev.path)
		return
	}
	p.adopt(a)
}

// onTimer acts on the one timer: retry after a failure, repeat a hello,
// or replace an unanswered offer.
func (p *Peer) onTimer() {
	if !p.online {
		return
	}
	a := p.cur
	if p.controlling {
		switch {
		case p.wantAttempt, a == nil, a.state == ice.ConnectionStateFailed:
			p.newAttempt()
		case !a.started && time.Since(a.begun) >= answerTimeout:
			p.log.Info("no ICE answer from the peer; starting over", "gen", a.gen)
			p.newAttempt()
		case !a.started:
			p.log.Debug("no ICE answer yet; repeating the offer", "gen", a.gen)
			p.resendOffer()
			p.armTimer(offerRepeat)
		}
		return
	}
	if p.wantRestart || a == nil || a.state == ice.ConnectionStateFailed || a.state == ice.ConnectionStateDisconnected {
		p.sendHello(a != nil)
		p.armRetry()
	}
}

// armRetry arms the timer with the current backoff and doubles it.
func (p *Peer) armRetry() {
	d := p.backoff
	p.backoff = min(2*p.backoff, retryMax)
	p.armTimer(d)
}

func (p *Peer) armTimer(d time.Duration) {
	p.stopTimer()
	seq := p.timerSeq
	p.timer = time.AfterFunc(d, func() {
		p.post(func() {
			// A timer stopped too late still fires; the sequence
			// number tells.
			if seq == p.timerSeq {
				p.timer = nil
				p.onTimer()
			}
		})
	})
}

func (p *Peer) stopTimer() {
	p.timerSeq++
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
}
