package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"

	"github.com/punchd/punchd/internal/birthday"
	"github.com/punchd/punchd/internal/control"
	"github.com/punchd/punchd/internal/hardnat"
	"github.com/punchd/punchd/internal/icemux"
	"github.com/punchd/punchd/internal/icepeer"
	"github.com/punchd/punchd/internal/identity"
	"github.com/punchd/punchd/internal/membership"
	"github.com/punchd/punchd/internal/natkind"
	"github.com/punchd/punchd/internal/natprobe"
	"github.com/punchd/punchd/internal/ping"
	"github.com/punchd/punchd/internal/portmap"
	"github.com/punchd/punchd/internal/rvclient"
	"github.com/punchd/punchd/internal/sdnotify"
	"github.com/punchd/punchd/internal/tunnel"
)

// notifySystemd tells systemd our state when it runs us as Type=notify.
func notifySystemd(log *slog.Logger, state string) {
	if sent, err := sdnotify.Notify(state); err != nil {
		log.Warn("tell systemd", "state", state, "err", err)
	} else if sent {
		log.Debug("told systemd", "state", state)
	}
}

// Run brings the tunnel up and keeps it up until ctx is done. It returns nil
// after a clean shutdown (TUN removed, every goroutine stopped) and an
// actionable error when something the user controls is wrong.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	self := cfg.Key.PublicKey()
	plan, book, err := planOverlay(self, cfg.Peers, cfg.OverlayPrefixes)
	if err != nil {
		return err
	}
	if len(cfg.Peers) == 0 && cfg.Network == nil {
		return errors.New("no peers: give at least one --peer ID (see `punchd id` on the other host) or --network CODE (see `punchd network new`)")
	}
	if cfg.RendezvousURL == "" && cfg.Network != nil {
		cfg.RendezvousURL = cfg.Network.Rendezvous
	}
	if cfg.PinICEServers && len(cfg.STUN) == 0 && len(cfg.TURN) == 0 {
		return errors.New("--pin-ice-servers uses only the --stun and --turn servers, and none is given: add --stun HOST:PORT (and --turn for a relay), or drop --pin-ice-servers")
	}

	bind := tunnel.NewBind(log.With("component", "bind"), tunnel.BindOptions{})
	dev, err := tunnel.NewDevice(tunnel.DeviceConfig{
		Interface:  cfg.Interface,
		MTU:        cfg.MTU,
		PrivateKey: cfg.Key,
		ListenPort: cfg.ListenPort,
		Addresses:  plan.self,
		Logger:     log.With("component", "wireguard"),
	}, bind)
	if err != nil {
		return err
	}
	defer dev.Close()

	mux, err := icemux.NewDualUDPMux(bind.STUNConn(), bind.STUNConn6(), log.With("component", "ice-mux"))
	if err != nil {
		return fmt.Errorf("start ICE on the tunnel socket: %w", err)
	}
	defer mux.Close()

	runCtx, stop := context.WithCancel(ctx)
	d := &daemon{
		cfg:     cfg,
		log:     log,
		self:    self,
		selfIPs: plan.self,
		book:    book,
		dev:     dev,
		bind:    bind,
		mux:     mux,
		started: time.Now(),
		runCtx:  runCtx,
		peers:   make(map[identity.PublicKey]*peerState, len(cfg.Peers)),
	}
	// Peers' goroutines stop before the device and the mux close.
	defer d.stopPeers()
	defer stop()
	d.nat = natprobe.NewBackground(log.With("component", "nat"), func(rep *natprobe.Report) {
		d.mu.Lock()
		defer d.mu.Unlock()
		d.localNAT = rep.NATType
		for _, ps := range d.peers {
			ps.ice.SetLocalNAT(rep.NATType)
		}
	})
	d.cool = birthday.NewCooldown(cfg.Birthday.Limits().Cooldown, nil)
	for _, p := range cfg.Peers {
		if err := d.addPeer(p.Key, p.Alias, false, plan.peers[p.Key]); err != nil {
			return err
		}
	}
	if cfg.Network != nil {
		if d.net, err = d.newMembership(*cfg.Network, cfg.Name); err != nil {
			return err
		}
	}

	// After the peers exist (OnChange walks them), before they run.
	if !cfg.NoPortMapping && !cfg.ForceRelay {
		d.lease = portmap.Keep(ctx, portmap.LeaseConfig{Internal: dev.ListenPort(), Logger: log.With("component", "portmap"),
			OnChange: func(portmap.Mapping) {
				d.eachPeer(func(ps *peerState) { ps.ice.PortMappingChanged() })
			}})
		defer d.lease.Close()
	}
	bind.SetPunchHandler(func(pkt []byte, from netip.AddrPort) {
		d.eachPeer(func(ps *peerState) { ps.hard.Deliver(pkt, from) })
	})
	defer bind.SetPunchHandler(nil)

	if cfg.DebugListen != "" {
		stopDebug, err := serveDebug(cfg.DebugListen, log)
		if err != nil {
			return err
		}
		defer stopDebug()
	}
	if cfg.MetricsListen != "" {
		stopMetrics, err := d.serveMetrics(cfg.MetricsListen, log.With("component", "metrics"))
		if err != nil {
			return err
		}
		defer stopMetrics()
	}

	if self4 := firstOf(plan.self, true); self4.IsValid() {
		echo, err := ping.Listen(self4, cfg.Interface, log.With("component", "ping"))
		if err != nil {
			return err
		}
		defer echo.Close()
	}

	ctl, err := control.Listen(cfg.ControlSocket, d.status, log.With("component", "control"))
	if err != nil {
		return err
	}
	defer ctl.Close()

	rcfg := rvclient.ClientConfig{
		URL:          cfg.RendezvousURL,
		Key:          cfg.Key,
		Logger:       log.With("component", "rendezvous"),
		Watch:        d.peerKeys(),
		Accept:       d.acceptsSignalsFrom,
		OnRegistered: d.onRegistered,
		OnPresence:   d.onPresence,
		OnMessage:    d.onMessage,
	}
	if d.net != nil {
		rcfg.Topics = []string{d.net.Topic()}
		rcfg.OnAnnouncement = d.net.OnAnnouncement
	}
	rv, err := rvclient.Connect(ctx, rcfg)
	if err != nil {
		return err
	}
	d.rv.Store(rv)
	defer rv.Close()

	var wg sync.WaitGroup
	defer func() {
		stop()
		wg.Wait()
	}()
	d.startPeers()
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.nat.Run(runCtx)
	}()
	if w := d.watchNetwork(bind); w != nil {
		defer w.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.Run(runCtx)
		}()
	}
	if d.net != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.net.Run(runCtx)
		}()
	}
	if cfg.PeerRelay {
		bind.SetPeerRelay(true)
		chooser := d.newRelayChooser()
		wg.Add(1)
		go func() {
			defer wg.Done()
			chooser.Run(runCtx)
		}()
	}
	// Ready for systemd (Type=notify): the device is up with its
	// addresses and we are registered at the rendezvous.
	notifySystemd(log, sdnotify.Ready)
	defer notifySystemd(log, sdnotify.Stopping)
	log.Info("punchd up", "id", self.String(), "interface", cfg.Interface,
		"overlay", plan.self, "port", dev.ListenPort(), "peers", len(cfg.Peers),
		"network", d.net != nil, "control", ctl.Path())

	<-ctx.Done()
	log.Info("shutting down")
	// Stop talking to the rendezvous first, so no new signals arrive at
	// peers that are being torn down; the deferred calls then stop the
	// peers, the control socket, the mux and finally the device (TUN gone).
	rv.Close()
	return nil
}

