// Package icemux puts pion/ice's UDP mux over the tunnel's own socket, so
// that ICE checks and WireGuard share one socket and one NAT mapping, and
// makes it follow the host: the announced host address changes with the
// socket's (followingMux) and an IPv6 socket adds host candidates (the
// dual mux).
//
// It is apart from icepeer because the daemon builds one mux for all its
// peers from the tunnel Bind's sockets, before any peer exists; icepeer
// only hands it to each agent.
package icemux

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/stun/v4"
	"github.com/punchd/punchd/internal/pionlog"
)

// NewUDPMux puts pion's universal UDP mux (host and server-reflexive
// candidates) over conn, normally the tunnel Bind's STUN side: then ICE's
// checks and WireGuard share one socket and therefore one NAT mapping, and
// the address ICE selects is the one WireGuard must send to.
//
// The same mux is passed to every Peer as both WithUDPMux and
// WithUDPMuxSrflx. It routes by remote address after the first packet, so
// there must be one agent per remote peer on it. The caller closes it after
// every Peer using it has stopped.
func NewUDPMux(conn net.PacketConn, logger *slog.Logger) (ice.UniversalUDPMux, error) {
	return NewDualUDPMux(conn, nil, logger)
}

// NewDualUDPMux is NewUDPMux with IPv6 host candidates from conn6 (the
// Bind's STUNConn6) whenever its address is a specific one: the address
// is read at each gathering, so a global IPv6 address the host gets after
// start (or loses) is offered (or withdrawn) at the next ICE restart. A
// nil conn6 leaves ICE on IPv4. Server-reflexive candidates stay IPv4:
// the point of IPv6 here is that it needs no translation, so a
// server-reflexive IPv6 address would be the host candidate again.
func NewDualUDPMux(conn, conn6 net.PacketConn, logger *slog.Logger) (ice.UniversalUDPMux, error) {
	if conn == nil {
		return nil, errors.New("ICE UDP mux: no socket given")
	}
	addr, ok := conn.LocalAddr().(*net.UDPAddr)
	if !ok {
		return nil, fmt.Errorf("ICE UDP mux: socket address %v is not UDP", conn.LocalAddr())
	}
	log := logger
	if log == nil {
		log = slog.Default()
	}
	if addr.IP.IsUnspecified() {
		// The mux then offers every interface's address as a host
		// candidate, our own TUN's included; the Bind should give a
		// specific address.
		log.Warn("ICE UDP mux on an unspecified address: every interface becomes a host candidate", "addr", addr)
	}
	inner := ice.NewUniversalUDPMuxDefault(ice.UniversalUDPMuxParams{
		UDPConn: conn,
		Logger:  pionlog.New(log).NewLogger("udpmux"),
		// pion keeps a server-reflexive address for 25 s by default, so
		// an ICE restart right after our NAT got a new public address
		// (an ISP rebind, a move to another network) would offer the
		// old one again and never find the direct path. Requests in
		// flight are still shared between peers gathering together.
		XORMappedAddrCacheTTL: srflxCacheTTL,
	})
	m := &followingMux{UniversalUDPMux: inner, conn: conn, bound: addr}
	if conn6 != nil {
		a6, ok := conn6.LocalAddr().(*net.UDPAddr)
		if !ok || a6.IP.To4() != nil {
			return nil, fmt.Errorf("ICE UDP mux: IPv6 socket address %v is not IPv6 UDP", conn6.LocalAddr())
		}
		// On the unspecified address (no global IPv6 yet) pion's mux
		// takes any address in GetConn; the candidates' address is
		// ours (GetListenAddresses) either way.
		m.v6 = ice.NewUDPMuxDefault(ice.UDPMuxParams{UDPConn: conn6, Logger: pionlog.New(log).NewLogger("udpmux6")})
		m.conn6, m.bound6 = conn6, a6
		if m.addr6() != nil {
			log.Info("ICE offers IPv6 host candidates", "addr", a6.String())
		} else {
			log.Info("no global IPv6 address yet; ICE offers IPv6 host candidates once there is one")
		}
	}
	return m, nil
}

// srflxCacheTTL is as short as pion allows (zero means its default).
const srflxCacheTTL = time.Nanosecond

