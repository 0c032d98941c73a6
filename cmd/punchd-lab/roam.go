package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/punchd/punchd/internal/scenario"
)

func newRoamCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "roam",
		Short: "Time from a moving host's fault (NAT rebind, move to another network, NAT reboot) to direct again, with a checksummed transfer in flight (median of --runs)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bin, runs, err := measureFlags(cmd, 20)
			if err != nil {
				return err
			}
			return roamTimes(cmd.Context(), bin, runs)
		},
	}
	cmd.Flags().Int("runs", 5, "runs per drill")
	return cmd
}

func roamTimes(ctx context.Context, bin string, runs int) error {
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "DRILL\tMEDIAN\tMIN\tMAX\tRUNS\tSHA-256\n")
	for _, d := range scenario.AllDrills() {
		var times []time.Duration
		for i := 0; i < runs; i++ {
			took, path, err := oneRoam(ctx, bin, d)
			if err != nil {
				return fmt.Errorf("%s run %d: %w", d, i+1, err)
			}
			times = append(times, took)
			fmt.Fprintf(os.Stderr, "%s run %d: direct again after %s (%s)\n", d, i+1, took.Round(time.Millisecond), path)
		}
		slices.Sort(times)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\tintact\n", d, times[len(times)/2].Round(time.Millisecond),
			times[0].Round(time.Millisecond), times[len(times)-1].Round(time.Millisecond), runs)
	}
	return tw.Flush()
}

func oneRoam(ctx context.Context, bin string, d scenario.Drill) (time.Duration, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	r, err := scenario.Start(ctx, scenario.RoamOptions(bin))
	if err != nil {
		return 0, "", err
	}
	defer r.Close()
	wctx, stop := r.Watch(ctx)
	defer stop()
	pingCtx, cancelPing := context.WithTimeout(wctx, 30*time.Second)
	_, err = scenario.FirstPing(pingCtx, r.A.Host, r.B.Overlay4, 10*time.Millisecond)
	cancelPing()
	if err != nil {
		return 0, "", fmt.Errorf("%w\n%s", err, r.Logs())
	}
	// Let ICE settle on its direct pair before the fault.
	time.Sleep(2 * time.Second)
	took, path, err := r.RoamUnderLoad(wctx, d, 20*time.Second)
	if err != nil {
		return 0, "", fmt.Errorf("%w\n%s", err, r.Logs())
	}
	return took, path, nil
}
