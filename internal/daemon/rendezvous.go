package daemon

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"syscall"
	"time"

	"github.com/punchd/punchd/internal/fdlimit"
	"github.com/punchd/punchd/internal/metrics"
	"github.com/punchd/punchd/internal/rendezvous"
	"github.com/punchd/punchd/internal/route"
	"github.com/punchd/punchd/internal/sdnotify"
	"github.com/punchd/punchd/internal/tlsmux"
	"github.com/punchd/punchd/internal/turnserver"
)

// RendezvousConfig is what `punchd rendezvous` needs: one process serving
// signaling, STUN and TURN.
type RendezvousConfig struct {
	Listen     string // signaling HTTP(S)/WebSocket, host:port
	STUNListen string // UDP host:port; empty disables the embedded STUN server
	TLSCert    string // both set: serve wss:// (https://) and TURN over TLS
	TLSKey     string
	// TURN relay: on unless NoTURN. Secret: shared with an external coturn
	// if wanted; random per process otherwise (only we hand out creds).
	NoTURN        bool
	TURNSecret    string
	TURNTCPListen string // default: the STUN port over TCP
	TURNTLSListen string // default :5349 when a certificate is given
	RelayIP       netip.Addr
	// IPv6: RelayIP6 is this host's global IPv6 address, where STUN and
	// TURN are also served and announced (a second listener when the
	// --stun-listen address is IPv4), and IPv6 relays are allocated;
	// with IPv6Auto it is the IPv6 default route's source when global.
	// Neither: IPv4 only.
	RelayIP6   netip.Addr
	IPv6Auto   bool
	AllowPeers []netip.Prefix
	// TURN quotas and the STUN reflection bound; 0 means the defaults.
	UserQuota, IPQuota int
	STUNRate           float64
	STUNBurst          int
	// RFC 5780 (what `punchd nat` needs to tell mapping from filtering):
	// STUNAltIP is the alternate address; with STUNAltAuto a second
	// global address of the host is used when there is one. STUNAltPort
	// 0 is the STUN port + 1.
	STUNAltIP   netip.Addr
	STUNAltAuto bool
	STUNAltPort int
	// Web apps: WebOrigins is the allowlist of page origins that may use
	// /turn-credentials and the PeerJS signaling at /peerjs (both off
	// without it); WebAPIKeyFile holds keys for server-side callers of
	// /turn-credentials; WebCredentialTTL is their lifetime (default 10 min).
	WebOrigins       []string
	WebAPIKeyFile    string
	WebCredentialTTL time.Duration
	// DebugListen, when set, serves net/http/pprof there.
	DebugListen string
	// MetricsListen, when set, serves Prometheus metrics there (/metrics).
	MetricsListen string
	Logger        *slog.Logger
	// Ready, when set, is called once every listener is open, with the
	// signaling address actually bound (useful with port 0 in tests).
	Ready func(signal net.Addr)
}

