package hardnat

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/punchd/punchd/internal/birthday"
	"github.com/punchd/punchd/internal/icepeer"
	"github.com/punchd/punchd/internal/identity"
	"github.com/punchd/punchd/internal/natkind"
	"github.com/punchd/punchd/internal/natprobe"
	"github.com/punchd/punchd/internal/tunnel"
)

// relayedFor is how long a relay must have carried the tunnel first: ICE
// gets its chance, and a flapping path does not start a spray.
const relayedFor = 2 * time.Second

// checkEvery is how often the hard side looks whether to start.
const checkEvery = time.Second

// learnPorts is how many STUN bindings teach a sequential NAT's pattern.
const learnPorts = 3

// Role says which side of an attempt this host is for a pair of NAT
// types: "hard", "easy", or "" for none.
func Role(local, remote natkind.NATType) string {
	switch {
	case !natkind.Birthday(local, remote):
		return ""
	case local == natkind.TypeSymmetric:
		return "hard"
	}
	return "easy"
}

// Bind is what a Pair needs of the tunnel socket (tunnel.Bind).
type Bind interface {
	// STUNConn is the tunnel socket; the spray sockets bind its address.
	STUNConn() net.PacketConn
	// WriteRaw sends the easy side's probes from the tunnel socket.
	WriteRaw(b []byte, to netip.AddrPort) error
	// DeliverRelay hands a packet from the hard side's link to WireGuard.
	DeliverRelay(peer identity.PublicKey, pkt []byte)
	// SetPath moves WireGuard to a found path.
	SetPath(peer identity.PublicKey, p tunnel.Path)
}

// Config is what one peer's Pair is given by the daemon. Functions are
// called from the Pair's goroutines and must not block for long.
type Config struct {
	Self, Peer identity.PublicKey
	Log        *slog.Logger
	Limits     birthday.Config
	Off        bool               // birthday punching disabled (--no-birthday)
	Cooldown   *birthday.Cooldown // shared by every pair of the daemon
	Bind       Bind
	// NAT is this host's latest NAT report, nil before the first.
	NAT func() *natprobe.Report
	// ICE is the peer's ICE status (its NAT type, path, reflexive addresses).
	ICE func() icepeer.PeerStatus
	// Signal sends a sealed birthday message to the peer.
	Signal func(ctx context.Context, payload []byte) error
	// RestorePath gives the tunnel back to ICE's path after a link died.
	RestorePath func()
	// STUNServer is the rendezvous' STUN server, resolved, for learning a
	// sequential NAT's pattern; false without one.
	STUNServer func() (netip.AddrPort, bool)
}

// Pair is one peer's birthday state.
type Pair struct {
	c    Config
	peer identity.PublicKey
	log  *slog.Logger
	cfg  birthday.Config
	cool *birthday.Cooldown

	mu       sync.Mutex
	ctx      context.Context // run's; nil before run and after it ended
	busy     bool
	easy     *birthday.Easy // the easy side's running attempt
	link     *birthday.Link // the found path, while it lives
	via      string         // "birthday" or "prediction" while link lives
	probes   int            // of the last hit
	lastMiss string
	wg       sync.WaitGroup

	// For metrics: attempts run (either side), hits, probe packets sent.
	attempts, hits, probesSent atomic.Uint64
}

// Counts are the attempts, hits and probes since start.
func (h *Pair) Counts() (attempts, hits, probes uint64) {
	return h.attempts.Load(), h.hits.Load(), h.probesSent.Load()
}

// New returns the birthday state toward c.Peer; Run drives it.
func New(c Config) *Pair {
	log := c.Log
	if log == nil {
		log = slog.Default()
	}
	return &Pair{c: c, peer: c.Peer, log: log.With("component", "birthday"), cfg: c.Limits, cool: c.Cooldown}
}

func (h *Pair) pairKey() string { return h.c.Self.String() + "|" + h.peer.String() }

// Run starts attempts on the hard side until ctx is done, then closes any
// link; it waits for the attempts it started.
func (h *Pair) Run(ctx context.Context) {
	h.mu.Lock()
	h.ctx = ctx
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		h.ctx = nil
		h.mu.Unlock()
		h.wg.Wait()
		h.mu.Lock()
		if h.link != nil {
			h.link.Close()
			h.link = nil
		}
		h.mu.Unlock()
	}()
	t := time.NewTicker(checkEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if dest, ok := h.due(); ok {
			h.wg.Go(func() { h.attemptHard(ctx, dest) })
		}
	}
}

