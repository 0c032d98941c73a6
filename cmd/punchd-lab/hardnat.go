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

func newHardNATCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hardnat",
		Short: "Measure direct paths where ICE alone relays: birthday punching, port prediction, port mapping (--runs per pairing)",
		Long: `Runs each hard pairing --runs times in fresh labs and reports how often the
tunnel went direct, the median time from start to direct, and the probes
it took (birthday punching and prediction):

  symmetric x port-restricted             birthday punching
  port-restricted x symmetric-sequential  port prediction
  symmetric+miniupnpd x symmetric         the gateway's port mapping`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bin, runs, err := measureFlags(cmd, 50)
			if err != nil {
				return err
			}
			only, _ := cmd.Flags().GetString("only")
			return hardNATRuns(cmd.Context(), bin, runs, only)
		},
	}
	cmd.Flags().Int("runs", 20, "runs per pairing")
	cmd.Flags().String("only", "", "run one technique only: birthday, prediction or portmap")
	return cmd
}

type hardCase struct {
	name string
	opts scenario.Options
}

func hardNATRuns(ctx context.Context, bin string, runs int, only string) error {
	cases := []hardCase{
		{"birthday", scenario.Options{NATA: lab.NATSymmetric, NATB: lab.NATPortRestricted}},
		{"prediction", scenario.Options{NATA: lab.NATPortRestricted, NATB: lab.NATSymmetricSequential}},
		{"portmap", scenario.Options{NATA: lab.NATSymmetric, NATB: lab.NATSymmetric, UPnPA: true}},
	}
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "PAIRING\tVIA\tDIRECT\tMEDIAN TO DIRECT\tMAX TO DIRECT\tMEDIAN FIRST PING\tMAX FIRST PING\tMEDIAN PROBES\tMAX PROBES\n")
	for _, c := range cases {
		if only != "" && only != c.name {
			continue
		}
		c.opts.Binary, c.opts.LogLevel = bin, "info"
		var direct, firstPing []time.Duration
		var probes []int
		via := c.name
		for i := range runs {
			res, err := scenario.HardNATRun(ctx, c.opts)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil {
				fmt.Fprintf(os.Stderr, "%s run %d: not direct: %v\n", c.opts.Describe(), i+1, firstLine(err.Error()))
				continue
			}
			via = res.Via
			direct, firstPing, probes = append(direct, res.Direct), append(firstPing, res.FirstPing), append(probes, res.Probes)
			fmt.Fprintf(os.Stderr, "%s run %d: direct via %s after %s, %d probes, first ping %s\n", c.opts.Describe(), i+1,
				res.Via, res.Direct.Round(time.Millisecond), res.Probes, res.FirstPing.Round(time.Millisecond))
		}
		if len(direct) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t0/%d\t-\t-\t-\t-\t-\t-\n", c.opts.Describe(), via, runs)
			continue
		}
		slices.Sort(direct)
		slices.Sort(firstPing)
		slices.Sort(probes)
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\t%s\t%s\t%s\t%d\t%d\n", c.opts.Describe(), via, len(direct), runs,
			direct[len(direct)/2].Round(time.Millisecond), direct[len(direct)-1].Round(time.Millisecond),
			firstPing[len(firstPing)/2].Round(time.Millisecond), firstPing[len(firstPing)-1].Round(time.Millisecond),
			probes[len(probes)/2], probes[len(probes)-1])
	}
	return tw.Flush()
}

func firstLine(s string) string {
	for i, c := range s {
		if c == '\n' {
			return s[:i]
		}
	}
	return s
}