// RunRendezvous serves until ctx is done, then shuts down cleanly.
func RunRendezvous(ctx context.Context, cfg RendezvousConfig) error {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	fdLimit, err := fdlimit.Raise()
	if err != nil {
		log.Warn("could not raise the open-file limit; the rendezvous holds fewer peers", "limit", fdLimit, "err", err)
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return errors.New("TLS needs both --tls-cert and --tls-key")
	}
	var tlsConfig *tls.Config
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return fmt.Errorf("load TLS certificate %s / key %s: %w", cfg.TLSCert, cfg.TLSKey, err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if cfg.DebugListen != "" {
		stopDebug, err := serveDebug(cfg.DebugListen, log)
		if err != nil {
			return err
		}
		defer stopDebug()
	}
	// Signaling and TURN over TLS on one port (443 for networks that let
	// nothing else out): one TLS listener, dispatched after the handshake.
	var shared *tlsmux.Mux
	if tlsConfig != nil && !cfg.NoTURN && cfg.STUNListen != "" && sameListen(cfg.Listen, cfg.TURNTLSListen) {
		ln, err := listenSignaling(cfg.Listen)
		if err != nil {
			return err
		}
		// The connection cap counts TCP connections of both services
		// on the shared port, before TLS.
		ln = rendezvous.LimitListener(ln, rendezvous.HTTPLimits{MaxConns: fdlimit.ConnCap(fdLimit)})
		if shared, err = tlsmux.New(ln, tlsmux.Config{TLS: tlsConfig, Logger: log.With("component", "tls-port")}); err != nil {
			ln.Close()
			return err
		}
		defer shared.Close()
	}
	stunPort := 0
	var ip6 netip.Addr // where STUN/TURN are announced over IPv6; none: IPv4 only
	var turnCfg *rendezvous.TURNConfig
	var allocs *turnserver.Allocations
	// Without an embedded STUN/TURN server (--no-stun) these count nothing.
	relayed := func() turnserver.RelayedBytes { return turnserver.RelayedBytes{} }
	stunRefused := func() map[string]uint64 { return nil }
	if cfg.STUNListen != "" {
		scfg := turnserver.ServerConfig{STUNListen: cfg.STUNListen, Logger: log.With("component", "stun-turn"),
			UserQuota: cfg.UserQuota, IPQuota: cfg.IPQuota, STUNRate: cfg.STUNRate, STUNBurst: cfg.STUNBurst}
		if !cfg.NoTURN {
			secret := cfg.TURNSecret
			if secret == "" {
				secret = rand.Text()
			}
			relayIP, err := relayAddress(cfg)
			if err != nil {
				return err
			}
			scfg.TURNSecret, scfg.RelayIP, scfg.AllowPeers = secret, relayIP, cfg.AllowPeers
			scfg.TCPListen = cfg.TURNTCPListen
			if scfg.TCPListen == "" {
				scfg.TCPListen = cfg.STUNListen
			}
			tlsPort := 0
			switch {
			case shared != nil:
				scfg.TLSListener = shared.Listener(tlsmux.ProtoTURN)
				tlsPort = shared.Addr().(*net.TCPAddr).Port
			case tlsConfig != nil:
				scfg.TLSListen, scfg.TLSConfig = cfg.TURNTLSListen, tlsConfig
				if scfg.TLSListen == "" {
					scfg.TLSListen = ":5349"
				}
				tlsPort = portOf(scfg.TLSListen)
			}
			turnCfg = &rendezvous.TURNConfig{Secret: secret, UDPPort: portOf(scfg.STUNListen), TCPPort: portOf(scfg.TCPListen), TLSPort: tlsPort}
		}
		listen, alt, err := rfc5780Plan(cfg)
		if err != nil {
			return err
		}
		scfg.STUNListen, scfg.AltIP, scfg.AltPort = listen, alt, cfg.STUNAltPort
		if ip6 = ipv6Address(cfg); ip6.IsValid() {
			explicit := cfg.RelayIP6.IsValid()
			var ok bool
			if scfg.STUNListen6, ok = secondListen6(listen, ip6, explicit); !ok {
				ip6 = netip.Addr{}
			} else if !cfg.NoTURN {
				scfg.RelayIP6 = ip6
				if cfg.TURNTCPListen == "" {
					scfg.TCPListen6, _ = secondListen6(scfg.TCPListen, ip6, explicit)
				}
			}
		}
		stun, err := turnserver.ListenServer(scfg)
		if err != nil && cfg.IPv6Auto && (scfg.STUNListen6 != "" || scfg.TCPListen6 != "") {
			// A detected IPv6 address is a guess too.
			log.Warn("STUN/TURN over IPv6 off: the detected IPv6 address cannot be used (give --relay-ip6 or --relay-ip6 none)", "relay_ip6", ip6.String(), "err", err)
			ip6, scfg.STUNListen6, scfg.TCPListen6, scfg.RelayIP6 = netip.Addr{}, "", "", netip.Addr{}
			stun, err = turnserver.ListenServer(scfg)
		}
		if err != nil && cfg.STUNAltAuto && alt.IsValid() {
			// A detected address is a guess; it must not stop the server.
			log.Warn("RFC 5780 off: the detected alternate address cannot be used (give --stun-alt-ip or --stun-alt-ip none)", "alt_ip", alt.String(), "err", err)
			scfg.STUNListen, scfg.AltIP = cfg.STUNListen, netip.Addr{}
			if ip6.IsValid() {
				var ok bool
				if scfg.STUNListen6, ok = secondListen6(cfg.STUNListen, ip6, cfg.RelayIP6.IsValid()); !ok {
					ip6, scfg.RelayIP6, scfg.TCPListen6 = netip.Addr{}, netip.Addr{}, ""
				}
			}
			stun, err = turnserver.ListenServer(scfg)
		}
		if err != nil {
			return err
		}
		defer stun.Close()
		allocs = stun.Allocations()
		relayed, stunRefused = stun.Relayed, stun.Refused
		if ua, ok := stun.Addr().(*net.UDPAddr); ok {
			stunPort = ua.Port
			if turnCfg != nil && turnCfg.UDPPort == 0 {
				turnCfg.UDPPort = ua.Port
			}
		}
	}

	srv := rendezvous.NewServer(rendezvous.ServerConfig{
		Logger:   log.With("component", "signaling"),
		STUNPort: stunPort,
		TURN:     turnCfg,
		Addr4:    announce4(cfg),
		Addr6:    ip6,
	})
	defer srv.Close()
	web, err := newWebApps(cfg, srv.Handler(), stunPort, turnCfg, log)
	if err != nil {
		return err
	}
	defer web.Close()
	if cfg.MetricsListen != "" {
		stopMetrics, err := serveRendezvousMetrics(cfg.MetricsListen, func() metrics.RendezvousSample {
			st := srv.Stats()
			s := metrics.RendezvousSample{Online: st.Online, FramesDropped: st.Dropped, FramesIn: st.FramesIn, FramesOut: st.FramesOut,
				PeerJSOnline: web.PeerJSOnline(), Rejected: web.Rejected()}
			for _, m := range []map[string]uint64{st.Junk, stunRefused()} {
				for cause, n := range m {
					s.Rejected[cause] += n
				}
			}
			if allocs != nil {
				s.TURNAllocations, s.TURNAllocationsTotal = allocs.Active(), allocs.Total()
			}
			r := relayed()
			s.RelayedToPeers, s.RelayedFromPeers = r.ToPeers, r.FromPeers
			return s
		}, log.With("component", "metrics"))
		if err != nil {
			return err
		}
		defer stopMetrics()
	}

	var ln net.Listener
	if shared != nil {
		ln = shared.Listener(tlsmux.ProtoHTTP) // TLS already
	} else {
		var err error
		if ln, err = listenSignaling(cfg.Listen); err != nil {
			return err
		}
	}
	limits := rendezvous.HTTPLimits{MaxConns: fdlimit.ConnCap(fdLimit)}
	hs := rendezvous.NewHTTPServer(web.Handler, limits)
	// The cap counts TCP connections, before TLS: a stalled TLS
	// handshake holds a slot as any connection does. (The shared port's
	// listener is capped already.)
	if shared == nil {
		ln = rendezvous.LimitListener(ln, limits)
	}
	errc := make(chan error, 1)
	scheme := "http"
	go func() {
		if tlsConfig != nil && shared == nil {
			errc <- hs.Serve(tls.NewListener(ln, tlsConfig))
			return
		}
		errc <- hs.Serve(ln)
	}()
	if cfg.TLSCert != "" {
		scheme = "https"
	}
	log.Info("rendezvous listening", "url", scheme+"://"+ln.Addr().String(), "stun_port", stunPort,
		"max_conns", fdlimit.ConnCap(fdLimit), "fd_limit", fdLimit, "turn_tls_same_port", shared != nil)
	if cfg.Ready != nil {
		cfg.Ready(ln.Addr())
	}
	notifySystemd(log, sdnotify.Ready)
	defer notifySystemd(log, sdnotify.Stopping)

	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("signaling server: %w", err)
		}
	}
	log.Info("rendezvous shutting down")
	// WebSockets are hijacked connections: Shutdown does not wait for them,
	// srv.Close (deferred) ends them.
	shutCtx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_ = hs.Shutdown(shutCtx)
	return nil
}

