package turnserver

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/pion/turn/v5"

	"github.com/punchd/punchd/internal/batchconn"
	"github.com/punchd/punchd/internal/pionlog"
	"github.com/punchd/punchd/internal/sockbuf"
)

// Realm is the STUN/TURN realm; TURN credentials are bound to it.
const Realm = "punchd"

// ServerConfig configures the embedded STUN/TURN server. Empty listen
// addresses mean "not offered".
type ServerConfig struct {
	STUNListen string // UDP host:port: STUN, and TURN over UDP when TURNSecret is set
	// STUNListen6 and TCPListen6 are second listeners for STUN and TURN
	// over IPv6 ("[2001:db8::10]:3478"), for when STUNListen and
	// TCPListen are bound to an IPv4 address (RFC 5780 needs that); a
	// wildcard address (":3478") is dual-stack already. Empty: none.
	STUNListen6, TCPListen6 string
	// TURNSecret enables TURN with time-limited credentials in coturn's
	// REST format (username "expiry:id", password base64 HMAC-SHA1 of the
	// username under this secret), as `use-auth-secret` does.
	TURNSecret string
	TCPListen  string // TURN over TCP, host:port (default port 3478)
	TLSListen  string // TURN over TLS, host:port (default port 5349; 443 reaches through most firewalls)
	TLSConfig  *tls.Config
	// TLSListener, instead of TLSListen, is a listener whose connections
	// are TLS with the handshake done: TURN's side of a port shared with
	// signaling (see tlsmux). The Server closes it.
	TLSListener net.Listener
	// RelayIP is the address relays are allocated on and announced with.
	// A client gets an IPv4 relay unless it asks for IPv6 (RFC 6156
	// REQUESTED-ADDRESS-FAMILY), whichever family it reached us over:
	// then every punchd peer's relay candidate pairs with every other's.
	RelayIP netip.Addr
	// RelayIP6 is where IPv6 relays are allocated, for clients that ask
	// for one; invalid: such requests are refused.
	RelayIP6 netip.Addr
	// AllowPeers lists ranges relaying may reach although they are not
	// globally reachable (private, CGNAT, loopback, documentation… see
	// peerrange.go) or the server's own: a LAN, a lab.
	AllowPeers []netip.Prefix
	// UserQuota and IPQuota cap allocations per user (the id in a REST
	// user name) and per client IP (IPv6 per /64); 0 means the defaults.
	UserQuota, IPQuota int
	// STUNRate and STUNBurst shape the token bucket of unauthenticated
	// answers per source (see stunlimit.go); 0 means the defaults.
	STUNRate  float64
	STUNBurst int
	// StreamIdle closes TURN TCP/TLS connections that hold no allocation
	// for this long; 0 means DefaultStreamIdle.
	StreamIdle time.Duration
	// AltIP turns on RFC 5780 (NAT behaviour discovery): Binding requests
	// are answered on STUNListen (which must then name one IP), on its IP
	// with AltPort, and on AltIP with both ports, with OTHER-ADDRESS and
	// RESPONSE-ORIGIN, and CHANGE-REQUEST is honoured. AltPort 0 means
	// the STUN port + 1. Without AltIP plain Binding requests are still
	// answered (by pion/turn), without the RFC 5780 attributes.
	AltIP   netip.Addr
	AltPort int
	Logger  *slog.Logger
}

// Server is the STUN/TURN server of `punchd rendezvous`, a pion/turn
// server: Binding requests need no credentials; allocations need the
// time-limited credentials the rendezvous hands to registered peers.
type Server struct {
	conn      net.PacketConn
	conn6     net.PacketConn // STUNListen6's; nil without
	listeners []net.Listener
	streams   []*streamGuard
	turn      *turn.Server
	rfc5780   *responder // nil without an alternate address
	allocs    *Allocations
	quotas    *quotas
	relays    *relayGenerator // nil without TURN
	stunLimit *stunLimiter
	closeOnce sync.Once
	closeErr  error
}

