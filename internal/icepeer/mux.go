package icepeer

import (
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/pion/ice/v4"
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
	if conn == nil {
		return nil, errors.New("ICE UDP mux: no socket given")
	}
	addr, ok := conn.LocalAddr().(*net.UDPAddr)
	if !ok {
		return nil, fmt.Errorf("ICE UDP mux: socket address %v is not UDP", conn.LocalAddr())
	}
	log := orDefault(logger)
	if addr.IP.IsUnspecified() {
		// The mux then offers every interface's address as a host
		// candidate, our own TUN's included; the Bind should give a
		// specific address.
		log.Warn("ICE UDP mux on an unspecified address: every interface becomes a host candidate", "addr", addr)
	}
	return ice.NewUniversalUDPMuxDefault(ice.UniversalUDPMuxParams{
		UDPConn: conn,
		Logger:  pionlog.New(log).NewLogger("udpmux"),
	}), nil
}
