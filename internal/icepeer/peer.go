package icepeer

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/pion/ice/v4"

	"github.com/punchd/punchd/internal/identity"
	"github.com/punchd/punchd/internal/natkind"
	"github.com/punchd/punchd/internal/turnclient"
)

// Candidate is one end of a candidate pair.
type Candidate struct {
	Type ice.CandidateType // its String() is host, srflx, prflx or relay
	Addr netip.AddrPort
	// RelayProtocol is how a local relay candidate reaches its TURN
	// server: "udp", "tcp" or "tls"; empty otherwise (and for remote
	// candidates, whose transport the peer does not signal).
	RelayProtocol string
	// RelayOver6 says a local relay candidate reaches its TURN server
	// over IPv6 (its related address, the TURN client's socket, is IPv6),
	// whatever the family of the relayed address itself.
	RelayOver6 bool
}

// Path is what ICE selected for a peer; the zero Path means none.
type Path struct {
	// Direct is the remote address when the local candidate is on the
	// shared socket (host/srflx/prflx): WireGuard sends there itself.
	Direct netip.AddrPort
	// Relay is the ICE conn when the local candidate is a TURN relay:
	// WireGuard sends each packet with Relay.Write.
	Relay net.Conn
	// Channel, for a relay reached over UDP, lets WireGuard write the
	// packets as TURN ChannelData itself once pion has bound the channel
	// (the relay shortcut, see turnclient); Relay is the fallback.
	Channel       *turnclient.Channel
	Local, Remote Candidate
}

// IsZero reports whether c is no candidate at all.
func (c Candidate) IsZero() bool { return c == Candidate{} }

// String is the candidate's type and address, as logs show it.
func (c Candidate) String() string { return c.Type.String() + " " + c.Addr.String() }

// IsZero reports whether there is no path.
func (p Path) IsZero() bool { return !p.Direct.IsValid() && p.Relay == nil }

// PathKind says whether a path is direct or goes through a relay.
type PathKind uint8

// The path kinds; their String() is what `punchd status` shows.
const (
	PathNone PathKind = iota
	PathDirect
	PathRelay
)

func (k PathKind) String() string {
	switch k {
	case PathDirect:
		return "direct"
	case PathRelay:
		return "relay"
	default:
		return "none"
	}
}

// Kind classifies p. Either end's relay makes the path relayed: when the
// peer holds the allocation we send straight to it, but a relay carries
// the traffic.
func (p Path) Kind() PathKind {
	switch {
	case p.Relay != nil, p.Local.Type == ice.CandidateTypeRelay, p.Remote.Type == ice.CandidateTypeRelay:
		return PathRelay
	case p.Direct.IsValid():
		return PathDirect
	default:
		return PathNone
	}
}

// RelayAddr is the relay carrying a relayed path: ours if we hold the
// allocation, else the peer's.
func (p Path) RelayAddr() netip.AddrPort {
	if p.Local.Type == ice.CandidateTypeRelay {
		return p.Local.Addr
	}
	return p.Remote.Addr
}

// State is where a Peer is in its life cycle.
type State uint8

// The states reported by Status.
const (
	StateNew          State = iota // Run not started or presence not known yet
	StateWaiting                   // the peer is not at the rendezvous
	StateChecking                  // an attempt is under way
	StateConnected                 // a pair is selected and answers
	StateDisconnected              // the selected pair stopped answering; ICE may recover
	StateFailed                    // the attempt failed; a new one is scheduled
)