// ListenServer binds the listeners and starts answering.
func ListenServer(cfg ServerConfig) (*Server, error) {
	log := orDefault(cfg.Logger)
	s := &Server{allocs: newAllocations(log)}
	fail := func(err error) (*Server, error) {
		if s.rfc5780 != nil {
			s.rfc5780.closeOwn()
		}
		for _, c := range []net.PacketConn{s.conn, s.conn6} {
			if c != nil {
				_ = c.Close()
			}
		}
		for _, l := range s.listeners {
			_ = l.Close()
		}
		return nil, err
	}
	conn, err := listenUDP(cfg.STUNListen, "--stun-listen", log)
	if err != nil {
		return fail(err)
	}
	s.conn = conn
	if cfg.STUNListen6 != "" {
		// Port 0 is the primary's: one port for both families, as the
		// rendezvous announces.
		addr6 := samePort(cfg.STUNListen6, conn.LocalAddr())
		c6, err := listenUDP(addr6, "--stun-listen (IPv6)", log)
		if err != nil {
			return fail(err)
		}
		s.conn6 = c6
	}
	s.stunLimit = newSTUNLimiter(cfg.STUNRate, cfg.STUNBurst, log)
	var pionConn net.PacketConn = &limitedConn{PacketConn: conn, lim: s.stunLimit}
	if cfg.AltIP.IsValid() {
		r, err := listenRFC5780(conn, cfg.AltIP, cfg.AltPort, s.stunLimit, log)
		if err != nil {
			return fail(err)
		}
		s.rfc5780 = r
		pionConn = &bindingTap{PacketConn: pionConn, r: r}
	}

	turnOn := cfg.TURNSecret != ""
	auth := rejectAllocations
	var relay turn.RelayAddressGenerator
	var perm turn.PermissionHandler
	if turnOn {
		if !cfg.RelayIP.IsValid() || cfg.RelayIP.IsUnspecified() {
			return fail(errors.New("TURN needs the address relays are reached at: give --relay-ip (the rendezvous host's public address)"))
		}
		auth = turn.LongTermTURNRESTAuthHandler(cfg.TURNSecret, pionlog.New(log).NewLogger("turn-auth"))
		s.relays = newRelayGenerator(cfg.RelayIP, log)
		selves := []netip.Addr{cfg.RelayIP}
		if cfg.RelayIP6.IsValid() {
			if !cfg.RelayIP6.Is6() || cfg.RelayIP6.Is4In6() || cfg.RelayIP6.IsUnspecified() {
				return fail(fmt.Errorf("--relay-ip6 %s is not an IPv6 address of this host", cfg.RelayIP6))
			}
			s.relays.addIPv6(cfg.RelayIP6)
			selves = append(selves, cfg.RelayIP6)
		}
		relay = s.relays
		perm = peerFilter(selves, ownAddrs(), cfg.AllowPeers, log)
		s.quotas = newQuotas(cfg.UserQuota, cfg.IPQuota)
	}
	pcc := []turn.PacketConnConfig{{PacketConn: pionConn, RelayAddressGenerator: relay, PermissionHandler: perm}}
	if s.conn6 != nil {
		// The same limiter: its buckets are per /64 for IPv6 sources.
		pcc = append(pcc, turn.PacketConnConfig{PacketConn: &limitedConn{PacketConn: s.conn6, lim: s.stunLimit}, RelayAddressGenerator: relay, PermissionHandler: perm})
	}
	var lcs []turn.ListenerConfig
	var tcp4 net.Addr // the TCP listener's, for TCPListen6's port 0
	for _, addr := range []string{cfg.TCPListen, cfg.TCPListen6} {
		if !turnOn || addr == "" {
			continue
		}
		if tcp4 != nil {
			addr = samePort(addr, tcp4)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fail(listenError("TURN over TCP", "--turn-tcp-listen", addr, err))
		}
		if tcp4 == nil {
			tcp4 = ln.Addr()
		}
		g := newStreamGuard(ln, cfg.StreamIdle, log)
		s.listeners, s.streams = append(s.listeners, g), append(s.streams, g)
		// Coalesced writes and buffered reads under pion (see batchconn).
		lcs = append(lcs, turn.ListenerConfig{Listener: batchconn.Listener{Listener: g}, RelayAddressGenerator: relay, PermissionHandler: perm})
	}
	if turnOn && cfg.TLSListener != nil {
		s.listeners = append(s.listeners, cfg.TLSListener)
		lcs = append(lcs, turn.ListenerConfig{Listener: cfg.TLSListener, RelayAddressGenerator: relay, PermissionHandler: perm})
	}
	if turnOn && cfg.TLSListen != "" && cfg.TLSListener == nil {
		if cfg.TLSConfig == nil {
			return fail(errors.New("TURN over TLS needs a certificate: give --tls-cert and --tls-key"))
		}
		ln, err := net.Listen("tcp", cfg.TLSListen)
		if err != nil {
			return fail(listenError("TURN over TLS", "--turn-tls-listen", cfg.TLSListen, err))
		}
		s.allocs.addTLS(ln.Addr())
		g := newStreamGuard(ln, cfg.StreamIdle, log)
		s.listeners, s.streams = append(s.listeners, g), append(s.streams, g)
		// Batched above TLS: many frames per record. pion then cannot see
		// a *tls.Conn and lets the handshake happen on the first read,
		// which the idle timer bounds.
		lcs = append(lcs, turn.ListenerConfig{Listener: batchconn.Listener{Listener: tls.NewListener(g, cfg.TLSConfig)}, RelayAddressGenerator: relay, PermissionHandler: perm})
	}
	var quota turn.QuotaHandler
	if s.quotas != nil {
		quota = s.quotas.allow
	}
	ts, err := turn.NewServer(turn.ServerConfig{
		Realm:             Realm,
		LoggerFactory:     pionlog.New(log),
		AuthHandler:       auth,
		QuotaHandler:      quota,
		EventHandler:      s.events(),
		PacketConnConfigs: pcc,
		ListenerConfigs:   lcs,
		// RFC 6156's default: without REQUESTED-ADDRESS-FAMILY a relay
		// is IPv4, also for a client that came over IPv6 (pion would
		// otherwise follow the listener's family).
		StrictAddressFamily: true,
	})
	if err != nil {
		return fail(fmt.Errorf("start STUN/TURN server on %s: %w", cfg.STUNListen, err))
	}
	s.turn = ts
	addrs := []any{"udp", conn.LocalAddr().String()}
	if s.conn6 != nil {
		addrs = append(addrs, "udp6", s.conn6.LocalAddr().String())
	}
	for _, l := range s.listeners {
		addrs = append(addrs, "stream", l.Addr().String())
	}
	if s.rfc5780 != nil {
		a := s.rfc5780.addrs
		addrs = append(addrs, "rfc5780", fmt.Sprintf("%s %s %s %s", a[0][0], a[0][1], a[1][0], a[1][1]))
	}
	log.Info("STUN/TURN server listening", append(addrs, "turn", turnOn, "relay_ip", cfg.RelayIP.String(), "relay_ip6", cfg.RelayIP6.String())...)
	return s, nil
}

