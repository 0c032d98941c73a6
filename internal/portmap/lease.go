package portmap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/jackpal/gateway"
	natpmp "github.com/jackpal/go-nat-pmp"

	"github.com/punchd/punchd/internal/route"
)

// Lease timing. The gateway is asked for DefaultLifetime and the mapping is
// renewed at half its lifetime, but at least every maxRefresh: a renewal
// is also how a gateway that rebooted (and forgot the mapping) is noticed.
const (
	DefaultLifetime = 2 * time.Hour
	maxRefresh      = 2 * time.Minute
	retryMin        = 5 * time.Second
	retryMax        = 5 * time.Minute
	callTimeout     = 2 * time.Second
	leaseDesc       = "punchd tunnel"
)

// Protocol names a port-mapping protocol.
type Protocol string

const (
	ProtoPCP    Protocol = "pcp"
	ProtoNATPMP Protocol = "nat-pmp"
	ProtoUPnP   Protocol = "upnp"
)

// Mapping is a port the gateway forwards to us.
type Mapping struct {
	Protocol Protocol
	External netip.AddrPort
	Internal uint16
	Expires  time.Time
}

// IsZero reports whether there is no mapping.
func (m Mapping) IsZero() bool { return !m.External.IsValid() }

// LeaseConfig says what to map.
type LeaseConfig struct {
	Gateway  netip.Addr    // default: the default route's gateway
	Internal uint16        // the local UDP port (the tunnel socket's)
	Lifetime time.Duration // asked for; default DefaultLifetime
	// Refresh and Retry override the renewal interval and the first wait
	// after a failure (tests).
	Refresh, Retry time.Duration
	// OnChange is called from the lease's goroutine whenever the mapping
	// appears, changes its external address, or is lost (zero Mapping).
	OnChange func(Mapping)
	Logger   *slog.Logger
}

// Lease keeps one UDP port mapped on the gateway with PCP, NAT-PMP or
// UPnP-IGD (the first that grants it), renews it, maps it again when the
// gateway forgot it, and deletes it on Close.
type Lease struct {
	cfg    LeaseConfig
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once

	mu  sync.Mutex
	cur Mapping
	err string
}

// Keep starts a lease; Close ends it.
func Keep(ctx context.Context, cfg LeaseConfig) *Lease {
	if cfg.Lifetime <= 0 {
		cfg.Lifetime = DefaultLifetime
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(ctx)
	l := &Lease{cfg: cfg, log: log, cancel: cancel, done: make(chan struct{})}
	go l.run(ctx)
	return l
}

// Current returns the mapping (zero while there is none) and, without
// one, why not.
func (l *Lease) Current() (Mapping, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cur, l.err
}

// Close stops renewing and deletes the mapping (bounded by callTimeout);
// idempotent.
func (l *Lease) Close() {
	l.once.Do(func() {
		l.cancel()
		<-l.done
	})
}

// mapper is one protocol's client for the lease's port.
type mapper interface {
	proto() Protocol
	mapPort(ctx context.Context, lifetime time.Duration) (netip.AddrPort, time.Duration, error)
	unmap(ctx context.Context) error
}

func (l *Lease) run(ctx context.Context) {
	defer close(l.done)
	var m mapper
	first := retryMin
	if l.cfg.Retry > 0 {
		first = l.cfg.Retry
	}
	backoff := first
	for {
		var wait time.Duration
		if m == nil {
			var err error
			m, err = l.find(ctx)
			if err != nil {
				l.set(Mapping{}, err.Error())
				wait, backoff = backoff, min(backoff*2, retryMax)
			}
		}
		if m != nil {
			cctx, cancel := context.WithTimeout(ctx, callTimeout)
			ext, life, err := m.mapPort(cctx, l.cfg.Lifetime)
			cancel()
			switch {
			case ctx.Err() != nil:
			case err != nil:
				// The gateway stopped answering or refuses now (rebooted
				// without the service, or another host took the port):
				// start over, protocol discovery included.
				l.log.Info("port mapping lost", "protocol", m.proto(), "err", err)
				l.set(Mapping{}, fmt.Sprintf("%s renewal failed: %v", m.proto(), err))
				m = nil
				wait, backoff = backoff, min(backoff*2, retryMax)
			default:
				backoff = first
				l.set(Mapping{Protocol: m.proto(), External: ext, Internal: l.cfg.Internal, Expires: time.Now().Add(life)}, "")
				wait = min(life/2, maxRefresh)
				if l.cfg.Refresh > 0 {
					wait = l.cfg.Refresh
				}
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			if m != nil {
				dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), callTimeout)
				if err := m.unmap(dctx); err != nil {
					l.log.Info("port mapping not deleted (it expires by itself)", "protocol", m.proto(), "err", err)
				}
				cancel()
			}
			l.set(Mapping{}, "closed")
			return
		case <-t.C:
		}
	}
}

// set records the mapping and reports a change.
func (l *Lease) set(m Mapping, why string) {
	l.mu.Lock()
	old := l.cur
	l.cur, l.err = m, why
	l.mu.Unlock()
	if old.External != m.External || old.Protocol != m.Protocol {
		if !m.IsZero() {
			l.log.Info("port mapped", "protocol", m.Protocol, "external", m.External, "internal", m.Internal,
				"lease", time.Until(m.Expires).Round(time.Second))
		}
		if l.cfg.OnChange != nil {
			l.cfg.OnChange(m)
		}
	}
}