// String is the state's name in `punchd status` (part of its JSON
// contract: scripts parse it).
func (s State) String() string {
	switch s {
	case StateNew:
		return "new"
	case StateWaiting:
		return "waiting"
	case StateChecking:
		return "checking"
	case StateConnected:
		return "connected"
	case StateDisconnected:
		return "disconnected"
	case StateFailed:
		return "failed"
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// PeerStatus is a snapshot for `punchd status`.
type PeerStatus struct {
	State       State
	Path        Path
	Since       time.Time // when State was entered
	ConnectedAt time.Time // when the current path was selected; zero without one
	Gen         uint64    // current attempt (a random name, not a count)
	Attempts    uint64    // ICE attempts made (offered or answered) since start
	Reason      string    // why not connected, when known
	// RemoteNAT is the NAT type the peer says it is behind ("" until it
	// said).
	RemoteNAT natkind.NATType
	// LocalReflexive and RemoteReflexive are the server-reflexive IPv4
	// addresses of the tunnel socket (ours, and the peer's as it
	// signaled), from the latest attempt that had them: where birthday
	// punching sprays and probes.
	LocalReflexive, RemoteReflexive netip.AddrPort
	// RemoteMapped is the peer's port-mapped candidate (its gateway's
	// UPnP/NAT-PMP/PCP mapping), when it offered one.
	RemoteMapped netip.AddrPort
}

// ICEServer is a STUN or TURN server with its credentials (TURN only).
type ICEServer struct {
	URL        string // stun:host:port, turn:host:port?transport=tcp, turns:host:port
	Username   string
	Credential string
}

// PeerConfig wires a Peer to the rest of the daemon.
type PeerConfig struct {
	Local, Remote identity.PublicKey
	Mux           ice.UniversalUDPMux
	// ICEServers returns the current STUN/TURN servers (from the
	// rendezvous and --turn); read at each attempt. May be nil.
	ICEServers func() []ICEServer
	// Signal sends a payload to the remote peer through the rendezvous.
	// Called from one goroutine, in order.
	Signal func(ctx context.Context, payload []byte) error
	// OnPath is called from the Peer's loop, in order, whenever the path
	// changes; a zero Path means there is none. It must not block long.
	OnPath func(Path)
	// OnStalled is called from the Peer's loop when the selected pair
	// stops answering. The daemon rechecks its rendezvous connection then:
	// the new attempt needs it, and what broke the path (a NAT that
	// forgot its mappings) has likely broken it too. May be nil; must
	// not block.
	OnStalled func()
	// OnRelayPacket gets what arrives on the ICE conn: the tunnel's
	// packets when the path is a relay. May be nil. The slice is reused
	// after the call returns.
	OnRelayPacket func([]byte)
	// PortMapped returns the tunnel port's mapping on the gateway and the
	// local address it forwards to (zero when there is none); each
	// attempt offers the mapping as a server-reflexive candidate. May be
	// nil.
	PortMapped func() (external, local netip.AddrPort)
	// ExcludeInterfaces never yield host candidates (our own TUN).
	ExcludeInterfaces []string
	// RelayOnly gathers relay candidates only (`punchd up --force-relay`):
	// for testing relays, or to keep the peers' addresses from each other.
	RelayOnly bool
	// AllowLoopback admits loopback addresses as local and remote
	// candidates: tests on 127.0.0.1 only.
	AllowLoopback bool
	Logger        *slog.Logger
}

// Peer runs ICE toward one remote peer: one agent per attempt, trickle
// signaling through the rendezvous, and a new attempt whenever one fails.
// All state is owned by the loop in Run; pion's callbacks, HandleSignal and
// HandlePresence only post events to it.
type Peer struct {
	cfg         PeerConfig
	log         *slog.Logger
	controlling bool
	events      chan func()
	out         chan []byte
	quit        chan struct{} // closed when Run's loop has stopped

	mu     sync.Mutex
	status PeerStatus

	// Owned by the loop.
	ctx         context.Context
	cur         *attempt
	online      bool
	backoff     time.Duration
	timer       *time.Timer
	timerSeq    uint64
	lastNew     time.Time           // controlling: when the last attempt began
	wantAttempt bool                // controlling: a new attempt is due when the timer fires
	localNAT    natkind.NATType     // our NAT's type, "" until known
	lastGen     uint64              // controlled: newest gen offered to us
	early       map[uint64][]string // controlled: candidates that overtook their offer
	prev        *attempt            // carries the tunnel while a restart's attempt checks (restart.go)
	wantRestart bool                // controlled: asked for a restart, no offer yet
	relayRetry  time.Duration       // controlling: next restart while relayed
	relayTimer  *time.Timer
	relaySeq    uint64
	wg          sync.WaitGroup // agent closers and conn readers
}

// Queue sizes: a burst of trickled candidates and signals must fit; if
// the loop is stuck, dropping beats blocking the rendezvous client.
const (
	eventQueue  = 256
	signalQueue = 128
	sendTimeout = 5 * time.Second
)

// NewPeer returns a Peer; call Run once.
func NewPeer(cfg PeerConfig) *Peer {
	p := &Peer{
		cfg:         cfg,
		log:         orDefault(cfg.Logger),
		controlling: identity.ControlsICE(cfg.Local, cfg.Remote),
		events:      make(chan func(), eventQueue),
		out:         make(chan []byte, signalQueue),
		quit:        make(chan struct{}),
		backoff:     retryMin,
		relayRetry:  relayRetryMin,
		early:       make(map[uint64][]string),
	}
	p.status = PeerStatus{State: StateNew, Since: time.Now(), Reason: "waiting for the rendezvous to say whether the peer is online"}
	return p
}

// Run owns every agent and goroutine of the Peer. It returns when ctx is
// done and all of them have stopped.
func (p *Peer) Run(ctx context.Context) {
	p.ctx = ctx
	sendCtx, stopSend := context.WithCancel(ctx)
	var sender sync.WaitGroup
	sender.Add(1)
	go func() {
		defer sender.Done()
		p.sendLoop(sendCtx)
	}()
	defer func() {
		close(p.quit)
		p.stopTimer()
		p.stopRelayTimer()
		p.closeAttempt("shutting down")
		p.wg.Wait()
		stopSend()
		sender.Wait()
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case fn := <-p.events:
			fn()
		}
	}
}

// Controlling reports whether this side controls ICE toward the peer
// (identity.ControlsICE); the daemon makes the other side's Bind passive by it.
func (p *Peer) Controlling() bool { return p.controlling }

// HandleSignal takes a payload from the remote peer (rendezvous OnMessage).
func (p *Peer) HandleSignal(payload []byte) {
	m, err := decodeSignal(payload)
	if err != nil {
		p.log.Warn("ignoring ICE signal", "err", err)
		return
	}
	p.tryPost("signal "+m.Kind, func() { p.onSignal(m) })
}

// SetLocalNAT tells the Peer the type of the NAT in front of this host;
// the peer learns it now and whenever it comes back online.
func (p *Peer) SetLocalNAT(t natkind.NATType) {
	p.tryPost("local NAT", func() {
		p.localNAT = t
		if p.online {
			p.send(signalMsg{Kind: kindNAT})
		}
	})
}

// HandlePresence says whether the remote peer is at the rendezvous.
func (p *Peer) HandlePresence(online bool) {
	p.tryPost("presence", func() { p.onPresence(online) })
}

// Status returns a snapshot; safe from any goroutine.
func (p *Peer) Status() PeerStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

// tryPost queues fn for the loop without blocking: callers are the
// rendezvous client's callbacks, which must not stall on one peer.
func (p *Peer) tryPost(what string, fn func()) {
	select {
	case p.events <- fn:
	default:
		p.log.Warn("ICE event queue full; event dropped", "event", what)
	}
}

// post queues fn for the loop, waiting for room: pion's callbacks use it,
// and a lost state change would wedge the peer. It gives up once Run has
// stopped, so pion's Close (which waits for its callbacks) cannot hang.
func (p *Peer) post(fn func()) {
	select {
	case p.events <- fn:
	case <-p.quit:
	}
}

// sendLoop sends signals one at a time, in order.
func (p *Peer) sendLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case b := <-p.out:
			if p.cfg.Signal == nil {
				continue
			}
			sctx, cancel := context.WithTimeout(ctx, sendTimeout)
			err := p.cfg.Signal(sctx, b)
			cancel()
			if err != nil {
				p.log.Debug("ICE signal not sent", "err", err)
			}
		}
	}
}