type peerState struct {
	key   identity.PublicKey
	alias string
	// member: learned from the network's roster (and removed when it
	// leaves it); a --peer is never removed.
	member bool
	routes []netip.Prefix
	ice    *icepeer.Peer
	hard   *hardnat.Pair // birthday punching toward this peer
	log    *slog.Logger
	stop   context.CancelFunc // nil until started
	done   chan struct{}

	mu          sync.Mutex
	connectedAt time.Time // since the tunnel last had a path (network expiry)
	lastPath    icepeer.Path
	name        string // display name announced by a member
	// via names the member relaying for this peer (see peerrelay.go),
	// viaReason why; both empty when none does.
	via, viaReason string
	pathChanges    atomic.Uint64 // paths selected or lost (metrics)
}

type daemon struct {
	cfg     Config
	log     *slog.Logger
	self    identity.PublicKey
	selfIPs []netip.Prefix
	dev     *tunnel.Device
	bind    *tunnel.Bind
	mux     ice.UniversalUDPMux
	nat     *natprobe.Background
	net     *membership.Membership // nil without --network
	started time.Time
	runCtx  context.Context

	// mu guards the peer set (members of a network come and go) and the
	// address book.
	mu       sync.RWMutex
	peers    map[identity.PublicKey]*peerState
	book     *addressBook
	running  bool // peers added now start at once
	localNAT natkind.NATType

	rv      atomic.Pointer[rvclient.Client]
	offered atomic.Pointer[rvclient.Registration] // the latest, already capped
	lease   *portmap.Lease                        // the tunnel port's mapping on the gateway; nil when off
	cool    *birthday.Cooldown                    // birthday punching's cooldown, shared by the peers
}

