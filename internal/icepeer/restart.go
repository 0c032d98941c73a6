package icepeer

import (
	"time"

	"github.com/pion/ice/v4"
)

// Restarts that follow a moving host. Re-probing the pairs of a running
// attempt cannot find a path whose ends moved: after our NAT got a new
// public address, or we moved to another network, every candidate of the
// attempt is stale. A new attempt gathers fresh ones. Two things ask for
// one: the host's own network changing (Restart, from the daemon's
// netlink watcher), and, on the controlling side, a relayed path, which
// is retried on a backoff because what made it relayed (the peer's NAT
// moved its mapping, a path broken for a while) may have gone.
//
// A restart is make-before-break: the attempt that carries the tunnel
// keeps carrying it (its path stays on the Bind, its relay allocation
// open) until the new attempt selects a pair or fails.

const (
	// relayRetryMin..relayRetryMax bound the backoff of restarts while
	// relayed: the first soon after the relay took over, then doubling,
	// so a pair that can never be direct (symmetric x symmetric) costs
	// an attempt every half minute.
	relayRetryMin = 2 * time.Second
	relayRetryMax = 30 * time.Second
)

// Restart asks for a new ICE attempt with fresh candidates because the
// host's network changed (addresses, routes). The controlling side starts
// one; the controlled side asks the peer for one. Safe from any goroutine.
func (p *Peer) Restart(reason string) {
	p.tryPost("restart", func() { p.restart(reason, true) })
}

// restart runs on the loop; network says the host moved (which also
// resets the relay backoff: the new network may well allow direct).
func (p *Peer) restart(reason string, network bool) {
	if network {
		p.relayRetry = relayRetryMin
	}
	if !p.online {
		return // the next attempt gathers fresh candidates anyway
	}
	a := p.cur
	p.log.Info("restarting ICE with fresh candidates", "reason", reason)
	if p.controlling {
		p.requestAttempt()
		return
	}
	if a != nil && a.state != ice.ConnectionStateFailed {
		// The peer starts attempts; a hello that says our current one
		// failed makes it offer a new one. Repeated on the retry timer
		// until the offer comes: the rendezvous connection this one
		// went out on may have died with the old network.
		p.wantRestart = true
		p.backoff = retryMin
		p.sendHello(true)
		p.armRetry()
	}
}

// relayed reports whether path goes through a TURN relay on either side.
func relayed(path Path) bool {
	return path.Relay != nil || path.Remote.Type == ice.CandidateTypeRelay
}

// onRelayedPath (controlling) schedules the next restart while the path
// is relayed, and stops the schedule once it is direct.
func (p *Peer) onRelayedPath(path Path) {
	if !p.controlling || p.cfg.RelayOnly {
		return
	}
	if !relayed(path) {
		p.relayRetry = relayRetryMin
		p.stopRelayTimer()
		return
	}
	if p.relayTimer != nil {
		return // one is due already
	}
	d := p.relayRetry
	p.relayRetry = min(2*p.relayRetry, relayRetryMax)
	p.relaySeq++
	seq := p.relaySeq
	p.relayTimer = time.AfterFunc(d, func() {
		p.post(func() {
			if seq != p.relaySeq {
				return
			}
			p.relayTimer = nil
			if a := p.cur; a != nil && a.state == ice.ConnectionStateConnected && relayed(a.path) {
				p.restart("relayed for "+d.String()+": looking for a direct path with fresh candidates", false)
			}
		})
	})
}

func (p *Peer) stopRelayTimer() {
	p.relaySeq++
	if p.relayTimer != nil {
		p.relayTimer.Stop()
		p.relayTimer = nil
	}
}

// keepForRestart moves the current attempt aside while a new one is made,
// when it carries the tunnel; closeAttempt then leaves its path alone.
// When an earlier restart's attempt was never adopted, the one carrying the
// tunnel is still prev: it stays, and the unadopted one goes.
func (p *Peer) keepForRestart() {
	a := p.cur
	if p.prev != nil {
		if a != nil {
			p.cur = nil
			p.closeAgent(a, "replaced by a newer restart")
		}
		return
	}
	if a == nil || a.path.IsZero() || a.state != ice.ConnectionStateConnected {
		return
	}
	p.prev, p.cur = a, nil
}

// pathRank orders paths for make-before-break: direct, then relays
// reached over UDP, then TURN over TCP/TLS (as internal/pathpref does for pairs).
func pathRank(path Path) int {
	switch {
	case path.IsZero():
		return 0
	case !relayed(path):
		return 3
	case path.Local.RelayProtocol == "tcp" || path.Local.RelayProtocol == "tls":
		return 1
	default:
		return 2
	}
}

// keepPrevOver reports whether the tunnel stays on the kept attempt's path
// rather than move to a restart's first pair: while that pair is worse
// and the kept path still answers. ICE's first pick is often a TCP relay
// that the preference then leaves for a better pair (internal/pathpref); moving
// there and back would put the tunnel on TURN/TCP for a moment.
func (p *Peer) keepPrevOver(path Path) bool {
	prev := p.prev
	return prev != nil && prev.state == ice.ConnectionStateConnected && pathRank(path) < pathRank(prev.path)
}

// adopt moves the tunnel to the current attempt's path and closes the
// kept one.
func (p *Peer) adopt(a *attempt) {
	p.setPath(a.path)
	if p.prev != nil {
		// A restart's path is a new path, though the tunnel never went
		// without one.
		p.mu.Lock()
		p.status.ConnectedAt = time.Now()
		p.mu.Unlock()
	}
	p.closePrev("the new attempt selected a pair")
	p.onRelayedPath(a.path)
}

// onPrevState follows the kept attempt: once its path stops answering the
// restart's path, whatever it is, carries the tunnel (or none does until
// it has one).
func (p *Peer) onPrevState(a *attempt, s ice.ConnectionState) {
	a.state = s
	if s == ice.ConnectionStateConnected || s == ice.ConnectionStateChecking {
		return
	}
	if c := p.cur; c != nil && !c.path.IsZero() {
		p.log.Info("the path kept for the restart stopped answering; moving to the restart's", "gen", c.gen)
		p.adopt(c)
		return
	}
	p.closePrev("it stopped answering during a restart")
	p.setPath(Path{})
}

// closePrev closes the attempt kept by keepForRestart, if any. Its path
// has been replaced on the Bind already, or is dropped by the caller.
func (p *Peer) closePrev(why string) {
	a := p.prev
	if a == nil {
		return
	}
	p.prev = nil
	p.closeAgent(a, why)
}
