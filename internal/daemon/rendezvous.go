package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/punchd/punchd/internal/nat"
	"github.com/punchd/punchd/internal/rendezvous"
)

// RendezvousConfig is what `punchd rendezvous` needs: one process serving
// signaling and STUN (and, later, TURN).
type RendezvousConfig struct {
	Listen     string // signaling HTTP(S)/WebSocket, host:port
	STUNListen string // UDP host:port; empty disables the embedded STUN server
	TLSCert    string // both set: serve wss:// (https://) instead of ws://
	TLSKey     string
	Logger     *slog.Logger
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
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return errors.New("TLS needs both --tls-cert and --tls-key")
	}
	stunPort := 0
	if cfg.STUNListen != "" {
		stun, err := nat.ListenServer(nat.ServerConfig{STUNListen: cfg.STUNListen, Logger: log.With("component", "stun")})
		if err != nil {
			return err
		}
		defer stun.Close()
		if ua, ok := stun.Addr().(*net.UDPAddr); ok {
			stunPort = ua.Port
		}
		log.Info("STUN listening", "addr", stun.Addr().String())
	}

	srv := rendezvous.NewServer(rendezvous.ServerConfig{
		Logger:   log.With("component", "signaling"),
		STUNPort: stunPort,
	})
	defer srv.Close()

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("signaling listen %s: %w; is another punchd rendezvous running? use --listen", cfg.Listen, err)
		}
		return fmt.Errorf("signaling listen %s: %w", cfg.Listen, err)
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	scheme := "http"
	go func() {
		if cfg.TLSCert != "" {
			errc <- hs.ServeTLS(ln, cfg.TLSCert, cfg.TLSKey)
			return
		}
		errc <- hs.Serve(ln)
	}()
	if cfg.TLSCert != "" {
		scheme = "https"
	}
	log.Info("rendezvous listening", "url", scheme+"://"+ln.Addr().String(), "stun_port", stunPort)
	if cfg.Ready != nil {
		cfg.Ready(ln.Addr())
	}

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
