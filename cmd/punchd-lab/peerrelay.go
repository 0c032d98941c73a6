package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/punchd/punchd/internal/bench"
	"github.com/punchd/punchd/internal/lab"
	"github.com/punchd/punchd/internal/scenario"
)

func newPeerRelayCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "peer-relay",
		Short: "Two members behind symmetric NATs and a public one: ping RTT and throughput through the TURN relay, through the member, and what punchd picks",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := needRoot(); err != nil {
				return err
			}
			bin, _ := cmd.Flags().GetString("punchd")
			seconds, err := secondsFlag(cmd)
			if err != nil {
				return err
			}
			rvDelay, _ := cmd.Flags().GetDuration("rendezvous-delay")
			memberDelay, _ := cmd.Flags().GetDuration("member-delay")
			for _, d := range []time.Duration{rvDelay, memberDelay} {
				if d < 0 || d > 2*time.Second {
					return fmt.Errorf("delay %s: use 0 (none) up to 2s", d)
				}
			}
			return peerRelayBench(cmd.Context(), os.Stdout, bin, seconds, peerRelayDelays{rendezvous: rvDelay, member: memberDelay})
		},
	}
	cmd.Flags().Int("seconds", 5, "length of each transfer")
	cmd.Flags().Duration("rendezvous-delay", 80*time.Millisecond, "one-way delay to and from the rendezvous host and its TURN relay (0: none)")
	cmd.Flags().Duration("member-delay", 5*time.Millisecond, "one-way delay to and from the public member a (0: none)")
	return cmd
}

// peerRelayDelays place the rendezvous and the public member far or near
// (lab.AddDelay, one way, both directions).
type peerRelayDelays struct{ rendezvous, member time.Duration }

func peerRelayBench(ctx context.Context, out io.Writer, bin string, seconds int, delays peerRelayDelays) error {
	settings := []struct {
		name           string
		upArgs, rvArgs []string
	}{
		{"TURN relay (--no-peer-relay)", []string{"--no-peer-relay"}, nil},
		{"member relay (rendezvous --no-turn)", nil, []string{"--no-turn"}},
		{"both offered (defaults)", nil, nil},
	}
	fmt.Fprintf(out, "rendezvous and its TURN relay %s away (one way), member a %s away; f and g behind symmetric NATs\n", delays.rendezvous, delays.member)
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "SETTING\tPATH (f's view / g's)\tPING RTT\ttcp1\t\n")
	for _, s := range settings {
		path, rtt, bps, err := onePeerRelay(ctx, bin, s.upArgs, s.rvArgs, seconds, delays)
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.2f Gbit/s\t\n", s.name, path, rtt.Round(time.Microsecond), bps/1e9)
	}
	return tw.Flush()
}

func onePeerRelay(ctx context.Context, bin string, upArgs, rvArgs []string, seconds int, delays peerRelayDelays) (string, time.Duration, float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	m, err := scenario.StartMesh(ctx, scenario.MeshOptions{Binary: bin, LogLevel: "info", UpArgs: upArgs, RendezvousArgs: rvArgs,
		RendezvousDelay: delays.rendezvous,
		Members:         []scenario.MemberSpec{{Name: "a", NAT: lab.NATNone, Delay: delays.member}, {Name: "f", NAT: lab.NATSymmetric}, {Name: "g", NAT: lab.NATSymmetric}}})
	if err != nil {
		return "", 0, 0, err
	}
	defer m.Close()
	f, g := m.Node("f"), m.Node("g")
	pctx, cancelPing := context.WithTimeout(ctx, 30*time.Second)
	_, err = scenario.FirstPing(pctx, f.Host, g.Overlay4, 50*time.Millisecond)
	cancelPing()
	if err != nil {
		return "", 0, 0, fmt.Errorf("f -> g: %w\n%s", err, m.MeshLogs())
	}
	// Let the choosers settle: they probe every 2 s and smooth the answers.
	select {
	case <-time.After(10 * time.Second):
	case <-ctx.Done():
		return "", 0, 0, ctx.Err()
	}
	pathOf := func(from, to *scenario.Node) string {
		st, err := m.PeerStatus(ctx, from)
		if err != nil {
			return "?"
		}
		for _, p := range st.Peers {
			if p.ID == to.ID.String() {
				if p.RelayVia != "" {
					return p.Path + " via " + p.RelayVia
				}
				return p.Path
			}
		}
		return "?"
	}
	path := pathOf(f, g) + " / " + pathOf(g, f)
	rtt, err := bench.PingRTT(ctx, f.Host, g.Overlay4, 50)
	if err != nil {
		return "", 0, 0, err
	}
	res, err := bench.Iperf(ctx, f.Host, g.Host, g.Overlay4, bench.Test{Name: "tcp1", Streams: 1}, seconds, []int{f.PID(), g.PID()})
	if err != nil {
		return "", 0, 0, err
	}
	return path, rtt, res.Bps, nil
}
