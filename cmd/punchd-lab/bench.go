package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/punchd/punchd/internal/bench"
	"github.com/punchd/punchd/internal/lab"
	"github.com/punchd/punchd/internal/scenario"
)

func newBenchCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench --wireguard-go PATH",
		Short: "Throughput side by side: punchd direct and relayed, stock wireguard-go, the raw path (iperf3)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := needRoot(); err != nil {
				return err
			}
			bin, _ := cmd.Flags().GetString("punchd")
			wg, _ := cmd.Flags().GetString("wireguard-go")
			secs, _ := cmd.Flags().GetInt("seconds")
			if wg == "" {
				return fmt.Errorf("give --wireguard-go (bench/throughput.sh builds it from the module proxy)")
			}
			return runBench(cmd.Context(), bin, wg, secs)
		},
	}
	cmd.Flags().String("wireguard-go", "", "stock wireguard-go binary to compare with")
	cmd.Flags().Int("seconds", 10, "seconds per iperf3 run")
	return cmd
}

type benchRow struct {
	topo, path string
	res        map[string]bench.Result
	rtt        time.Duration
	relayCPU   map[string]time.Duration
	err        error
}

func runBench(ctx context.Context, bin, wg string, secs int) error {
	var rows []*benchRow
	for _, topo := range []lab.NATType{lab.NATNone, lab.NATPortRestricted} {
		for _, path := range []string{"raw", "wireguard-go", "punchd direct", "punchd relay (own TURN)", "punchd relay (coturn)"} {
			fmt.Fprintf(os.Stderr, "measuring %s over %s…\n", path, topo)
			row := &benchRow{topo: string(topo), path: path, res: map[string]bench.Result{}, relayCPU: map[string]time.Duration{}}
			row.err = measure(ctx, bin, wg, secs, topo, path, row)
			if row.err != nil {
				fmt.Fprintf(os.Stderr, "  %s: %v\n", path, row.err)
			}
			rows = append(rows, row)
		}
	}
	printBench(rows)
	return nil
}

func measure(ctx context.Context, bin, wg string, secs int, topo lab.NATType, path string, row *benchRow) error {
	opts := scenario.Options{Binary: bin, NATA: topo, NATB: topo}
	switch path {
	case "punchd relay (own TURN)":
		opts.UpArgs = []string{"--force-relay"}
	case "punchd relay (coturn)":
		opts.UpArgs, opts.Relay = []string{"--force-relay"}, "coturn"
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	r, err := scenario.Start(ctx, opts)
	if err != nil {
		return err
	}
	defer r.Close()
	var dst netip.Addr
	var pids []int
	from, to := r.A.Host, r.B.Host
	relayPID := 0
	switch path {
	case "raw":
		// Stop the daemons: the raw path is the underlay alone. Behind
		// NATs the peer is unreachable, so the raw path goes to a public
		// host through A's NAT.
		_ = r.Stop(r.A, 10*time.Second)
		_ = r.Stop(r.B, 10*time.Second)
		dst = to.Addr
		if topo != lab.NATNone {
			to, dst = r.R, r.R.Addr
		}
	case "wireguard-go":
		_ = r.Stop(r.A, 10*time.Second)
		_ = r.Stop(r.B, 10*time.Second)
		pubA, pubB := r.A.Host.Addr, r.B.Host.Addr
		if r.A.Host.Router != nil {
			pubA, pubB = r.A.Host.Router.WANAddr, r.B.Host.Router.WANAddr
		}
		s, err := bench.StartStockWG(ctx, wg, r.A.Host, r.B.Host, pubA, pubB)
		if err != nil {
			return err
		}
		defer s.Close()
		dst, pids = s.Addr[1], s.PIDs()
	default:
		dst, pids = r.B.Overlay4, []int{r.A.PID(), r.B.PID()}
		if strings.Contains(path, "relay") {
			relayPID = r.RelayPID()
		}
	}
	pingCtx, cancelPing := context.WithTimeout(ctx, 30*time.Second)
	_, err = scenario.FirstPing(pingCtx, from, dst, 20*time.Millisecond)
	cancelPing()
	if err != nil {
		return fmt.Errorf("no path: %w", err)
	}
	if strings.HasPrefix(path, "punchd") {
		st, err := r.Status(ctx, r.A)
		want := "direct"
		if strings.Contains(path, "relay") {
			want = "relay"
		}
		if err != nil || len(st.Peers) != 1 || st.Peers[0].Path != want {
			return fmt.Errorf("path is not %s: %+v %v", want, st.Peers, err)
		}
	}
	if row.rtt, err = bench.PingRTT(ctx, from, dst, 100); err != nil {
		return err
	}
	for _, t := range bench.Tests() {
		var relayBefore time.Duration
		if relayPID != 0 {
			relayBefore = bench.CPUTime(relayPID)
		}
		res, err := bench.Iperf(ctx, from, to, dst, t, secs, pids)
		if err != nil {
			return err
		}
		row.res[t.Name] = res
		if relayPID != 0 {
			row.relayCPU[t.Name] = bench.CPUTime(relayPID) - relayBefore
		}
	}
	return nil
}

func printBench(rows []*benchRow) {
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPOLOGY\tPATH\tTCP x1 Gbit/s\tTCP x4 Gbit/s\tUDP Gbit/s\tTCP x1 vs wg-go\tCPU s/GB (tunnel daemons, TCP x1)\tCPU s/GB (relay server)\tRSS idle/load MiB\tping avg ms")
	stock := map[string]float64{}
	for _, r := range rows {
		if r.path == "wireguard-go" && r.err == nil {
			stock[r.topo] = r.res["tcp1"].Bps
		}
	}
	for _, r := range rows {
		if r.err != nil {
			fmt.Fprintf(tw, "%s\t%s\tFAILED: %s\n", r.topo, r.path, strings.Join(strings.Fields(r.err.Error()), " "))
			continue
		}
		g := func(k string) string { return fmt.Sprintf("%.2f", r.res[k].Bps/1e9) }
		ratio, cpu, relay, rss := "-", "-", "-", "-"
		if s := stock[r.topo]; s > 0 && r.path != "raw" {
			ratio = fmt.Sprintf("%.2fx", r.res["tcp1"].Bps/s)
		}
		if r.path != "raw" {
			t := r.res["tcp1"]
			cpu = fmt.Sprintf("%.1f", t.CPUPerGB())
			rss = fmt.Sprintf("%.1f/%.1f", float64(t.RSSIdle)/1024, float64(t.RSSLoad)/1024)
		}
		if c, ok := r.relayCPU["tcp1"]; ok && r.res["tcp1"].Bytes > 0 {
			relay = fmt.Sprintf("%.1f", c.Seconds()/(r.res["tcp1"].Bytes/1e9))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.3f\n", r.topo, r.path, g("tcp1"), g("tcp4"), g("udp"), ratio, cpu, relay, rss, float64(r.rtt.Microseconds())/1000)
	}
	tw.Flush()
}
