package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/punchd/punchd/internal/ping"
)

func newPingCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ping PEER",
		Short: "Ping a peer through the tunnel and say which path answered",
		Long: `Ping a peer through the tunnel (WireGuard and, when relayed, the relay
included) and say for each reply which path carried it. PEER is a peer ID,
an alias from the config file, or the start of an ID. Needs no privileges:
the running daemon answers on its overlay address.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := loadSettings(cmd)
			if err != nil {
				return err
			}
			_, err = ping.Run(cmd.Context(), ping.SessionConfig{
				ControlSocket: s.controlSocket(),
				Peer:          args[0],
				Count:         s.v.GetInt("count"),
				Interval:      s.v.GetDuration("interval"),
				Timeout:       s.v.GetDuration("timeout"),
				Size:          s.v.GetInt("size"),
				Out:           cmd.OutOrStdout(),
			})
			return err
		},
	}
	addCommonFlags(cmd.Flags())
	addStateFlags(cmd.Flags())
	cmd.Flags().IntP("count", "c", 4, "probes to send")
	cmd.Flags().DurationP("interval", "i", time.Second, "time between probes")
	cmd.Flags().DurationP("timeout", "W", time.Second, "how long to wait for each reply")
	cmd.Flags().IntP("size", "s", 64, "probe size in bytes (at most 1400)")
	return cmd
}
