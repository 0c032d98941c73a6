package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/punchd/punchd/internal/birthday"
	"github.com/punchd/punchd/internal/control"
	"github.com/punchd/punchd/internal/icepeer"
	"github.com/punchd/punchd/internal/identity"
	"github.com/punchd/punchd/internal/natprobe"
	"github.com/punchd/punchd/internal/ping"
	"github.com/punchd/punchd/internal/portmap"
	"github.com/punchd/punchd/internal/rendezvous"
	"github.com/punchd/punchd/internal/tunnel"
)

// Run brings the tunnel up and keeps it up until ctx is done. It returns nil
// after a clean shutdown (TUN removed, every goroutine stopped) and an
// actionable error when something the user controls is wrong.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	self := cfg.Key.PublicKey()
	plan, err := planOverlay(self, cfg.Peers, cfg.OverlayPrefixes)
	if err != nil {
		return err
	}
	if len(cfg.Peers) == 0 {
		return errors.New("no peers: give at least one --peer ID (see `punchd id` on the other host)")
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

	mux, err := icepeer.NewUDPMux(bind.STUNConn(), log.With("component", "ice-mux"))
	if err != nil {
		return fmt.Errorf("start ICE on the tunnel socket: %w", err)
	}
	defer mux.Close()

	d := &daemon{
		cfg:     cfg,
		log:     log,
		self:    self,
		plan:    plan,
		dev:     dev,
		started: time.Now(),
		peers:   make(map[identity.PublicKey]*peerState, len(cfg.Peers)),
		bind:    bind,
	}
	d.nat = newNATInfo(log.With("component", "nat"), func(rep *natprobe.Report) {
		for _, ps := range d.peers {
			ps.ice.SetLocalNAT(rep.NATType)
		}
	})
	cool := birthday.NewCooldown(cfg.Birthday.Limits().Cooldown, nil)
	for _, p := range cfg.Peers {
		ps := &peerState{Peer: p}
		key := p.Key
		plog := log.With("peer", key.Short())
		if p.Alias != "" {
			plog = plog.With("alias", p.Alias)
		}
		ps.ice = icepeer.NewPeer(icepeer.PeerConfig{
			Local:             self,
			Remote:            key,
			Mux:               mux,
			ICEServers:        d.currentICEServers,
			Signal:            func(ctx context.Context, b []byte) error { return d.signal(ctx, key, b) },
			OnPath:            func(path icepeer.Path) { d.onPath(key, path) },
			OnStalled:         d.recheckRendezvous,
			OnRelayPacket:     func(pkt []byte) { bind.DeliverRelay(key, pkt) },
			ExcludeInterfaces: []string{cfg.Interface},
			PortMapped:        d.portMapped,
			RelayOnly:         cfg.ForceRelay,
			Logger:            plog,
		})
		ps.bind = bind
		// The ICE controlling side initiates WireGuard; the other waits.
		bind.SetPassive(key, !ps.ice.Controlling())
		ps.log = plog
		ps.hard = newHardNAT(d, ps, cool)
		d.peers[key] = ps
		if err := dev.AddPeer(key, plan.peers[key]); err != nil {
			return fmt.Errorf("add peer %s to wireguard: %w", key.Short(), err)
		}
	}

	// After the peers exist (OnChange walks them), before they run.
	if !cfg.NoPortMapping && !cfg.ForceRelay {
		d.lease = portmap.Keep(ctx, portmap.LeaseConfig{Internal: dev.ListenPort(), Logger: log.With("component", "portmap"),
			OnChange: func(portmap.Mapping) {
				for _, ps := range d.peers {
					ps.ice.PortMappingChanged()
				}
			}})
		defer d.lease.Close()
	}
	bind.SetPunchHandler(func(pkt []byte, from netip.AddrPort) {
		for _, ps := range d.peers {
			ps.hard.deliver(pkt, from)
		}
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

	rv, err := rendezvous.Connect(ctx, rendezvous.ClientConfig{
		URL:          cfg.RendezvousURL,
		Key:          cfg.Key,
		Logger:       log.With("component", "rendezvous"),
		Watch:        peerKeys(cfg.Peers),
		Accept:       d.acceptsSignalsFrom,
		OnRegistered: d.onRegistered,
		OnPresence:   d.onPresence,
		OnMessage:    d.onMessage,
	})
	if err != nil {
		return err
	}
	d.rv.Store(rv)
	defer rv.Close()

	var wg sync.WaitGroup
	runCtx, stop := context.WithCancel(ctx)
	defer func() {
		stop()
		wg.Wait()
	}()
	for _, ps := range d.peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ps.ice.Run(runCtx)
		}()
		wg.Go(func() { ps.hard.run(runCtx) })
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.nat.run(runCtx)
	}()
	log.Info("punchd up", "id", self.String(), "interface", cfg.Interface,
		"overlay", plan.self, "port", dev.ListenPort(), "peers", len(cfg.Peers),
		"control", ctl.Path())

	<-ctx.Done()
	log.Info("shutting down")
	// Stop talking to the rendezvous first, so no new signals arrive at
	// peers that are being torn down; the deferred calls then stop the
	// peers, the control socket, the mux and finally the device (TUN gone).
	rv.Close()
	return nil
}