// samePort puts the port of bound into addr when addr's port is 0.
func samePort(addr string, bound net.Addr) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port != "0" {
		return addr
	}
	switch b := bound.(type) {
	case *net.UDPAddr:
		return net.JoinHostPort(host, strconv.Itoa(b.Port))
	case *net.TCPAddr:
		return net.JoinHostPort(host, strconv.Itoa(b.Port))
	}
	return addr
}

// listenUDP opens one STUN/TURN UDP socket, with large buffers and the
// batched I/O under pion.
func listenUDP(addr, flag string, log *slog.Logger) (*serverConn, error) {
	raw, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, listenError("STUN", flag, addr, err)
	}
	// Every relayed datagram crosses this socket twice when both peers
	// are relayed; default buffers overflowed at 0.2 Gbit/s.
	if got, err := sockbuf.Set(raw, sockbuf.Size); err != nil || got.Short(sockbuf.Size) {
		log.Info("STUN/TURN socket buffers are small; relayed traffic will drop under load: "+sockbuf.Advice, "recv", got.Recv, "send", got.Send, "err", err)
	}
	// Batched reads and GSO writes under pion (see serverconn.go).
	conn, err := newServerConn(raw.(*net.UDPConn), log)
	if err != nil {
		_ = raw.Close()
		return nil, fmt.Errorf("STUN/TURN socket %s: %w", addr, err)
	}
	return conn, nil
}

// events follows allocations for the quotas and the idle timers of
// TCP/TLS connections.
func (s *Server) events() turn.EventHandler {
	return turn.EventHandler{
		OnAllocationCreated: func(src, dst net.Addr, proto, user, realm string, relay net.Addr, port int) {
			s.allocs.created(src, dst, user, relay)
			if s.quotas != nil {
				s.quotas.created(src, dst, proto, user, realm, relay, port)
			}
			for _, g := range s.streams {
				g.allocated(src, dst)
			}
		},
		OnAllocationDeleted: func(src, dst net.Addr, proto, user, realm string) {
			s.allocs.deleted()
			if s.quotas != nil {
				s.quotas.deleted(src, dst, proto, user, realm)
			}
			for _, g := range s.streams {
				g.released(src, dst)
			}
		},
		OnAllocationError: func(src, dst net.Addr, proto, msg string) {
			if s.quotas != nil {
				s.quotas.failed(src, dst, proto, msg)
			}
		},
	}
}

