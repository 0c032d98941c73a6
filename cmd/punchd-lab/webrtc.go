package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/punchd/punchd/internal/bench"
	"github.com/punchd/punchd/internal/lab"
	"github.com/punchd/punchd/internal/webrtclab"
)

func newWebRTCCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "webrtc",
		Short: "Headless Chromium peerjs pages behind lab NATs, served only by punchd rendezvous: time from peer.connect() to open per case, and the relay's CPU per GB for a data-channel transfer through TURN",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bin, runs, err := measureFlags(cmd, 50)
			if err != nil {
				return err
			}
			mb, _ := cmd.Flags().GetInt("bulk-mb")
			if mb < 0 || mb > 2000 {
				return fmt.Errorf("--bulk-mb %d: use 0..2000", mb)
			}
			return webrtcFigures(cmd.Context(), bin, runs, int64(mb)<<20)
		},
	}
	cmd.Flags().Int("runs", 5, "tries per case")
	cmd.Flags().Int("bulk-mb", 200, "MiB sent over the data channel through TURN/UDP (relay-only) for the CPU figure; 0 skips it")
	return cmd
}

func webrtcFigures(ctx context.Context, bin string, runs int, bulk int64) error {
	bundle, err := webrtclab.InstallPeerJS(ctx, webrtclab.CacheDir())
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "punchd-webrtc-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	l, err := webrtclab.Start(ctx, webrtclab.Options{Punchd: bin, PeerJS: bundle, Dir: dir, NATs: []lab.NATType{lab.NATSymmetric, lab.NATPortRestricted}})
	if err != nil {
		return err
	}
	defer l.Close()
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "CASE\tOPENED\tMEDIAN\tMIN\tMAX\tPAIR (last run)\n")
	for _, c := range webrtclab.MeasuredCases() {
		var ms []float64
		pair := "none"
		for i := 0; i < runs; i++ {
			r, err := l.Run(ctx, c.Case)
			if err != nil {
				return fmt.Errorf("%s: %w", c.Name, err)
			}
			if r.Opened {
				ms = append(ms, r.OpenMs)
				pair = r.Pair.String()
			}
		}
		if len(ms) == 0 {
			fmt.Fprintf(tw, "%s\t0/%d\t-\t-\t-\tnot open after %s\n", c.Name, runs, c.Wait)
			continue
		}
		slices.Sort(ms)
		fmt.Fprintf(tw, "%s\t%d/%d\t%.0f ms\t%.0f ms\t%.0f ms\t%s\n", c.Name, len(ms), runs, ms[len(ms)/2], ms[0], ms[len(ms)-1], pair)
	}
	tw.Flush()
	if bulk == 0 {
		return nil
	}
	pid := l.RendezvousPID()
	var before time.Duration
	var t0 time.Time
	r, err := l.Run(ctx, webrtclab.Case{NAT: lab.NATSymmetric, ICE: "relay-udp", Bulk: bulk,
		OnBulkStart: func() { before, t0 = bench.CPUTime(pid), time.Now() }})
	if err != nil {
		return fmt.Errorf("bulk transfer: %w", err)
	}
	cpu, wall := bench.CPUTime(pid)-before, time.Since(t0)
	if !r.Opened || r.BulkBytes < bulk || t0.IsZero() {
		return fmt.Errorf("bulk transfer: opened %v, %d of %d bytes arrived", r.Opened, r.BulkBytes, bulk)
	}
	gb := float64(r.BulkBytes) / 1e9
	fmt.Printf("\nrelay CPU for %d MiB over a data channel through TURN/UDP (both pages relay-only, %s):\n", r.BulkBytes>>20, r.Pair)
	fmt.Printf("  rendezvous CPU %.2f s in %.1f s of transfer (%.1f Mbit/s, %.0f%% of a core): %.1f CPU-s per GB\n",
		cpu.Seconds(), wall.Seconds(), float64(r.BulkBytes)*8/wall.Seconds()/1e6, 100*cpu.Seconds()/wall.Seconds(), cpu.Seconds()/gb)
	return nil
}
