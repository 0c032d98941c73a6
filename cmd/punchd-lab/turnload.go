package main

import (
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/punchd/punchd/internal/bench"
)

func newTURNLoadCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "turn-load",
		Short: "TURN allocations per second against a real `punchd rendezvous` on loopback (no root needed)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := cmd.Flags()
			var cfg bench.TURNLoadConfig
			cfg.Binary, _ = f.GetString("punchd")
			cfg.Allocations, _ = f.GetInt("allocations")
			cfg.Concurrency, _ = f.GetInt("concurrency")
			cfg.PerSource, _ = f.GetInt("per-source")
			transports, _ := f.GetStringSlice("transport")
			tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TRANSPORT\tALLOCATED\tFAILED\tSECONDS\tALLOCS/S\tP50 ms\tP99 ms\tSERVER CPU ms/alloc\tRSS MiB idle/held\tKiB/alloc")
			for _, tr := range transports {
				cfg.Transport = tr
				fmt.Fprintf(os.Stderr, "allocating %d over %s…\n", cfg.Allocations, tr)
				r, err := bench.TURNLoad(cmd.Context(), cfg)
				if err != nil {
					return err
				}
				if r.Failed > 0 {
					fmt.Fprintf(os.Stderr, "  %d failed, e.g.: %s\n", r.Failed, r.FailedSample)
				}
				per := 0.0
				if r.Allocated > 0 {
					per = float64(r.RSSHeld-r.RSSBefore) / float64(r.Allocated)
				}
				fmt.Fprintf(tw, "%s\t%d\t%d\t%.2f\t%.0f\t%.2f\t%.2f\t%.3f\t%.1f/%.1f\t%.1f\n", tr, r.Allocated, r.Failed, r.Elapsed.Seconds(), r.PerSecond,
					ms(r.P50), ms(r.P99), ms(r.ServerCPU)/float64(max(1, r.Allocated)), float64(r.RSSBefore)/1024, float64(r.RSSHeld)/1024, per)
			}
			return tw.Flush()
		},
	}
	f := cmd.Flags()
	f.Int("allocations", 2000, "allocations in total (each from its own user; 1..20000)")
	f.Int("concurrency", 16, "clients allocating at once")
	f.Int("per-source", 16, "allocations per client address 127.0.0.x (the server allows 32 per IP)")
	f.StringSlice("transport", []string{"udp", "tcp", "tls"}, "transports to the server: udp, tcp, tls")
	return cmd
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