func (p *Peer) send(m signalMsg) {
	if m.NAT == "" && m.Kind != kindCandidate {
		m.NAT = string(p.localNAT)
	}
	select {
	case p.out <- encodeSignal(m):
	default:
		p.log.Warn("ICE signal queue full; message dropped", "kind", m.Kind)
	}
}

// countAttempt records that a new attempt (agent) replaced the last.
func (p *Peer) countAttempt() {
	p.mu.Lock()
	p.status.Attempts++
	p.mu.Unlock()
}

func (p *Peer) setState(state State, reason string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.status.State != state {
		p.status.Since = time.Now()
	}
	p.status.State, p.status.Reason = state, reason
	if p.cur != nil {
		p.status.Gen = p.cur.gen
	}
}

// setPath records and announces a path change; unchanged paths are not
// announced again.
func (p *Peer) setPath(path Path) {
	p.mu.Lock()
	old := p.status.Path
	if old == path {
		p.mu.Unlock()
		return
	}
	p.status.Path = path
	switch {
	case path.IsZero():
		p.status.ConnectedAt = time.Time{}
	case old.IsZero():
		p.status.ConnectedAt = time.Now()
	}
	p.mu.Unlock()
	if p.cfg.OnPath != nil {
		p.cfg.OnPath(path)
	}
}