// followingMux lets the host candidate follow the host's address. pion's
// mux takes the socket's address once and refuses connections for any
// other, while conn (the Bind's STUN side) reports the address the host
// has now (tunnel.Bind.RefreshLocal after a network change). Gathering asks
// GetListenAddresses for the candidates' address, which is the current
// one; the connections are asked for with the address pion knows. The
// socket itself is bound to the wildcard address, so only what is
// announced changes.
type followingMux struct {
	ice.UniversalUDPMux
	conn  net.PacketConn
	bound *net.UDPAddr // what pion's mux was created with
	// The IPv6 side, nil without: host candidates only.
	v6     *ice.UDPMuxDefault
	conn6  net.PacketConn
	bound6 *net.UDPAddr
}

func (m *followingMux) GetListenAddresses() []net.Addr {
	addrs := []net.Addr{m.conn.LocalAddr()}
	if a := m.addr6(); a != nil {
		addrs = append(addrs, a)
	}
	return addrs
}

// addr6 is the IPv6 host candidates' address now, nil while there is none.
func (m *followingMux) addr6() *net.UDPAddr {
	if m.v6 == nil {
		return nil
	}
	if a, ok := m.conn6.LocalAddr().(*net.UDPAddr); ok && !a.IP.IsUnspecified() && a.IP.To4() == nil {
		return a
	}
	return nil
}

func (m *followingMux) GetConn(ufrag string, addr net.Addr) (net.PacketConn, error) {
	if ua, ok := addr.(*net.UDPAddr); ok && ua.IP.To4() == nil && m.v6 != nil {
		return m.v6.GetConn(ufrag, m.bound6)
	}
	return m.UniversalUDPMux.GetConn(ufrag, m.bound)
}

func (m *followingMux) RemoveConnByUfrag(ufrag string) {
	m.UniversalUDPMux.RemoveConnByUfrag(ufrag)
	if m.v6 != nil {
		m.v6.RemoveConnByUfrag(ufrag)
	}
}

func (m *followingMux) Close() error {
	err := m.UniversalUDPMux.Close()
	if m.v6 != nil {
		err = errors.Join(err, m.v6.Close())
	}
	return err
}

// SrflxOnly is the view for WithUDPMuxSrflx: server-reflexive candidates
// are gathered on the IPv4 address only. icepeer finds it by this method,
// so that it needs no import of this package.
func (m *followingMux) SrflxOnly() ice.UniversalUDPMux { return srflxMux{m} }

type srflxMux struct{ *followingMux }

func (s srflxMux) GetListenAddresses() []net.Addr { return []net.Addr{s.conn.LocalAddr()} }

// errSrflx6 answers pion's server-reflexive gathering toward an IPv6
// STUN server (it pairs every URL with every listen address): the mux's
// listen address is IPv4, and an answer would arrive on the IPv6 socket.
var errSrflx6 = fmt.Errorf("%w: server-reflexive candidates are gathered over IPv4 only", pionlog.ErrExpected)

func (s srflxMux) GetXORMappedAddr(server net.Addr, timeout time.Duration) (*stun.XORMappedAddress, error) {
	return s.GetXORMappedAddrContext(context.Background(), server, timeout)
}

// GetXORMappedAddrContext is what pion calls when the mux has it.
func (s srflxMux) GetXORMappedAddrContext(ctx context.Context, server net.Addr, timeout time.Duration) (*stun.XORMappedAddress, error) {
	if ua, ok := server.(*net.UDPAddr); ok && ua.IP.To4() == nil {
		return nil, errSrflx6
	}
	if c, ok := s.UniversalUDPMux.(interface {
		GetXORMappedAddrContext(context.Context, net.Addr, time.Duration) (*stun.XORMappedAddress, error)
	}); ok {
		return c.GetXORMappedAddrContext(ctx, server, timeout)
	}
	return s.UniversalUDPMux.GetXORMappedAddr(server, timeout)
}

func (m *followingMux) GetConnForURL(ufrag, url string, _ net.Addr) (net.PacketConn, error) {
	return m.UniversalUDPMux.GetConnForURL(ufrag, url, m.bound)
}
