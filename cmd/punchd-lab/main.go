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

// measureFlags is how each repeated lab measurement starts: root, the
// punchd binary (--punchd) and --runs, bounded to 1..maxRuns.
func measureFlags(cmd *cobra.Command, maxRuns int) (bin string, runs int, err error) {
	if err := needRoot(); err != nil {
		return "", 0, err
	}
	bin, _ = cmd.Flags().GetString("punchd")
	runs, err = runsFlag(cmd, maxRuns)
	return bin, runs, err
}

// runsFlag reads --runs, bounded to 1..max.
func runsFlag(cmd *cobra.Command, max int) (int, error) {
	runs, _ := cmd.Flags().GetInt("runs")
	if runs < 1 || runs > max {
		return 0, fmt.Errorf("--runs %d: use 1..%d", runs, max)
	}
	return runs, nil
}

// secondsFlag reads --seconds, the length of a sample or transfer.
func secondsFlag(cmd *cobra.Command) (int, error) {
	seconds, _ := cmd.Flags().GetInt("seconds")
	if seconds < 2 || seconds > 60 {
		return 0, fmt.Errorf("--seconds %d: use 2..60", seconds)
	}
	return seconds, nil
}
