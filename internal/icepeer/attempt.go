package icepeer

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/stun/v4"
	"github.com/punchd/punchd/internal/pathpref"
	"github.com/punchd/punchd/internal/pionlog"
	"github.com/punchd/punchd/internal/turnclient"
)

// Timers. pion's defaults give up after 25-30 s and accept relay pairs
// after 2 s; these connect in tens of milliseconds and notice a dead path
// in seconds. The keepalive is a quarter of the disconnected timeout (the
// known pitfall: at more than a third, one lost keepalive flaps the state).
const (
	checkInterval       = 50 * time.Millisecond
	keepaliveInterval   = pathpref.Keepalive
	disconnectedTimeout = 2 * time.Second
	failedTimeout       = 5 * time.Second
	// relayAcceptanceWait lets a direct pair win against a relay pair
	// that happens to answer first.
	relayAcceptanceWait = 500 * time.Millisecond
	// prflxAcceptanceWait holds back nominating a pair with a
	// peer-reflexive end for a moment. The peer's checks from its TURN
	// relay often arrive before the relay candidate is trickled, and
	// until then the relay looks peer-reflexive, with a priority above
	// every direct pair; a short wait lets the trickle say what it is
	// (see internal/pathpref). Genuine peer-reflexive pairs (a symmetric NAT's
	// mapping) pay this once.
	prflxAcceptanceWait = 100 * time.Millisecond
	// stunGatherTimeout bounds srflx gathering; the rendezvous's STUN is
	// one round trip away.
	stunGatherTimeout = 3 * time.Second

	// maxRemoteCandidates bounds what one attempt buffers or accepts.
	maxRemoteCandidates = 64
)

// attempt is one agent's life: one gen, one pair of credentials.
type attempt struct {
	gen        uint64
	agent      *ice.Agent
	ufrag, pwd string
	begun      time.Time
	started    bool                // remote credentials given, checks running
	pending    []string            // remote candidates before the checks start
	remotes    int                 // remote candidates taken
	local      []string            // ours, to repeat with a repeated offer/answer
	conn       *ice.Conn           // after start
	cancel     context.CancelFunc  // stops the conn reader
	state      ice.ConnectionState // last reported
	path       Path
	pref       *pathpref.Preference // controlling side only
	net        *turnclient.Net      // the agent's own sockets (TURN clients)
}