func listenError(what, flag, addr string, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%s listen %s: %w; is another punchd rendezvous or coturn running? use %s", what, addr, syscall.EADDRINUSE, flag)
	}
	return fmt.Errorf("%s listen %s: %w (check the %s address)", what, addr, err, flag)
}

// peerFilter keeps a relay from becoming a way into the server's own
// network: no relaying to ranges that are not globally reachable (see
// peerrange.go) nor to the server's other addresses, unless a range is
// allowed. The relay address itself passes (relay-to-relay is how two
// UDP-blocked peers meet) and guardedRelay keeps such traffic to the
// relay port range. Refusals are logged at most once a minute.
func peerFilter(relayIPs []netip.Addr, own []netip.Addr, allow []netip.Prefix, log *slog.Logger) turn.PermissionHandler {
	log = orDefault(log)
	var mu sync.Mutex
	var lastLog time.Time
	refused := 0
	refuse := func(client net.Addr, ip netip.Addr, why string) bool {
		mu.Lock()
		defer mu.Unlock()
		refused++
		if now := time.Now(); now.Sub(lastLog) >= time.Minute {
			lastLog = now
			log.Info("TURN permission refused (allow a range with --turn-allow-peers)", "client", client.String(), "peer", ip.String(), "range", why, "refused", refused)
		}
		return false
	}
	return func(client net.Addr, peer net.IP) bool {
		ip, ok := netip.AddrFromSlice(peer)
		if !ok {
			return false
		}
		ip = ip.Unmap()
		if slices.ContainsFunc(allow, func(p netip.Prefix) bool { return p.Contains(ip) }) || slices.Contains(relayIPs, ip) {
			return true
		}
		if slices.Contains(own, ip) {
			return refuse(client, ip, "this server's own address")
		}
		if why, denied := deniedPeer(ip); denied {
			return refuse(client, ip, why)
		}
		return true
	}
}

// rejectAllocations is the AuthHandler without a TURN secret: pion asks
// it only for authenticated requests (Allocate and friends), never for
// Binding, so STUN keeps working and nobody gets a relay.
func rejectAllocations(*turn.RequestAttributes) (string, []byte, bool) {
	return "", nil, false
}

// Allocations counts and logs the server's TURN allocations.
func (s *Server) Allocations() *Allocations { return s.allocs }

// Relayed is the payload relayed by TURN allocations since start (zero
// without TURN).
func (s *Server) Relayed() RelayedBytes {
	if s.relays == nil {
		return RelayedBytes{}
	}
	return s.relays.relayed()
}

// Refusal causes of Refused.
const (
	RefusedQuota = "turn-quota"        // Allocate over the per-user or per-IP quota (486)
	RefusedSTUN  = "stun-rate-limited" // STUN answer not sent: over the per-source rate
)

// Refused counts requests the server refused since start, by cause.
func (s *Server) Refused() map[string]uint64 {
	out := map[string]uint64{RefusedSTUN: s.stunLimit.Refused()}
	if s.quotas != nil {
		out[RefusedQuota] = s.quotas.refused.Load()
	}
	return out
}

// Addr is the bound UDP address.
func (s *Server) Addr() net.Addr { return s.conn.LocalAddr() }

// Addr6 is the bound address of the IPv6 UDP socket, nil without one.
func (s *Server) Addr6() net.Addr {
	if s.conn6 == nil {
		return nil
	}
	return s.conn6.LocalAddr()
}

// OtherAddr is the RFC 5780 alternate address (alternate IP and port), nil
// when RFC 5780 is off.
func (s *Server) OtherAddr() net.Addr {
	if s.rfc5780 == nil {
		return nil
	}
	return net.UDPAddrFromAddrPort(s.rfc5780.addrs[1][1])
}

// Close stops the server; idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.closeErr = s.turn.Close()
		if s.rfc5780 != nil {
			s.rfc5780.closeOwn()
		}
	})
	return s.closeErr
}

// ownAddrs lists this host's interface addresses.
func ownAddrs() []netip.Addr {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range addrs {
		if pn, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(pn.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out
}
