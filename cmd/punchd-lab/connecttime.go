package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/punchd/punchd/internal/lab"
	"github.com/punchd/punchd/internal/scenario"
)

func newConnectTimeCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "connect-time",
		Short: "Measure the time from both daemons started to first ping answered, per NAT pairing (median of --runs)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bin, runs, err := measureFlags(cmd, 50)
			if err != nil {
				return err
			}
			cases := e2eCases()
			if grid, _ := cmd.Flags().GetBool("grid"); grid {
				cases = scenario.GridCases()
			}
			return connectTimes(cmd.Context(), bin, runs, cases)
		},
	}
	cmd.Flags().Int("runs", 5, "runs per pairing")
	cmd.Flags().Bool("grid", false, "every pair of NAT types (21) plus same-NAT, with the path taken")
	return cmd
}

// e2eCases are the pairings the e2e tests check.
func e2eCases() []scenario.Options {
	return []scenario.Options{
		{NATA: lab.NATPortRestricted, NATB: lab.NATPortRestricted},
		{NATA: lab.NATFullCone, NATB: lab.NATSymmetric},
		{NATA: lab.NATPortRestricted, SameNAT: true},
		{NATA: lab.NATNone, NATB: lab.NATPortRestricted},
	}
}

func connectTimes(ctx context.Context, bin string, runs int, cases []scenario.Options) error {
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "PAIRING\tPATH\tMEDIAN\tMIN\tMAX\tRUNS\n")
	for _, opts := range cases {
		opts.Binary = bin
		var times []time.Duration
		path := ""
		for i := 0; i < runs; i++ {
			d, p, err := oneConnect(ctx, opts)
			path = p
			if err != nil {
				return fmt.Errorf("%s run %d: %w", opts.Describe(), i+1, err)
			}
			times = append(times, d)
			fmt.Fprintf(os.Stderr, "%s run %d: %s\n", opts.Describe(), i+1, d.Round(time.Millisecond))
		}
		slices.Sort(times)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", opts.Describe(), path, times[len(times)/2].Round(time.Millisecond),
			times[0].Round(time.Millisecond), times[len(times)-1].Round(time.Millisecond), runs)
	}
	return tw.Flush()
}

func oneConnect(ctx context.Context, opts scenario.Options) (time.Duration, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	r, err := scenario.Start(ctx, opts)
	if err != nil {
		return 0, "", err
	}
	defer r.Close()
	pingCtx, cancelPing := context.WithTimeout(ctx, 30*time.Second)
	defer cancelPing()
	at, err := scenario.FirstPing(pingCtx, r.A.Host, r.B.Overlay4, 10*time.Millisecond)
	if err != nil {
		return 0, "", fmt.Errorf("%w\n%s", err, r.Logs())
	}
	path := "?"
	if st, err := r.Status(ctx, r.A); err == nil && len(st.Peers) == 1 {
		path = st.Peers[0].Path
	}
	return at.Sub(r.Started), path, nil
}