// find asks the gateway which protocol maps the port: PCP, then NAT-PMP
// (one datagram each), then UPnP-IGD (SSDP and HTTP).
func (l *Lease) find(ctx context.Context) (mapper, error) {
	gw := l.cfg.Gateway
	if !gw.IsValid() {
		ip, err := gateway.DiscoverGateway()
		if err != nil {
			return nil, fmt.Errorf("no default gateway to ask for a port mapping: %w", err)
		}
		gw, _ = netip.AddrFromSlice(ip)
		gw = gw.Unmap()
	}
	if !gw.Is4() {
		return nil, errors.New("the default gateway " + gw.String() + " is IPv6: only IPv4 port mapping is done")
	}
	local := route.Source(netip.AddrPortFrom(gw, pcpPort))
	if !local.IsValid() {
		return nil, errors.New("no route to the gateway " + gw.String())
	}
	var errs []string
	for _, m := range []mapper{
		&pcpMapper{gw: gw, local: local, port: l.cfg.Internal, nonce: pcpNonce()},
		&natpmpMapper{gw: gw, local: local, port: l.cfg.Internal},
	} {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		_, _, err := m.mapPort(cctx, l.cfg.Lifetime)
		cancel()
		if err == nil {
			return m, nil
		}
		errs = append(errs, fmt.Sprintf("%s: %v", m.proto(), err))
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout+ssdpWait)
	defer cancel()
	client, _, err := findIGD(cctx, gw, local)
	if err == nil {
		return &upnpMapper{c: client, local: local, port: l.cfg.Internal}, nil
	}
	errs = append(errs, fmt.Sprintf("%s: %v", ProtoUPnP, err))
	return nil, fmt.Errorf("no port mapping from the gateway %s (%s)", gw, strings.Join(errs, "; "))
}

type pcpMapper struct {
	gw, local netip.Addr
	port      uint16
	nonce     [12]byte
}

func (m *pcpMapper) proto() Protocol { return ProtoPCP }

func (m *pcpMapper) mapPort(ctx context.Context, lifetime time.Duration) (netip.AddrPort, time.Duration, error) {
	resp, err := pcpMapPort(ctx, m.gw, m.local, m.nonce, m.port, uint32(lifetime.Seconds()), time.Until(deadlineOf(ctx)))
	if err != nil {
		return netip.AddrPort{}, 0, err
	}
	if resp.result != pcpResultOK {
		return netip.AddrPort{}, 0, errors.New("refused: " + pcpResultName(resp.result))
	}
	return netip.AddrPortFrom(resp.externalIP, resp.externalPort), time.Duration(resp.lifetime) * time.Second, nil
}

func (m *pcpMapper) unmap(ctx context.Context) error {
	resp, err := pcpMapPort(ctx, m.gw, m.local, m.nonce, m.port, 0, time.Until(deadlineOf(ctx)))
	if err == nil && resp.result != pcpResultOK {
		err = errors.New(pcpResultName(resp.result))
	}
	return err
}

type natpmpMapper struct {
	gw, local netip.Addr
	port      uint16
}

func (m *natpmpMapper) proto() Protocol { return ProtoNATPMP }

func (m *natpmpMapper) client(ctx context.Context) *natpmp.Client {
	return natpmp.NewClientWithLocalAndTimeout(m.gw.AsSlice(), m.local.AsSlice(), time.Until(deadlineOf(ctx)))
}

func (m *natpmpMapper) mapPort(ctx context.Context, lifetime time.Duration) (netip.AddrPort, time.Duration, error) {
	c := m.client(ctx)
	ext, err := c.GetExternalAddress()
	if err != nil {
		return netip.AddrPort{}, 0, errors.New(natpmpError(err))
	}
	r, err := c.AddPortMapping("udp", int(m.port), int(m.port), int(lifetime.Seconds()))
	if err != nil {
		return netip.AddrPort{}, 0, err
	}
	return netip.AddrPortFrom(netip.AddrFrom4(ext.ExternalIPAddress), r.MappedExternalPort),
		time.Duration(r.PortMappingLifetimeInSeconds) * time.Second, nil
}

func (m *natpmpMapper) unmap(ctx context.Context) error {
	// RFC 6886 section 3.4: internal port, external port 0, lifetime 0.
	_, err := m.client(ctx).AddPortMapping("udp", int(m.port), 0, 0)
	return err
}

type upnpMapper struct {
	c     igdClient
	local netip.Addr
	port  uint16
}

func (m *upnpMapper) proto() Protocol { return ProtoUPnP }

func (m *upnpMapper) mapPort(ctx context.Context, lifetime time.Duration) (netip.AddrPort, time.Duration, error) {
	ext, err := m.c.GetExternalIPAddressCtx(ctx)
	if err != nil {
		return netip.AddrPort{}, 0, fmt.Errorf("GetExternalIPAddress: %w", err)
	}
	ip, err := netip.ParseAddr(ext)
	if err != nil {
		return netip.AddrPort{}, 0, fmt.Errorf("gateway's external address %q: %w", ext, err)
	}
	secs := uint32(lifetime.Seconds())
	err = m.c.AddPortMappingCtx(ctx, "", m.port, "UDP", m.port, m.local.String(), true, leaseDesc, secs)
	if err != nil && strings.Contains(err.Error(), "725") {
		// OnlyPermanentLeasesSupported (IGDv1): a lease of 0, renewed
		// the same way and deleted on Close.
		secs = 0
		err = m.c.AddPortMappingCtx(ctx, "", m.port, "UDP", m.port, m.local.String(), true, leaseDesc, 0)
	}
	if err != nil {
		return netip.AddrPort{}, 0, fmt.Errorf("AddPortMapping UDP %d: %w", m.port, err)
	}
	life := time.Duration(secs) * time.Second
	if secs == 0 {
		life = lifetime
	}
	return netip.AddrPortFrom(ip, m.port), life, nil
}

func (m *upnpMapper) unmap(ctx context.Context) error {
	return m.c.DeletePortMappingCtx(ctx, "", m.port, "UDP")
}
