package turnserver

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"syscall"

	"github.com/pion/turn/v5"

	"github.com/punchd/punchd/internal/pionlog"
	"github.com/punchd/punchd/internal/sockbuf"
)

// Realm is the STUN/TURN realm; TURN credentials are bound to it.
const Realm = "punchd"

// ServerConfig configures the embedded STUN/TURN server. Empty listen
// addresses mean "not offered".
type ServerConfig struct {
	STUNListen string // UDP host:port: STUN, and TURN over UDP when TURNSecret is set
	// TURNSecret enables TURN with time-limited credentials in coturn's
	// REST format (username "expiry:id", password base64 HMAC-SHA1 of the
	// username under this secret), as `use-auth-secret` does.
	TURNSecret string
	TCPListen  string // TURN over TCP, host:port (default port 3478)
	TLSListen  string // TURN over TLS, host:port (default port 5349; 443 reaches through most firewalls)
	TLSConfig  *tls.Config
	// RelayIP is the address relays are allocated on and announced with.
	RelayIP netip.Addr
	// AllowPeers lists ranges relaying may reach even though they are
	// loopback, link-local or the server's own (for labs).
	AllowPeers []netip.Prefix
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
	listeners []net.Listener
	turn      *turn.Server
	rfc5780   *responder // nil without an alternate address
	closeOnce sync.Once
	closeErr  error
}

// ListenServer binds the listeners and starts answering.
func ListenServer(cfg ServerConfig) (*Server, error) {
	log := orDefault(cfg.Logger)
	s := &Server{}
	fail := func(err error) (*Server, error) {
		if s.rfc5780 != nil {
			s.rfc5780.closeOwn()
		}
		if s.conn != nil {
			_ = s.conn.Close()
		}
		for _, l := range s.listeners {
			_ = l.Close()
		}
		return nil, err
	}
	raw, err := net.ListenPacket("udp", cfg.STUNListen)
	if err != nil {
		return fail(listenError("STUN", "--stun-listen", cfg.STUNListen, err))
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
		return fail(fmt.Errorf("STUN/TURN socket %s: %w", cfg.STUNListen, err))
	}
	s.conn = conn
	var pionConn net.PacketConn = conn
	if cfg.AltIP.IsValid() {
		r, err := listenRFC5780(conn, cfg.AltIP, cfg.AltPort, log)
		if err != nil {
			return fail(err)
		}
		s.rfc5780 = r
		pionConn = &bindingTap{PacketConn: conn, r: r}
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
		relay = newRelayGenerator(cfg.RelayIP)
		perm = peerFilter(cfg.RelayIP, ownAddrs(), cfg.AllowPeers, log)
	}
	pcc := []turn.PacketConnConfig{{PacketConn: pionConn, RelayAddressGenerator: relay, PermissionHandler: perm}}
	var lcs []turn.ListenerConfig
	if turnOn && cfg.TCPListen != "" {
		ln, err := net.Listen("tcp", cfg.TCPListen)
		if err != nil {
			return fail(listenError("TURN over TCP", "--turn-tcp-listen", cfg.TCPListen, err))
		}
		s.listeners = append(s.listeners, ln)
		lcs = append(lcs, turn.ListenerConfig{Listener: ln, RelayAddressGenerator: relay, PermissionHandler: perm})
	}
	if turnOn && cfg.TLSListen != "" {
		if cfg.TLSConfig == nil {
			return fail(errors.New("TURN over TLS needs a certificate: give --tls-cert and --tls-key"))
		}
		ln, err := tls.Listen("tcp", cfg.TLSListen, cfg.TLSConfig)
		if err != nil {
			return fail(listenError("TURN over TLS", "--turn-tls-listen", cfg.TLSListen, err))
		}
		s.listeners = append(s.listeners, ln)
		lcs = append(lcs, turn.ListenerConfig{Listener: ln, RelayAddressGenerator: relay, PermissionHandler: perm})
	}
	ts, err := turn.NewServer(turn.ServerConfig{
		Realm:             Realm,
		LoggerFactory:     pionlog.New(log),
		AuthHandler:       auth,
		PacketConnConfigs: pcc,
		ListenerConfigs:   lcs,
	})
	if err != nil {
		return fail(fmt.Errorf("start STUN/TURN server on %s: %w", cfg.STUNListen, err))
	}
	s.turn = ts
	addrs := []any{"udp", conn.LocalAddr().String()}
	for _, l := range s.listeners {
		addrs = append(addrs, "stream", l.Addr().String())
	}
	if s.rfc5780 != nil {
		a := s.rfc5780.addrs
		addrs = append(addrs, "rfc5780", fmt.Sprintf("%s %s %s %s", a[0][0], a[0][1], a[1][0], a[1][1]))
	}
	log.Info("STUN/TURN server listening", append(addrs, "turn", turnOn, "relay_ip", cfg.RelayIP.String())...)
	return s, nil
}

func listenError(what, flag, addr string, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%s listen %s: %w; is another punchd rendezvous or coturn running? use %s", what, addr, syscall.EADDRINUSE, flag)
	}
	return fmt.Errorf("%s listen %s: %w (check the %s address)", what, addr, err, flag)
}

// peerFilter keeps a relay from becoming a way into the server's own
// network: no relaying to loopback, link-local, unspecified or multicast
// addresses unless a range is allowed (the server's own address is
// guarded per port by guardedRelay).
func peerFilter(relayIP netip.Addr, own []netip.Addr, allow []netip.Prefix, log *slog.Logger) turn.PermissionHandler {
	log = orDefault(log)
	return func(client net.Addr, peer net.IP) bool {
		ip, ok := netip.AddrFromSlice(peer)
		if !ok {
			return false
		}
		ip = ip.Unmap()
		if slices.ContainsFunc(allow, func(p netip.Prefix) bool { return p.Contains(ip) }) {
			return true
		}
		// The server's own relay address passes here: relay-to-relay is
		// how two UDP-blocked peers meet. guardedRelay then keeps such
		// traffic to other relays' ports.
		if ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() ||
			(ip != relayIP && slices.Contains(own, ip)) {
			log.Info("TURN permission refused", "client", client.String(), "peer", ip.String())
			return false
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

// Addr is the bound UDP address.
func (s *Server) Addr() net.Addr { return s.conn.LocalAddr() }

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