// due reports whether the hard side should start now, and where to spray.
func (h *Pair) due() (netip.AddrPort, bool) {
	if h.c.Off {
		return netip.AddrPort{}, false
	}
	rep := h.c.NAT()
	is := h.c.ICE()
	if rep == nil || Role(rep.NATType, is.RemoteNAT) != "hard" {
		return netip.AddrPort{}, false
	}
	h.mu.Lock()
	idle := !h.busy && h.link == nil
	h.mu.Unlock()
	if !idle || is.State != icepeer.StateConnected || is.Path.Kind() != icepeer.PathRelay ||
		is.ConnectedAt.IsZero() || time.Since(is.ConnectedAt) < relayedFor || !is.RemoteReflexive.IsValid() {
		return netip.AddrPort{}, false
	}
	if ok, _ := h.cool.Allow(h.pairKey()); !ok {
		return netip.AddrPort{}, false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.busy {
		return netip.AddrPort{}, false
	}
	h.busy = true
	return is.RemoteReflexive, true
}

func (h *Pair) done() {
	h.mu.Lock()
	h.busy = false
	h.easy = nil
	h.mu.Unlock()
}

// attemptHard: open the sockets, learn the pattern of a sequential NAT,
// spray at dest (the easy side's public address), tell the easy side to
// probe, and take the hit.
func (h *Pair) attemptHard(ctx context.Context, dest netip.AddrPort) {
	defer h.done()
	key, err := birthday.NewKey()
	if err != nil {
		h.log.Warn("birthday attempt not started", "err", err)
		return
	}
	sess, err := birthday.NewSession()
	if err != nil {
		h.log.Warn("birthday attempt not started", "err", err)
		return
	}
	local := h.localAddr()
	hard, err := birthday.ListenHard(h.cfg, key, sess, local)
	if err != nil {
		h.log.Warn("birthday attempt not started", "err", err)
		h.cool.Miss(h.pairKey())
		return
	}
	defer hard.Close()
	rep := h.c.NAT()
	public, _ := netip.ParseAddr(rep.ExternalIPv4)
	if is := h.c.ICE(); is.LocalReflexive.IsValid() {
		public = is.LocalReflexive.Addr()
	}
	if !public.IsValid() {
		h.log.Info("birthday attempt not started: own public address unknown")
		return
	}
	var predicted []uint16
	via := "birthday"
	if rep.Sequential() {
		if stunAt, ok := h.c.STUNServer(); ok {
			ports, err := hard.Learn(ctx, stunAt, learnPorts)
			if err != nil {
				h.log.Info("no port prediction", "err", err)
			} else if pat := birthday.LearnPattern(ports); pat.Sequential {
				predicted = pat.Predict(ports[len(ports)-1], hard.Len(), 16)
				via = "prediction"
				h.log.Info("predicting ports", "ports", ports, "pattern", pat.String(), "stride", pat.Stride)
			}
		}
	}
	h.log.Info("birthday attempt", "spray_to", dest, "limits", h.cfg.String(), "predicted", len(predicted))
	sprayed := func() {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := h.c.Signal(sctx, birthday.GoSignal(sess, key, public, predicted)); err != nil {
			h.log.Info("birthday go not sent", "err", err)
		}
	}
	h.attempts.Add(1)
	hit, err := hard.Run(ctx, dest, sprayed)
	h.probesSent.Add(uint64(hard.Stats.Sent.Load()))
	if junk := hard.Stats.Junk.Load(); junk > 0 {
		// Counted per attempt, logged once per attempt.
		h.log.Info("birthday sockets dropped packets that were not this attempt's", "count", junk)
	}
	if err != nil {
		h.miss(err, hard.Stats.Sent.Load())
		return
	}
	link := birthday.NewHardLink(key, sess, hit, func(pkt []byte) { h.c.Bind.DeliverRelay(h.peer, pkt) })
	h.found(ctx, link, via, hit.Probes, tunnel.Path{Relay: link}, hit)
}

// miss records a miss and starts the cooldown.
func (h *Pair) miss(err error, sent int64) {
	h.cool.Miss(h.pairKey())
	h.mu.Lock()
	h.lastMiss = fmt.Sprintf("birthday punching missed (%d packets sent): %v", sent, err)
	h.mu.Unlock()
	h.log.Info("birthday attempt missed", "sent", sent, "err", err)
}

// found moves WireGuard to the link's path and watches it.
func (h *Pair) found(ctx context.Context, link *birthday.Link, via string, probes int, path tunnel.Path, hit *birthday.Hit) {
	h.cool.Hit(h.pairKey())
	h.hits.Add(1)
	h.mu.Lock()
	h.link, h.via, h.probes, h.lastMiss = link, via, probes, ""
	h.mu.Unlock()
	h.c.Bind.SetPath(h.peer, path)
	h.log.Info("direct path by "+via, "remote", link.Remote(), "probes", probes, "after", hit.Elapsed.Round(time.Millisecond))
	h.wg.Go(func() {
		select {
		case <-link.Dead():
		case <-ctx.Done():
			return // run closes the link
		}
		h.mu.Lock()
		if h.link != link {
			h.mu.Unlock()
			return
		}
		h.link = nil
		h.mu.Unlock()
		link.Close()
		h.cool.Miss(h.pairKey())
		h.log.Info("direct path by " + via + " went quiet; back to ICE's path")
		h.c.RestorePath()
	})
}

// HandleSignal takes a birthday message from the peer.
func (h *Pair) HandleSignal(b []byte) {
	h.mu.Lock()
	ctx := h.ctx
	h.mu.Unlock()
	if ctx == nil {
		return
	}
	m, err := birthday.DecodeSignal(b)
	if err != nil {
		h.log.Warn("ignoring birthday signal", "err", err)
		return
	}
	switch m.Phase {
	case birthday.PhaseResult:
		h.log.Info("birthday result from peer", "hit", m.Hit, "probes", m.Probes)
	case birthday.PhaseGo:
		h.startEasy(ctx, m)
	}
}

// startEasy runs the easy side of an attempt the peer started: only when
// the NAT types say so, none is running, and the pair is not cooling down
// (the peer's word does not make us send more than our own caps allow).
func (h *Pair) startEasy(ctx context.Context, m birthday.Decoded) {
	rep := h.c.NAT()
	if h.c.Off || rep == nil || Role(rep.NATType, h.c.ICE().RemoteNAT) != "easy" {
		h.log.Info("birthday go ignored: not the easy side of this pair (or birthday punching is off)")
		return
	}
	if ok, left := h.cool.Allow(h.pairKey()); !ok {
		h.log.Info("birthday go ignored: cooling down", "left", left.Round(time.Second))
		return
	}
	send := func(b []byte, to netip.AddrPort) error { return h.c.Bind.WriteRaw(b, to) }
	e := birthday.NewEasy(h.cfg, m.Key, m.Session, send)
	h.mu.Lock()
	if h.busy || h.ctx == nil {
		h.mu.Unlock()
		return
	}
	h.busy, h.easy = true, e
	// Added under mu while ctx is set: run's Wait comes after it clears ctx.
	h.wg.Add(1)
	h.mu.Unlock()
	go func() {
		defer h.wg.Done()
		defer h.done()
		h.attempts.Add(1)
		hit, err := e.Run(ctx, m.IP, m.Predicted)
		h.probesSent.Add(uint64(e.Stats.Sent.Load()))
		if junk := e.Stats.Junk.Load(); junk > 0 {
			h.log.Info("birthday attempt dropped packets that were not its own", "count", junk)
		}
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err != nil {
			h.miss(err, e.Stats.Sent.Load())
			_ = h.c.Signal(sctx, birthday.ResultSignal(m.Session, false, int(e.Stats.Sent.Load())))
			return
		}
		_ = h.c.Signal(sctx, birthday.ResultSignal(m.Session, true, hit.Probes))
		via := "birthday"
		if len(m.Predicted) > 0 && hit.Probes <= len(m.Predicted) {
			via = "prediction"
		}
		link := birthday.NewEasyLink(m.Key, m.Session, hit.Remote, send)
		h.found(ctx, link, via, hit.Probes, tunnel.Path{Direct: hit.Remote}, hit)
	}()
}

// Deliver takes a birthday packet from the tunnel socket.
func (h *Pair) Deliver(pkt []byte, from netip.AddrPort) {
	h.mu.Lock()
	e, l := h.easy, h.link
	h.mu.Unlock()
	if e != nil {
		e.Deliver(pkt, from)
	}
	if l != nil {
		l.Deliver(pkt, from)
	}
}

// HoldsPath reports whether a found path carries the tunnel; ICE's path
// changes are then recorded but not applied, unless ICE found a direct
// path of its own, which ends the link.
func (h *Pair) HoldsPath(p icepeer.Path) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.link == nil {
		return false
	}
	if p.Kind() == icepeer.PathDirect {
		h.link.Close()
		h.link = nil
		return false
	}
	return true
}

// Status says how the found path was made, in how many probes and to
// where, or why the last attempt missed.
func (h *Pair) Status() (via string, probes int, remote netip.AddrPort, miss string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.link != nil {
		return h.via, h.probes, h.link.Remote(), ""
	}
	return "", 0, netip.AddrPort{}, h.lastMiss
}

// localAddr is where the spray sockets bind: the tunnel socket's address.
func (h *Pair) localAddr() netip.Addr {
	if a, ok := h.c.Bind.STUNConn().LocalAddr().(*net.UDPAddr); ok {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && !ip.Unmap().IsUnspecified() {
			return ip.Unmap()
		}
	}
	return netip.IPv4Unspecified()
}
