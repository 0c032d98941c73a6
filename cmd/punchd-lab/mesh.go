package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/punchd/punchd/internal/bench"
	"github.com/punchd/punchd/internal/lab"
	"github.com/punchd/punchd/internal/scenario"
)

func newMeshCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "mesh",
		Short: "Eight daemons join one network: time from the last start to all 28 pairs connected (median of --runs), each pair's path, resources with 7 peers, throughput beside a two-daemon run",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bin, runs, err := measureFlags(cmd, 20)
			if err != nil {
				return err
			}
			seconds, err := secondsFlag(cmd)
			if err != nil {
				return err
			}
			return meshBench(cmd.Context(), os.Stdout, bin, runs, seconds)
		},
	}
	cmd.Flags().Int("runs", 5, "mesh starts to time")
	cmd.Flags().Int("seconds", 10, "length of the idle sample and of each transfer")
	return cmd
}

func meshBench(ctx context.Context, out io.Writer, bin string, runs, seconds int) error {
	var times []time.Duration
	for i := 1; i <= runs; i++ {
		last := i == runs
		took, err := oneMesh(ctx, out, bin, seconds, last)
		if err != nil {
			return fmt.Errorf("mesh run %d: %w", i, err)
		}
		times = append(times, took)
		fmt.Fprintf(os.Stderr, "mesh run %d: all 28 pairs connected %s after the last start\n", i, took.Round(time.Millisecond))
	}
	slices.Sort(times)
	fmt.Fprintf(out, "\nall 28 pairs connected after the last start: median %s, min %s, max %s (%d runs)\n",
		times[len(times)/2].Round(time.Millisecond), times[0].Round(time.Millisecond), times[len(times)-1].Round(time.Millisecond), runs)

	// The same transfer between two daemons alone, same NATs, same run.
	two, err := twoDaemonTransfer(ctx, bin, seconds)
	if err != nil {
		return fmt.Errorf("two-daemon transfer: %w", err)
	}
	fmt.Fprintf(out, "two daemons alone (none x full-cone, direct): tcp1 %.2f Gbit/s (median of %d)\n", two.Bps/1e9, transferRounds)
	return nil
}

// oneMesh starts eight members and waits for every pair; the last run
// also prints the paths and measures resources and throughput.
func oneMesh(ctx context.Context, out io.Writer, bin string, seconds int, measure bool) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	m, err := scenario.StartMesh(ctx, scenario.MeshOptions{Binary: bin, Members: scenario.LANParty(), LogLevel: "info"})
	if err != nil {
		return 0, err
	}
	defer m.Close()
	pairs, err := m.WaitConnected(ctx, m.Nodes, 2*time.Minute)
	if err != nil {
		return 0, fmt.Errorf("%w\n%s", err, m.MeshLogs())
	}
	took := time.Since(m.Started)
	if !measure {
		return took, nil
	}
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "PAIR\tNATS\tPATH\tEXPECTED\t\n")
	for _, p := range pairs {
		want := m.ExpectedPath(p.A, p.B)
		mark := ""
		if !m.PathAsPredicted(p.A, p.B, p.Path) {
			mark = "MISMATCH"
		}
		fmt.Fprintf(tw, "%s-%s\t%s x %s\t%s\t%s\t%s\n", p.A.Name, p.B.Name, natOf(m, p.A), natOf(m, p.B), p.Path, want, mark)
	}
	if err := tw.Flush(); err != nil {
		return 0, err
	}

	// Idle: every daemon with 7 peers, nothing sent.
	pids := make([]int, len(m.Nodes))
	for i, n := range m.Nodes {
		pids[i] = n.PID()
	}
	before := cpuTimes(pids)
	select {
	case <-time.After(time.Duration(seconds) * time.Second):
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	idleCPU := cpuDelta(before, cpuTimes(pids))
	idleRSS := rssOf(pids)

	// Load: a TCP transfer a -> b while the six others idle.
	a, b := m.Node("a"), m.Node("b")
	before = cpuTimes(pids)
	loadStart := time.Now()
	res, err := transfers(ctx, a, b, seconds)
	if err != nil {
		return 0, err
	}
	loadTime := time.Since(loadStart)
	loadCPU := cpuDelta(before, cpuTimes(pids))
	loadRSS := rssOf(pids)

	tw = tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "\nDAEMON\tPEERS\tRSS IDLE\tCPU IDLE\tRSS AFTER TRANSFER\tCPU DURING a->b TRANSFER\t\n")
	for i, n := range m.Nodes {
		fmt.Fprintf(tw, "%s\t%d\t%d MiB\t%.1f%%\t%d MiB\t%.1f%%\t\n", n.Name, len(m.Nodes)-1, idleRSS[i]/1024,
			100*idleCPU[i].Seconds()/float64(seconds), loadRSS[i]/1024, 100*loadCPU[i].Seconds()/loadTime.Seconds())
	}
	if err := tw.Flush(); err != nil {
		return 0, err
	}
	fmt.Fprintf(out, "mesh of 8, a -> b (none x full-cone, direct) while six idle: tcp1 %.2f Gbit/s (median of %d), peak RSS of a/b %d MiB\n", res.Bps/1e9, transferRounds, res.RSSLoad/1024)
	return took, nil
}