type peerState struct {
	Peer
	ice  *icepeer.Peer
	hard *hardNAT // birthday punching toward this peer
	bind *tunnel.Bind
	log  *slog.Logger

	mu          sync.Mutex
	connectedAt time.Time
	lastPath    icepeer.Path
	pathChanges atomic.Uint64 // paths selected or lost (metrics)
}

type daemon struct {
	cfg     Config
	log     *slog.Logger
	self    identity.PublicKey
	plan    overlayPlan
	dev     *tunnel.Device
	nat     *natInfo
	started time.Time
	peers   map[identity.PublicKey]*peerState // fixed after start: read without locks

	rv      atomic.Pointer[rendezvous.Client]
	offered atomic.Pointer[rendezvous.Registration] // the latest, already capped
	lease   *portmap.Lease                          // the tunnel port's mapping on the gateway; nil when off
	bind    *tunnel.Bind
}

func (d *daemon) iceChoice() iceChoice {
	return iceChoice{pinned: d.cfg.PinICEServers, stun: d.cfg.STUN, turn: d.cfg.TURN}
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

func (d *daemon) onRegistered(r rendezvous.Registration) {
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
	d.nat.request(used)
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
	if ps, ok := d.peers[peer]; ok {
		ps.log.Info("peer presence", "online", online)
		ps.ice.HandlePresence(online)
	}
}

// acceptsSignalsFrom says whose sealed messages the rendezvous client
// opens at all: the peers we link with. Anyone else's are dropped before
// any cryptography or replay state (see rendezvous.ClientConfig.Accept).
func (d *daemon) acceptsSignalsFrom(k identity.PublicKey) bool {
	_, ok := d.peers[k]
	return ok
}

func (d *daemon) onMessage(from identity.PublicKey, payload []byte) {
	ps, ok := d.peers[from]
	if !ok {
		// Only configured peers may talk to us; anyone else who knows our
		// ID gets nothing, not even an error.
		d.log.Debug("signal from unknown peer dropped", "from", from.Short())
		return
	}
	if birthday.IsSignal(payload) {
		ps.hard.handleSignal(payload)
		return
	}
	ps.ice.HandleSignal(payload)
}

// onPath moves WireGuard to the path ICE selected. The Bind, not WireGuard
// roaming, decides where packets go.
func (d *daemon) onPath(key identity.PublicKey, path icepeer.Path) {
	ps := d.peers[key]
	if !ps.hard.holdsPath(path) {
		ps.bind.SetPath(key, bindPath(path))
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.lastPath = path
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
	ps := d.peers[key]
	ps.mu.Lock()
	path := ps.lastPath
	ps.mu.Unlock()
	ps.bind.SetPath(key, bindPath(path))
}

func peerKeys(peers []Peer) []identity.PublicKey {
	keys := make([]identity.PublicKey, len(peers))
	for i, p := range peers {
		keys[i] = p.Key
	}
	return keys
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