// newAttempt creates an agent for gen and hooks its callbacks to the loop.
// Gathering is started by the caller once the attempt is current.
func (p *Peer) newAgent(gen uint64) (*attempt, error) {
	if p.cfg.Mux == nil {
		// Without a mux pion would open sockets of its own: candidates
		// that are not WireGuard's socket, and a path the tunnel cannot use.
		return nil, errors.New("no UDP mux configured (icemux.NewUDPMux over the tunnel socket)")
	}
	ufrag, pwd := randomCredentials()
	urls := p.iceURLs()
	types := []ice.CandidateType{ice.CandidateTypeHost, ice.CandidateTypeServerReflexive}
	if slices.ContainsFunc(urls, isTURN) {
		types = append(types, ice.CandidateTypeRelay)
	}
	if p.cfg.RelayOnly {
		types = []ice.CandidateType{ice.CandidateTypeRelay}
	}
	inet, err := turnclient.NewNet(p.cfg.OnRelayPacket, p.log)
	if err != nil {
		return nil, err
	}
	opts := []ice.AgentOption{
		ice.WithNet(inet),
		ice.WithUDPMux(p.cfg.Mux),
		ice.WithUDPMuxSrflx(srflxMuxOf(p.cfg.Mux)),
		ice.WithUrls(urls),
		// UDP6: host candidates on global IPv6 (icemux.NewDualUDPMux) pair
		// with the peer's, direct where IPv4 is behind hopeless NATs.
		ice.WithNetworkTypes([]ice.NetworkType{ice.NetworkTypeUDP4, ice.NetworkTypeUDP6}),
		ice.WithCandidateTypes(types),
		// TURN over TCP and TLS reach a relay when UDP is blocked; the
		// relayed candidate itself is UDP either way.
		// UDP over IPv6 too, to the rendezvous' IPv6 URLs: a host whose
		// IPv4 UDP is blocked (or that has IPv6 only) still reaches the
		// relay. The relayed address is IPv4 either way (see
		// turnclient.ipv4Relay), so it pairs with every peer's IPv4
		// candidates. Not TCP over IPv6: one more allocation per agent
		// for networks that block UDP on both families and pass TCP on
		// IPv6, which are rare.
		ice.WithTURNTransportProtocols([]ice.NetworkType{ice.NetworkTypeUDP4, ice.NetworkTypeTCP4, ice.NetworkTypeUDP6}),
		ice.WithMulticastDNSMode(ice.MulticastDNSModeDisabled),
		ice.WithCheckInterval(checkInterval),
		ice.WithKeepaliveInterval(keepaliveInterval),
		ice.WithDisconnectedTimeout(disconnectedTimeout),
		ice.WithFailedTimeout(failedTimeout),
		ice.WithHostAcceptanceMinWait(0),
		ice.WithSrflxAcceptanceMinWait(0),
		ice.WithPrflxAcceptanceMinWait(prflxAcceptanceWait),
		ice.WithRelayAcceptanceMinWait(relayAcceptanceWait),
		// Renomination lets the controlling side move a relayed path to
		// a direct pair once one answers (see internal/pathpref); both ends need
		// it, the controlled one to follow.
		ice.WithRenomination(ice.DefaultNominationValueGenerator()),
		ice.WithSTUNGatherTimeout(stunGatherTimeout),
		ice.WithLocalCredentials(ufrag, pwd),
		ice.WithInterfaceFilter(p.interfaceAllowed),
		ice.WithIPFilter(p.ipAllowed),
		ice.WithRemoteIPFilter(p.ipAllowed),
		ice.WithLoggerFactory(pionlog.New(p.log.With("gen", gen))),
	}
	if p.cfg.AllowLoopback {
		opts = append(opts, ice.WithIncludeLoopback())
	}
	var pref *pathpref.Preference
	if p.controlling {
		pref = pathpref.New(p.log.With("gen", gen))
		opts = append(opts, ice.WithBindingRequestHandler(pref.OnBindingRequest))
	}
	agent, err := ice.NewAgentWithOptions(opts...)
	if err != nil {
		return nil, err
	}
	if pref != nil {
		pref.SetAgent(agent)
	}
	a := &attempt{gen: gen, agent: agent, ufrag: ufrag, pwd: pwd, begun: time.Now(), state: ice.ConnectionStateNew, pref: pref, net: inet}
	// The callbacks run on pion's notifier goroutines; they only post.
	err = agent.OnCandidate(func(c ice.Candidate) {
		if c == nil {
			return // gathering done; pion has no use for end-of-candidates
		}
		if pref != nil {
			pref.AddLocal(c)
		}
		raw := c.Marshal()
		p.post(func() { p.onLocalCandidate(a, raw) })
	})
	if err == nil {
		err = agent.OnConnectionStateChange(func(s ice.ConnectionState) {
			p.post(func() { p.onState(a, s) })
		})
	}
	if err == nil {
		err = agent.OnSelectedCandidatePairChange(func(local, remote ice.Candidate) {
			p.post(func() { p.onPair(a, local, remote) })
		})
	}
	if err != nil {
		_ = agent.Close()
		return nil, err
	}
	return a, nil
}

func (p *Peer) iceURLs() []*stun.URI {
	if p.cfg.ICEServers == nil {
		return nil
	}
	var urls []*stun.URI
	for _, s := range p.cfg.ICEServers() {
		u, err := stun.ParseURI(s.URL)
		if err != nil {
			p.log.Warn("ignoring bad ICE server URL", "url", s.URL, "err", err)
			continue
		}
		u.Username, u.Password = s.Username, s.Credential
		urls = append(urls, u)
	}
	return urls
}

// srflxMuxOf is the mux to gather server-reflexive candidates on: the
// IPv4 view of a dual mux (icemux.NewDualUDPMux).
func srflxMuxOf(m ice.UniversalUDPMux) ice.UniversalUDPMux {
	if f, ok := m.(interface{ SrflxOnly() ice.UniversalUDPMux }); ok {
		return f.SrflxOnly()
	}
	return m
}

func isTURN(u *stun.URI) bool {
	return u.Scheme == stun.SchemeTypeTURN || u.Scheme == stun.SchemeTypeTURNS
}

// interfaceAllowed keeps our TUN (a candidate there would route ICE
// through the tunnel it is building) and, outside tests, loopback out.
func (p *Peer) interfaceAllowed(name string) bool {
	if slices.Contains(p.cfg.ExcludeInterfaces, name) {
		return false
	}
	if p.cfg.AllowLoopback {
		return true
	}
	ifi, err := net.InterfaceByName(name)
	return err != nil || ifi.Flags&net.FlagLoopback == 0
}

// ipAllowed applies to our candidates and to the peer's: a remote
// loopback or multicast candidate would only make us probe ourselves.
func (p *Peer) ipAllowed(ip net.IP) bool {
	if ip.IsUnspecified() || ip.IsMulticast() || (ip.To4() == nil && ip.IsLinkLocalUnicast()) {
		return false
	}
	return p.cfg.AllowLoopback || !ip.IsLoopback()
}