// relayAddress is where relays are announced: --relay-ip, else the STUN
// listen address when it is a specific one, else the source address of the
// default route.
func relayAddress(cfg RendezvousConfig) (netip.Addr, error) {
	if cfg.RelayIP.IsValid() {
		return cfg.RelayIP, nil
	}
	if host, _, err := net.SplitHostPort(cfg.STUNListen); err == nil {
		if ip, err := netip.ParseAddr(host); err == nil && !ip.IsUnspecified() {
			return ip, nil
		}
	}
	if a := route.DefaultSource(); a.IsValid() {
		return a, nil
	}
	return netip.Addr{}, errors.New("cannot tell which address relays are reached at: give --relay-ip (the rendezvous host's public address) or --no-turn")
}

// ipv6Address is this host's IPv6 address for STUN and TURN: --relay-ip6,
// else (auto) the IPv6 default route's source when it is global.
func ipv6Address(cfg RendezvousConfig) netip.Addr {
	if cfg.RelayIP6.IsValid() {
		return cfg.RelayIP6
	}
	if !cfg.IPv6Auto {
		return netip.Addr{}
	}
	if a := route.DefaultSource6(); a.IsGlobalUnicast() && !a.IsPrivate() {
		return a
	}
	return netip.Addr{}
}

// secondListen6 is the IPv6 listener beside listen, and whether IPv6 is
// served at all: none needed ("", true) when listen is dual-stack already
// (":3478", "[::]:3478"); "[ip6]:port" when listen is bound to an IPv4
// address and IPv6 was asked for (explicit) or that address is meant for
// the world (global, or the IPv4 wildcard); ("", false) otherwise: a
// rendezvous on loopback or a LAN address does not open itself to the
// internet over IPv6 unasked.
func secondListen6(listen string, ip6 netip.Addr, explicit bool) (string, bool) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil || !ip6.IsValid() {
		return "", false
	}
	if host == "" || host == "::" {
		return "", true
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.Is4() {
		return "", false
	}
	if !explicit && !ip.IsUnspecified() && (!ip.IsGlobalUnicast() || ip.IsPrivate()) {
		return "", false
	}
	return net.JoinHostPort(ip6.String(), port), true
}