func (d *daemon) iceChoice() iceChoice {
	return iceChoice{pinned: d.cfg.PinICEServers, stun: d.cfg.STUN, turn: d.cfg.TURN}
}

// addPeer links with key: a WireGuard peer with its host routes, an ICE
// peer on the shared socket. routes are claimed in d.book already.
func (d *daemon) addPeer(key identity.PublicKey, alias string, member bool, routes []netip.Prefix) error {
	plog := d.log.With("peer", key.Short())
	if alias != "" {
		plog = plog.With("alias", alias)
	}
	ps := &peerState{key: key, alias: alias, member: member, routes: routes, log: plog}
	ps.ice = icepeer.NewPeer(icepeer.PeerConfig{
		Local:             d.self,
		Remote:            key,
		Mux:               d.mux,
		ICEServers:        d.currentICEServers,
		Signal:            func(ctx context.Context, b []byte) error { return d.signal(ctx, key, b) },
		OnPath:            func(path icepeer.Path) { d.onPath(ps, path) },
		OnStalled:         d.recheckRendezvous,
		OnRelayPacket:     func(pkt []byte) { d.bind.DeliverRelay(key, pkt) },
		ExcludeInterfaces: []string{d.cfg.Interface},
		PortMapped:        d.portMapped,
		RelayOnly:         d.cfg.ForceRelay,
		Logger:            plog,
	})
	ps.hard = hardnat.New(hardnat.Config{
		Self: d.self, Peer: key, Log: ps.log, Limits: d.cfg.Birthday, Off: d.cfg.NoBirthday,
		Cooldown: d.cool, Bind: d.bind, NAT: d.nat.Current, ICE: ps.ice.Status,
		Signal: func(ctx context.Context, payload []byte) error {
			return d.signal(ctx, key, payload)
		},
		RestorePath: func() { d.restorePath(key) },
		STUNServer:  d.stunServerAddr,
	})
	// The ICE controlling side initiates WireGuard; the other waits.
	d.bind.SetPassive(key, !ps.ice.Controlling())
	if err := d.dev.AddPeer(key, routes); err != nil {
		return fmt.Errorf("add peer %s to wireguard: %w", key.Short(), err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.peers[key] = ps
	if d.localNAT != "" {
		ps.ice.SetLocalNAT(d.localNAT)
	}
	if d.running {
		d.startLocked(ps)
	}
	return nil
}

func (d *daemon) startLocked(ps *peerState) {
	ctx, cancel := context.WithCancel(d.runCtx)
	ps.stop, ps.done = cancel, make(chan struct{})
	go func() {
		defer close(ps.done)
		var wg sync.WaitGroup
		wg.Go(func() { ps.hard.Run(ctx) })
		ps.ice.Run(ctx)
		wg.Wait()
	}()
}

// eachPeer calls fn for every peer, under the read lock: fn must not
// block or touch the peer set.
func (d *daemon) eachPeer(fn func(*peerState)) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	for _, ps := range d.peers {
		fn(ps)
	}
}

// startPeers starts the ICE peers added so far; later ones start at once.
func (d *daemon) startPeers() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.running = true
	for _, ps := range d.peers {
		d.startLocked(ps)
	}
}

