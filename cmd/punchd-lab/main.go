// Command punchd-lab runs punchd in a one-machine NAT lab (network
// namespaces + nftables): `demo` shows two NATed hosts getting a tunnel,
// `connect-time` measures start-to-first-ping per NAT pairing. Needs root.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := &cobra.Command{
		Use:           "punchd-lab",
		Short:         "Run punchd in a one-machine NAT lab (needs root)",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().String("punchd", "bin/punchd", "punchd binary to run")
	root.AddCommand(
		newDemoCommand(), newConnectTimeCommand(), newBenchCommand(),
		newWebRTCCommand(), newTURNLoadCommand(), newHardNATCommand(),
		newMeshCommand(), newPeerRelayCommand(),
		newLoadCommand(), newRoamCommand(),
	)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "punchd-lab:", err)
		os.Exit(1)
	}
}

func needRoot() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("the lab needs root (network namespaces, nftables): run `make demo` as root")
	}
	return nil
}
