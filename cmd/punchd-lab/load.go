package main

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/punchd/punchd/internal/fdlimit"
	"github.com/punchd/punchd/internal/rvload"
)

func newLoadCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "load",
		Short: "Load a real `punchd rendezvous` on loopback: peers held, idle CPU, signaling latency, a connect storm, a flood of bad clients",
		Long: `load starts ` + "`punchd rendezvous`" + ` on a loopback port and measures it from this
process: the time to register --peers peers (real registration proofs,
from many 127.x.y.z source addresses because of the per-address cap),
its RSS, fds and idle CPU while it holds them, the one-way latency of
sealed offer/answer rounds between --pairs active pairs (sealed before
the timed window and recorded unopened, so the clients' Noise does not
count), a storm of
--storm peers connecting at once (held peers must keep their
registration; when held and storm peers do not fit the fd limits of
both processes, fewer are held during the storm, and it says how many), and with --flood the latency again while bad clients
(aborted handshakes, junk and oversized frames, spammers over the rate
limit) hammer it, then whether fds and RSS come back. No root needed,
but as root the fd limits are raised for 10,000 peers and more.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := cmd.Flags()
			var cfg rvload.Config
			cfg.Binary, _ = f.GetString("punchd")
			cfg.Peers, _ = f.GetInt("peers")
			cfg.ActivePairs, _ = f.GetInt("pairs")
			cfg.PairRate, _ = f.GetFloat64("rate")
			cfg.StormPeers, _ = f.GetInt("storm")
			cfg.Flood, _ = f.GetBool("flood")
			cfg.FloodRate, _ = f.GetInt("flood-rate")
			cfg.FloodSpammers, _ = f.GetInt("flood-spammers")
			if cfg.FloodSpammers == 0 {
				cfg.FloodSpammers = -1
			}
			cfg.StormWatch, _ = f.GetDuration("storm-watch")
			if dl, _ := f.GetString("debug-listen"); dl != "" {
				cfg.ServerArgs = append(cfg.ServerArgs, "--debug-listen", dl)
			}
			cfg.ServerLog, _ = f.GetString("server-log")
			cfg.CPUProfile, _ = f.GetString("cpuprofile")
			cfg.Idle, _ = f.GetDuration("idle")
			cfg.Latency, _ = f.GetDuration("latency")
			if cfg.Peers < 2 || cfg.Peers > 50000 {
				return fmt.Errorf("--peers %d: use 2..50000", cfg.Peers)
			}
			if cfg.Idle > 5*time.Minute || cfg.Latency > 5*time.Minute {
				return fmt.Errorf("--idle and --latency are at most 5m")
			}
			if cfg.StormPeers == 0 {
				cfg.StormPeers = -1
			}
			// The clients and the server each hold one fd per peer.
			if lim, err := fdlimit.Raise(); err != nil || lim < uint64(cfg.Peers+max(cfg.StormPeers, 0)+1024) {
				fmt.Fprintf(os.Stderr, "punchd-lab: open-file limit %d is too low for %d peers and a storm of %d: fewer peers are held during the storm (raising the hard limit needs root with CAP_SYS_RESOURCE, or a larger LimitNOFILE/ulimit -Hn)\n",
					lim, cfg.Peers, max(cfg.StormPeers, 0))
			}
			cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
			rep, err := rvload.Run(cmd.Context(), cfg)
			rep.Print(os.Stdout)
			return err
		},
	}
	f := cmd.Flags()
	f.Int("peers", 10000, "peers registered and held (in pairs that watch each other)")
	f.Int("pairs", 1000, "active pairs exchanging offer/answer rounds")
	f.Float64("rate", 2, "offer/answer rounds per second per active pair")
	f.Int("storm", 10000, "peers connecting at once while --peers are held (0: no storm)")
	f.Duration("storm-watch", 10*time.Second, "how long held peers are watched for a lost registration after the storm")
	f.String("debug-listen", "", "have the server serve pprof profiles on this loopback address (e.g. 127.0.0.1:6060)")
	f.String("server-log", "", "keep the server's log in this file, at debug level (every peer that left, and why)")
	f.String("cpuprofile", "", "write a CPU profile of the load clients (this process) during the flooded latency window to this file")
	f.Bool("flood", true, "measure latency again under a flood of bad clients")
	f.Int("flood-rate", 500, "bad connections per second during the flood")
	f.Int("flood-spammers", 20, "registered clients sending to strangers as fast as they can during the flood (0: none)")
	f.Duration("idle", 20*time.Second, "how long idle CPU is measured")
	f.Duration("latency", 10*time.Second, "how long each latency window lasts")
	return cmd
}