// removePeer unlinks a member that left the network: its ICE peer stops,
// WireGuard forgets it, its addresses are free again.
func (d *daemon) removePeer(key identity.PublicKey) {
	d.mu.Lock()
	ps, ok := d.peers[key]
	if ok {
		delete(d.peers, key)
		d.book.release(key)
	}
	d.mu.Unlock()
	if !ok {
		return
	}
	if ps.stop != nil {
		ps.stop()
		<-ps.done
	}
	if err := d.dev.RemovePeer(key); err != nil {
		d.log.Warn("remove peer", "peer", key.Short(), "err", err)
	}
	ps.log.Info("peer removed")
}

// stopPeers stops every ICE peer's goroutine (at shutdown).
func (d *daemon) stopPeers() {
	d.mu.Lock()
	d.running = false
	var all []*peerState
	for _, ps := range d.peers {
		all = append(all, ps)
	}
	d.mu.Unlock()
	for _, ps := range all {
		if ps.stop != nil {
			ps.stop()
			<-ps.done
		}
	}
}

func (d *daemon) peer(key identity.PublicKey) (*peerState, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	ps, ok := d.peers[key]
	return ps, ok
}

// peerKeys lists the peers, sorted (for the watch list).
func (d *daemon) peerKeys() []identity.PublicKey {
	d.mu.RLock()
	keys := make([]identity.PublicKey, 0, len(d.peers))
	for k := range d.peers {
		keys = append(keys, k)
	}
	d.mu.RUnlock()
	slices.SortFunc(keys, func(a, b identity.PublicKey) int { return bytes.Compare(a[:], b[:]) })
	return keys
}

// snapshot lists the peers, sorted by key.
func (d *daemon) snapshot() []*peerState {
	d.mu.RLock()
	out := make([]*peerState, 0, len(d.peers))
	for _, ps := range d.peers {
		out = append(out, ps)
	}
	d.mu.RUnlock()
	slices.SortFunc(out, func(a, b *peerState) int { return bytes.Compare(a.key[:], b.key[:]) })
	return out
}

// portMapped is the gateway's mapping of the tunnel port and the local
// address it forwards to, for ICE to offer as a candidate.
func (d *daemon) portMapped() (external, local netip.AddrPort) {
	if d.lease == nil {
		return netip.AddrPort{}, netip.AddrPort{}
	}
	m, _ := d.lease.Current()
	if m.IsZero() {
		return netip.AddrPort{}, netip.AddrPort{}
	}
	if a, ok := d.bind.STUNConn().LocalAddr().(*net.UDPAddr); ok {
		local = a.AddrPort()
	}
	return m.External, netip.AddrPortFrom(local.Addr().Unmap(), m.Internal)
}

func (d *daemon) signal(ctx context.Context, to identity.PublicKey, payload []byte) error {
	rv := d.rv.Load()
	if rv == nil {
		return errors.New("rendezvous not connected yet")
	}
	return rv.Send(ctx, to, payload)
}

// recheckRendezvous makes sure the signaling a broken path needs still
// works (see icepeer.PeerConfig.OnStalled).
func (d *daemon) recheckRendezvous() {
	if rv := d.rv.Load(); rv != nil {
		rv.Recheck()
	}
}

func (d *daemon) onRegistered(r rvclient.Registration) {
	d.offered.Store(&r)
	offered := make([]string, 0, len(r.ICEServers))
	for _, s := range r.ICEServers {
		offered = append(offered, s.URL)
	}
	var used []string
	for _, s := range d.currentICEServers() {
		used = append(used, s.URL)
	}
	d.log.Info("registered at rendezvous", "ice_servers", used, "offered", offered, "pinned", d.cfg.PinICEServers)
	for _, w := range d.iceChoice().warnings(&r) {
		d.log.Warn(w)
	}
	d.nat.Request(used)
	if d.net != nil {
		d.net.Registered()
	}
}

