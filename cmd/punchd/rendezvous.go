package main

import (
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/punchd/punchd/internal/daemon"
	"github.com/punchd/punchd/internal/turnserver"
)

func newRendezvousCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rendezvous",
		Short: "Run the meeting point: signaling (WebSocket), STUN and TURN in one process",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := loadSettings(cmd)
			if err != nil {
				return err
			}
			log, err := s.logger(os.Stderr)
			if err != nil {
				return err
			}
			turnSecret, warnings, err := s.secret(cmd, "turn-secret")
			if err != nil {
				return err
			}
			for _, w := range warnings {
				log.Warn(w)
			}
			cfg := daemon.RendezvousConfig{
				Listen:        s.str("listen"),
				STUNListen:    s.str("stun-listen"),
				TLSCert:       s.str("tls-cert"),
				TLSKey:        s.str("tls-key"),
				NoTURN:        s.v.GetBool("no-turn"),
				TURNSecret:    turnSecret,
				TURNTCPListen: s.str("turn-tcp-listen"),
				TURNTLSListen: s.str("turn-tls-listen"),
				DebugListen:   s.str("debug-listen"),
				UserQuota:     s.v.GetInt("turn-user-quota"),
				IPQuota:       s.v.GetInt("turn-ip-quota"),
				STUNRate:      s.v.GetFloat64("stun-rate"),
				STUNBurst:     s.v.GetInt("stun-burst"),
				MetricsListen: s.str("metrics-listen"),
				Logger:        log,

				WebOrigins:       s.list("web-origin"),
				WebAPIKeyFile:    s.str("web-api-key-file"),
				WebCredentialTTL: s.v.GetDuration("web-credential-ttl"),
			}
			if cfg.UserQuota < 1 || cfg.IPQuota < 1 || cfg.STUNRate <= 0 || cfg.STUNBurst < 1 {
				return fmt.Errorf("bad limits: --turn-user-quota %d, --turn-ip-quota %d, --stun-rate %g and --stun-burst %d must all be positive",
					cfg.UserQuota, cfg.IPQuota, cfg.STUNRate, cfg.STUNBurst)
			}
			if ip := s.str("relay-ip"); ip != "" {
				if cfg.RelayIP, err = netip.ParseAddr(ip); err != nil {
					return fmt.Errorf("bad --relay-ip %q: %w", ip, err)
				}
			}
			switch ip6 := s.str("relay-ip6"); ip6 {
			case "auto":
				cfg.IPv6Auto = true
			case "none", "off", "":
			default:
				if cfg.RelayIP6, err = netip.ParseAddr(ip6); err != nil || !cfg.RelayIP6.Is6() || cfg.RelayIP6.Is4In6() {
					return fmt.Errorf("bad --relay-ip6 %q: want an IPv6 address of this host, auto or none", ip6)
				}
			}
			switch alt := s.str("stun-alt-ip"); alt {
			case "auto":
				cfg.STUNAltAuto = true
			case "none", "off", "":
			default:
				if cfg.STUNAltIP, err = netip.ParseAddr(alt); err != nil {
					return fmt.Errorf("bad --stun-alt-ip %q: %w (an IP of this host, auto or none)", alt, err)
				}
			}
			if cfg.STUNAltPort = s.v.GetInt("stun-alt-port"); cfg.STUNAltPort < 0 || cfg.STUNAltPort > 65535 {
				return fmt.Errorf("bad --stun-alt-port %d: use 1..65535, or 0 for the STUN port + 1", cfg.STUNAltPort)
			}
			for _, p := range s.list("turn-allow-peers") {
				pfx, err := netip.ParsePrefix(p)
				if err != nil {
					return fmt.Errorf("bad --turn-allow-peers %q: %w (e.g. 127.0.0.0/8)", p, err)
				}
				cfg.AllowPeers = append(cfg.AllowPeers, pfx)
			}
			return daemon.RunRendezvous(cmd.Context(), cfg)
		},
	}
	fs := cmd.Flags()
	addCommonFlags(fs)
	fs.String("listen", ":8478", "signaling listen address (HTTP/WebSocket), host:port")
	fs.String("stun-listen", ":3478", "STUN listen address (UDP), host:port; empty disables STUN")
	fs.String("stun-alt-ip", "auto", "RFC 5780 alternate address, so `punchd nat` can tell mapping from filtering: an IP of this host, auto (a second global address when there is one) or none")
	fs.Int("stun-alt-port", 0, "RFC 5780 alternate port (0: the STUN port + 1)")
	fs.String("tls-cert", "", "TLS certificate file: serve https/wss instead of http/ws, and TURN over TLS")
	fs.String("tls-key", "", "TLS private key file")
	fs.Bool("no-turn", false, "do not run the TURN relay (STUN only)")
	fs.String("turn-secret", "", "TURN shared secret (coturn REST format); default: random per start; visible in ps: prefer --turn-secret-file or PUNCHD_TURN_SECRET")
	fs.String("turn-secret-file", "", "file holding the TURN shared secret (mode 0600), e.g. the one coturn's static-auth-secret has")
	fs.String("turn-tcp-listen", "", "TURN over TCP listen address (default: the --stun-listen address over TCP)")
	fs.String("turn-tls-listen", "", "TURN over TLS listen address (default :5349 when --tls-cert is given); the --listen address (e.g. :443 for both) shares one TLS port with signaling, for networks that pass only HTTPS")
	fs.String("relay-ip", "", "address relays are announced at (default: the --stun-listen IP, else the default route's source)")
	fs.String("relay-ip6", "auto", "IPv6 address STUN and TURN are also served and announced at, and IPv6 relays allocated on: an address of this host, auto (the IPv6 default route's source when global) or none (IPv4 only)")
	fs.StringSlice("turn-allow-peers", nil, "ranges relays may reach although not globally reachable (private, CGNAT, ULA, loopback, documentation…; denied by default), e.g. 192.168.0.0/16 for a LAN")
	fs.Int("turn-user-quota", turnserver.DefaultUserQuota, "TURN allocations one user (peer ID) may hold at once")
	fs.Int("turn-ip-quota", turnserver.DefaultIPQuota, "TURN allocations one client IP (IPv6: /64) may hold at once")
	fs.Float64("stun-rate", turnserver.DefaultSTUNRate, "unauthenticated STUN answers per second per source IP (reflection bound)")
	fs.Int("stun-burst", turnserver.DefaultSTUNBurst, "burst of unauthenticated STUN answers per source IP")
	fs.StringSlice("web-origin", nil, "origin of a web app's pages (e.g. https://game.example; repeatable) that may fetch TURN credentials at /turn-credentials and use PeerJS signaling at /peerjs; both are off without it")
	fs.String("web-api-key-file", "", "file of API keys (one a line) for server-side callers of /turn-credentials (Authorization: Bearer KEY)")
	fs.Duration("web-credential-ttl", 10*time.Minute, "lifetime of the TURN credentials /turn-credentials hands out")
	fs.String("debug-listen", "", "serve Go's pprof profiles on this address (e.g. 127.0.0.1:6060); off by default")
	fs.String("metrics-listen", "", "serve Prometheus metrics on this address at /metrics (e.g. 127.0.0.1:9478); off by default")
	return cmd
}