// announce4 is the IPv4 address STUN/TURN are announced at to a client
// that reached the rendezvous over IPv6: --relay-ip, else the STUN listen
// address (or the default route's source) when it is IPv4.
func announce4(cfg RendezvousConfig) netip.Addr {
	if a, err := relayAddress(cfg); err == nil && a.Is4() {
		return a
	}
	return netip.Addr{}
}

// rfc5780Plan decides the STUN listen address and the RFC 5780 alternate
// IP. RFC 5780 answers must leave from the address they describe, so the
// primary socket is then bound to one IP: the --stun-listen IP, else the
// relay address (--relay-ip or the default route's source).
func rfc5780Plan(cfg RendezvousConfig) (listen string, alt netip.Addr, _ error) {
	if !cfg.STUNAltIP.IsValid() && !cfg.STUNAltAuto {
		return cfg.STUNListen, netip.Addr{}, nil
	}
	host, port, err := net.SplitHostPort(cfg.STUNListen)
	if err != nil {
		return "", netip.Addr{}, fmt.Errorf("bad --stun-listen %q: %w (e.g. :3478 or 203.0.113.10:3478)", cfg.STUNListen, err)
	}
	primary, err := netip.ParseAddr(host)
	if err != nil || primary.IsUnspecified() {
		if primary, err = relayAddress(cfg); err != nil {
			if cfg.STUNAltAuto {
				return cfg.STUNListen, netip.Addr{}, nil
			}
			return "", netip.Addr{}, fmt.Errorf("RFC 5780 needs the primary STUN address: give --stun-listen IP:PORT: %w", err)
		}
	}
	alt = cfg.STUNAltIP
	if cfg.STUNAltAuto {
		if alt = turnserver.DetectAltIP(primary); !alt.IsValid() {
			return cfg.STUNListen, netip.Addr{}, nil
		}
	}
	return net.JoinHostPort(primary.String(), port), alt, nil
}

func listenSignaling(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("signaling listen %s: %w; is another punchd rendezvous running? use --listen", addr, err)
		}
		return nil, fmt.Errorf("signaling listen %s: %w", addr, err)
	}
	return ln, nil
}

// sameListen reports whether two listen addresses name the same TCP
// port on overlapping addresses (then they must share one listener).
func sameListen(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	ha, pa, err1 := net.SplitHostPort(a)
	hb, pb, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil || pa != pb || pa == "0" {
		return false
	}
	wild := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return ha == hb || wild(ha) || wild(hb)
}

func portOf(hostport string) int {
	if hostport == "" {
		return 0
	}
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}