// currentICEServers is the rendezvous' STUN/TURN servers (unless pinned)
// followed by the --stun and --turn servers, with fresh credentials.
func (d *daemon) currentICEServers() []icepeer.ICEServer {
	out, skipped := d.iceChoice().servers(d.offered.Load(), func(t ExternalTURN) (icepeer.ICEServer, error) { return t.server(d.self) })
	for _, err := range skipped {
		d.log.Warn("ICE server skipped", "err", err)
	}
	return out
}

func (d *daemon) onPresence(peer identity.PublicKey, online bool) {
	if ps, ok := d.peer(peer); ok {
		ps.log.Info("peer presence", "online", online)
		ps.ice.HandlePresence(online)
	}
}

// acceptsSignalsFrom says whose sealed messages the rendezvous client
// opens at all: the peers we link with. Anyone else's are dropped before
// any cryptography or replay state (see rvclient.ClientConfig.Accept).
func (d *daemon) acceptsSignalsFrom(k identity.PublicKey) bool {
	_, ok := d.peer(k)
	return ok
}

func (d *daemon) onMessage(from identity.PublicKey, payload []byte) {
	ps, ok := d.peer(from)
	if !ok {
		// Only configured peers may talk to us; anyone else who knows our
		// ID gets nothing, not even an error.
		d.log.Debug("signal from unknown peer dropped", "from", from.Short())
		return
	}
	if birthday.IsSignal(payload) {
		ps.hard.HandleSignal(payload)
		return
	}
	ps.ice.HandleSignal(payload)
}

// onPath moves WireGuard to the path ICE selected. The Bind, not WireGuard
// roaming, decides where packets go.
func (d *daemon) onPath(ps *peerState, path icepeer.Path) {
	if !ps.hard.HoldsPath(path) {
		d.bind.SetPath(ps.key, bindPath(path))
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.lastPath = path
	if path.Kind() == icepeer.PathDirect && ps.via != "" {
		// A direct path always beats a member relay.
		d.bind.SetVia(ps.key, identity.PublicKey{})
		ps.log.Info("peer relay no longer used: direct path", "via", ps.via)
		ps.via, ps.viaReason = "", ""
	}
	ps.pathChanges.Add(1)
	switch {
	case path.Direct.IsValid() || path.Relay != nil:
		if ps.connectedAt.IsZero() {
			ps.connectedAt = time.Now()
		}
		ps.log.Info("path selected", "path", path.Kind().String(),
			"local", path.Local.String(), "remote", path.Remote.String(),
			"after", time.Since(d.started).Round(time.Millisecond))
	default:
		ps.connectedAt = time.Time{}
		ps.log.Info("path lost; reconnecting")
	}
}

// bindPath is ICE's path as the Bind takes it.
func bindPath(path icepeer.Path) tunnel.Path {
	return tunnel.Path{Direct: path.Direct, Relay: relayWriter(path), Channel: relayChannel(path)}
}

// restorePath gives the tunnel back to ICE's latest path (a birthday path
// went quiet).
func (d *daemon) restorePath(key identity.PublicKey) {
	ps, ok := d.peer(key)
	if !ok {
		return
	}
	ps.mu.Lock()
	path := ps.lastPath
	ps.mu.Unlock()
	d.bind.SetPath(key, bindPath(path))
}

// relayChannel avoids handing the Bind a typed-nil TURNChannel.
func relayChannel(p icepeer.Path) tunnel.TURNChannel {
	if p.Channel == nil || p.Relay == nil {
		return nil
	}
	return p.Channel
}

// relayWriter avoids handing the Bind a typed-nil io.Writer.
func relayWriter(p icepeer.Path) io.Writer {
	if p.Relay == nil {
		return nil
	}
	return p.Relay
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}