func twoDaemonTransfer(ctx context.Context, bin string, seconds int) (bench.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	r, err := scenario.Start(ctx, scenario.Options{Binary: bin, NATA: lab.NATNone, NATB: lab.NATFullCone, LogLevel: "info"})
	if err != nil {
		return bench.Result{}, err
	}
	defer r.Close()
	pctx, cancelPing := context.WithTimeout(ctx, 30*time.Second)
	_, err = scenario.FirstPing(pctx, r.A.Host, r.B.Overlay4, 10*time.Millisecond)
	cancelPing()
	if err != nil {
		return bench.Result{}, fmt.Errorf("%w\n%s", err, r.Logs())
	}
	// Measure the direct path, as in the mesh: wait until it is selected.
	for i := 0; i < 100; i++ {
		if st, err := r.Status(ctx, r.A); err == nil && len(st.Peers) == 1 && st.Peers[0].Path == "direct" {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return transfers(ctx, r.A, r.B, seconds)
}

// transferRounds transfers are made per setting; the median is reported,
// since the machine is shared and single transfers wander.
const transferRounds = 3

func transfers(ctx context.Context, from, to *scenario.Node, seconds int) (bench.Result, error) {
	var all []bench.Result
	for range transferRounds {
		res, err := bench.Iperf(ctx, from.Host, to.Host, to.Overlay4, bench.Test{Name: "tcp1", Streams: 1}, seconds, []int{from.PID(), to.PID()})
		if err != nil {
			return bench.Result{}, err
		}
		all = append(all, res)
	}
	slices.SortFunc(all, func(x, y bench.Result) int { return cmp.Compare(x.Bps, y.Bps) })
	return all[len(all)/2], nil
}

func natOf(m *scenario.Mesh, n *scenario.Node) string {
	s := m.Specs[n.Name]
	if s.Behind != "" {
		return string(m.Specs[s.Behind].NAT) + "(same as " + s.Behind + ")"
	}
	return string(s.NAT)
}

func cpuTimes(pids []int) []time.Duration {
	out := make([]time.Duration, len(pids))
	for i, p := range pids {
		out[i] = bench.CPUTime(p)
	}
	return out
}

func cpuDelta(a, b []time.Duration) []time.Duration {
	out := make([]time.Duration, len(a))
	for i := range a {
		out[i] = b[i] - a[i]
	}
	return out
}

func rssOf(pids []int) []int64 {
	out := make([]int64, len(pids))
	for i, p := range pids {
		out[i] = bench.RSSKiB(p)
	}
	return out
}
