package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/punchd/punchd/internal/daemon"
)

func newRendezvousCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rendezvous",
		Short: "Run the meeting point: signaling (WebSocket) and STUN in one process",
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
			return daemon.RunRendezvous(cmd.Context(), daemon.RendezvousConfig{
				Listen:     s.str("listen"),
				STUNListen: s.str("stun-listen"),
				TLSCert:    s.str("tls-cert"),
				TLSKey:     s.str("tls-key"),
				Logger:     log,
			})
		},
	}
	fs := cmd.Flags()
	addCommonFlags(fs)
	fs.String("listen", ":8478", "signaling listen address (HTTP/WebSocket), host:port")
	fs.String("stun-listen", ":3478", "STUN listen address (UDP), host:port; empty disables STUN")
	fs.String("tls-cert", "", "TLS certificate file: serve https/wss instead of http/ws")
	fs.String("tls-key", "", "TLS private key file")
	return cmd
}