// start gives the agent the remote credentials, which starts the checks,
// and feeds it the candidates that came early.
func (p *Peer) start(a *attempt, ufrag, pwd string) error {
	var conn *ice.Conn
	var err error
	if p.controlling {
		conn, err = a.agent.StartDial(ufrag, pwd)
	} else {
		conn, err = a.agent.StartAccept(ufrag, pwd)
	}
	if err != nil {
		return err
	}
	a.started, a.conn = true, conn
	for _, c := range a.pending {
		p.addRemote(a, c)
	}
	a.pending = nil
	// The conn must always be read: on a relay path the tunnel's packets
	// arrive there, and pion's buffer would fill up otherwise. Closing the
	// agent ends the Read.
	ctx, cancel := context.WithCancel(p.ctx)
	a.cancel = cancel
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.readConn(ctx, conn)
	}()
	return nil
}

func (p *Peer) readConn(ctx context.Context, conn *ice.Conn) {
	buf := make([]byte, 65535)
	for ctx.Err() == nil {
		n, err := conn.Read(buf)
		if err != nil {
			return
		}
		if p.cfg.OnRelayPacket != nil && ctx.Err() == nil {
			p.cfg.OnRelayPacket(buf[:n])
		}
	}
}

// addRemote hands one remote candidate to a started agent.
func (p *Peer) addRemote(a *attempt, raw string) {
	if a.remotes >= maxRemoteCandidates {
		return
	}
	c, err := ice.UnmarshalCandidate(raw)
	if err != nil {
		p.log.Warn("ignoring bad remote candidate", "candidate", raw, "err", err)
		return
	}
	a.remotes++
	p.noteReflexive(raw, true)
	if a.pref != nil {
		a.pref.AddRemote(c)
	}
	if err := a.agent.AddRemoteCandidate(c); err != nil {
		p.log.Debug("remote candidate not added", "candidate", raw, "err", err)
	}
}

// closeAttempt stops the current agent and one kept by a restart, if any,
// and drops the path.
func (p *Peer) closeAttempt(why string) {
	p.closePrev(why)
	a := p.cur
	if a == nil {
		return
	}
	p.cur = nil
	p.closeAgent(a, why)
	p.setPath(Path{})
}

// closeAgent stops a's conn reader and closes its agent in the background.
func (p *Peer) closeAgent(a *attempt, why string) {
	if a.cancel != nil {
		a.cancel()
	}
	// Close in the background: GracefulClose waits for pion's callback
	// goroutines, which may be waiting to post to this loop. Run waits
	// for the closers, so no pion goroutine outlives it.
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		if err := a.agent.GracefulClose(); err != nil {
			p.log.Debug("close ICE agent", "gen", a.gen, "err", err)
		}
	}()
	p.log.Debug("ICE attempt closed", "gen", a.gen, "why", why)
}

func pathFor(a *attempt, local, remote ice.Candidate) Path {
	path := Path{
		Local:  Candidate{Type: local.Type(), Addr: candidateAddr(local)},
		Remote: Candidate{Type: remote.Type(), Addr: candidateAddr(remote)},
	}
	if rc, ok := local.(*ice.CandidateRelay); ok {
		// TCP-in-TCP through a TURN-over-TCP relay is far slower than
		// TURN over UDP; status says which one carries the tunnel.
		path.Local.RelayProtocol = rc.RelayProtocol()
		if rel := rc.RelatedAddress(); rel != nil && a.net != nil {
			path.Local.RelayOver6 = a.net.Over6(rc.RelayProtocol(), rel.Port)
		}
		// Over UDP, the relay shortcut: the related address is the TURN
		// client socket's own.
		if rel := rc.RelatedAddress(); rel != nil && a.net != nil && rc.RelayProtocol() == "udp" {
			path.Channel = a.net.Channel(rel.Port, path.Remote.Addr)
		}
	}
	if local.Type() == ice.CandidateTypeRelay {
		// The seam for TURN: the tunnel writes through the ICE conn.
		// (Checked for nil so the interface never holds a typed nil.)
		if a.conn != nil {
			path.Relay = a.conn
		}
	} else {
		path.Direct = path.Remote.Addr
	}
	return path
}

func candidateAddr(c ice.Candidate) netip.AddrPort {
	ip, err := netip.ParseAddr(c.Address())
	if err != nil || c.Port() < 0 || c.Port() > 65535 {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(c.Port()))
}

// randomGen names an attempt. 53 bits: exact in any JSON decoder.
func randomGen() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	if g := binary.BigEndian.Uint64(b[:]) >> 11; g != 0 {
		return g
	}
	return 1
}

// randomCredentials makes ICE credentials (RFC 8445 §5.3: ufrag at least
// 24 bits, pwd at least 128 bits of randomness, ice-char alphabet).
func randomCredentials() (ufrag, pwd string) {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/"
	gen := func(n int) string {
		b := make([]byte, n)
		_, _ = rand.Read(b)
		for i := range b {
			b[i] = alphabet[int(b[i])%len(alphabet)] // 64 symbols: no bias
		}
		return string(b)
	}
	return gen(16), gen(32)
}
