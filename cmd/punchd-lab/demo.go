package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/punchd/punchd/internal/control"
	"github.com/punchd/punchd/internal/lab"
	"github.com/punchd/punchd/internal/scenario"
)

func newDemoCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Two hosts behind NATs get a tunnel; prints the path and the time it took",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := needRoot(); err != nil {
				return err
			}
			bin, _ := cmd.Flags().GetString("punchd")
			natA, _ := cmd.Flags().GetString("nat-a")
			natB, _ := cmd.Flags().GetString("nat-b")
			keep, _ := cmd.Flags().GetBool("keep")
			upArgs, _ := cmd.Flags().GetStringArray("up-arg")
			opts := scenario.Options{Binary: bin, NATA: lab.NATType(natA), NATB: lab.NATType(natB), UpArgs: upArgs}
			return runDemo(cmd.Context(), opts, keep)
		},
	}
	cmd.Flags().String("nat-a", string(lab.NATPortRestricted), "NAT in front of host A: none, full-cone, restricted, port-restricted, symmetric, udp-blocked")
	cmd.Flags().String("nat-b", string(lab.NATPortRestricted), "NAT in front of host B")
	cmd.Flags().StringArray("up-arg", nil, "extra flag for both `punchd up`s (e.g. --up-arg=--force-relay); repeatable")
	cmd.Flags().Bool("keep", false, "keep the lab running until Ctrl-C (try `ip netns exec …` yourself)")
	return cmd
}

func runDemo(ctx context.Context, opts scenario.Options, keep bool) error {
	fmt.Printf("building the lab: host A behind %s NAT, host B behind %s NAT, rendezvous on the lab internet…\n", opts.NATA, opts.NATB)
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	r, err := scenario.Start(ctx, opts)
	if err != nil {
		return err
	}
	defer r.Close()
	fmt.Printf("rendezvous at %s; started A (%s…) and B (%s…)\n", r.R.Addr, r.A.ID.String()[:12], r.B.ID.String()[:12])
	fmt.Printf("pinging B's overlay address %s from A until it answers…\n", r.B.Overlay4)

	pingCtx, cancelPing := context.WithTimeout(ctx, 30*time.Second)
	at, err := scenario.FirstPing(pingCtx, r.A.Host, r.B.Overlay4, 20*time.Millisecond)
	cancelPing()
	if err != nil {
		return fmt.Errorf("%w\n%s", err, r.Logs())
	}
	fmt.Printf("first ping answered %s after both daemons started\n", at.Sub(r.Started).Round(time.Millisecond))

	took, err := scenario.Transfer(ctx, r.A.Host, r.B.Host, r.B.Overlay4, 20<<20)
	if err != nil {
		return fmt.Errorf("transfer: %w\n%s", err, r.Logs())
	}
	fmt.Printf("20 MB over TCP through the tunnel, sha256 verified, in %s (%.0f Mbit/s)\n\n",
		took.Round(time.Millisecond), 20*8*1.048576/took.Seconds())

	for _, n := range []*scenario.Node{r.A, r.B} {
		st, err := r.Status(ctx, n)
		if err != nil {
			return err
		}
		fmt.Printf("$ punchd status   (on host %s)\n", n.Name)
		if err := st.WriteTable(stdout{}, time.Now()); err != nil {
			return err
		}
		fmt.Println()
		printPath(n.Name, st)
	}
	if keep {
		fmt.Printf("\nlab kept: namespaces %s (A) and %s (B); Ctrl-C to tear down\n", r.A.Host.NS, r.B.Host.NS)
		<-ctx.Done()
	}
	return nil
}

func printPath(name string, st control.Status) {
	for _, p := range st.Peers {
		lc, rc := "-", "-"
		if p.LocalCandidate != nil {
			lc = p.LocalCandidate.Type + " " + p.LocalCandidate.Address
		}
		if p.RemoteCandidate != nil {
			rc = p.RemoteCandidate.Type + " " + p.RemoteCandidate.Address
		}
		fmt.Printf("host %s: path %s (local %s, remote %s)\n\n", name, p.Path, lc, rc)
	}
}

type stdout struct{}

func (stdout) Write(b []byte) (int, error) { return fmt.Print(string(b)) }
