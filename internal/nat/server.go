package nat

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"syscall"

	"github.com/pion/turn/v5"
)

// realm is the STUN/TURN realm; TURN credentials will be bound to it.
const realm = "punchd"

// ServerConfig configures the embedded STUN server. TURN (relay listeners
// over UDP/TCP/TLS, the shared secret for time-limited credentials, the
// relay address) will join here as more fields; empty means "not offered".
type ServerConfig struct {
	STUNListen string // UDP host:port, e.g. "0.0.0.0:3478"
	Logger     *slog.Logger
}

// Server is the STUN server of `punchd rendezvous`. It is a pion/turn
// server: Binding requests need no credentials, so it answers them, and
// for now it refuses every allocation.
type Server struct {
	conn      net.PacketConn
	turn      *turn.Server
	closeOnce sync.Once
	closeErr  error
}

// ListenServer binds cfg.STUNListen and starts answering.
func ListenServer(cfg ServerConfig) (*Server, error) {
	log := orDefault(cfg.Logger)
	conn, err := net.ListenPacket("udp", cfg.STUNListen)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("STUN listen %s: %w; is another punchd rendezvous or coturn running? use --stun-listen", cfg.STUNListen, syscall.EADDRINUSE)
		}
		return nil, fmt.Errorf("STUN listen %s: %w (check the --stun-listen address)", cfg.STUNListen, err)
	}
	ts, err := turn.NewServer(turn.ServerConfig{
		Realm:         realm,
		LoggerFactory: loggerFactory{log},
		AuthHandler:   rejectAllocations,
		// No RelayAddressGenerator: this listener answers STUN only.
		PacketConnConfigs: []turn.PacketConnConfig{{PacketConn: conn}},
	})
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("start STUN server on %s: %w", cfg.STUNListen, err)
	}
	log.Info("STUN server listening", "addr", conn.LocalAddr().String())
	return &Server{conn: conn, turn: ts}, nil
}

// rejectAllocations is the AuthHandler until TURN credentials exist: pion
// asks it only for authenticated requests (Allocate and friends), never
// for Binding, so STUN keeps working and nobody gets a relay.
func rejectAllocations(*turn.RequestAttributes) (string, []byte, bool) {
	return "", nil, false
}

// Addr is the bound UDP address.
func (s *Server) Addr() net.Addr { return s.conn.LocalAddr() }

// Close stops the server; idempotent. The turn server closes the socket,
// which ends its read loop.
func (s *Server) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.turn.Close() })
	return s.closeErr
}
