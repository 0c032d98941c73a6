package main

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/punchd/punchd/internal/bench"
	"github.com/punchd/punchd/internal/lab"
	"github.com/punchd/punchd/internal/scenario"
)

// benchPath is one way across the lab that the benchmark measures.
type benchPath struct {
	key  string // for --paths
	name string // in the table
}

var (
	pathRaw    = benchPath{"raw", "raw"}
	pathStock  = benchPath{"wireguard-go", "wireguard-go"}
	pathDirect = benchPath{"direct", "punchd direct"}
	// pathDirect6: direct over IPv6, routed through the same routers
	// (stateful IPv6 firewalls), which are symmetric NATs on IPv4 so that
	// IPv6 is the only direct path: beside "direct", IPv6 against IPv4.
	pathDirect6 = benchPath{"direct-ipv6", "punchd direct IPv6"}
	pathOwn     = benchPath{"own-turn", "punchd relay (own TURN)"}
	pathCoturn  = benchPath{"coturn", "punchd relay (coturn)"}
	// TURN over TLS only (own TURN's TCP port out of reach, coturn
	// offering turns: alone); behind udp-blocked NATs the two paths above
	// are TURN over TCP.
	pathOwnTLS    = benchPath{"own-turn-tls", "punchd relay (own TURN, TLS)"}
	pathCoturnTLS = benchPath{"coturn-tls", "punchd relay (coturn, TLS)"}
	// pathHTTPS: A behind the https-only firewall, B behind the --nat
	// type, through a rendezvous on port 443 alone: A's relay is TURN
	// over TLS, chosen by ICE (not forced).
	pathHTTPS = benchPath{"https-only", "punchd relay (A https-only, TURN/TLS 443)"}
)

func allBenchPaths() []benchPath {
	return []benchPath{pathRaw, pathStock, pathDirect, pathDirect6, pathOwn, pathCoturn, pathOwnTLS, pathCoturnTLS, pathHTTPS}
}

func (p benchPath) punchd() bool { return p == pathDirect || p == pathDirect6 || p.relayed() }
func (p benchPath) relayed() bool {
	return p == pathOwn || p == pathCoturn || p == pathOwnTLS || p == pathCoturnTLS || p == pathHTTPS
}

// relay is the scenario's Relay option for p.
func (p benchPath) relay() string {
	switch p {
	case pathCoturn:
		return "coturn"
	case pathOwnTLS:
		return "tls"
	case pathCoturnTLS:
		return "coturn-tls"
	case pathHTTPS:
		return "443"
	}
	return ""
}

// benchConfig is one invocation of `punchd-lab bench`.
type benchConfig struct {
	bin, wg    string
	secs, runs int
	paths      []benchPath
	topos      []lab.NATType
	logLevel   string
	profileDir string // pprof CPU profiles during TCP x1 when set
}

func newBenchCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench --wireguard-go PATH",
		Short: "Throughput side by side: punchd direct and relayed, stock wireguard-go, the raw path (iperf3)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := needRoot(); err != nil {
				return err
			}
			f := cmd.Flags()
			var c benchConfig
			c.bin, _ = f.GetString("punchd")
			c.wg, _ = f.GetString("wireguard-go")
			c.secs, _ = f.GetInt("seconds")
			c.runs, _ = f.GetInt("runs")
			c.logLevel, _ = f.GetString("log-level")
			c.profileDir, _ = f.GetString("profile")
			if c.wg == "" {
				return fmt.Errorf("give --wireguard-go (bench/throughput.sh builds it from the module proxy)")
			}
			if c.runs < 1 || c.runs > 20 {
				return fmt.Errorf("--runs %d: use 1..20", c.runs)
			}
			if c.secs < 2 || c.secs > 120 {
				return fmt.Errorf("--seconds %d: use 2..120", c.secs)
			}
			keys, _ := f.GetStringSlice("paths")
			for _, k := range keys {
				i := slices.IndexFunc(allBenchPaths(), func(p benchPath) bool { return p.key == k })
				if i < 0 {
					return fmt.Errorf("--paths %q: use raw, wireguard-go, direct, direct-ipv6, own-turn, coturn, own-turn-tls, coturn-tls, https-only", k)
				}
				c.paths = append(c.paths, allBenchPaths()[i])
			}
			nats, _ := f.GetStringSlice("nat")
			for _, n := range nats {
				if n != string(lab.NATNone) && n != string(lab.NATPortRestricted) && n != string(lab.NATUDPBlocked) {
					return fmt.Errorf("--nat %q: use none, port-restricted, udp-blocked (relays over TCP/TLS)", n)
				}
				c.topos = append(c.topos, lab.NATType(n))
			}
			if c.profileDir != "" {
				if err := os.MkdirAll(c.profileDir, 0o755); err != nil {
					return fmt.Errorf("--profile: %w", err)
				}
			}
			return runBench(cmd.Context(), c)
		},
	}
	f := cmd.Flags()
	f.String("wireguard-go", "", "stock wireguard-go binary to compare with")
	f.Int("seconds", 10, "seconds per iperf3 run")
	f.Int("runs", 1, "rounds over every path; the table shows medians (and the TCP x1 range) over them")
	f.StringSlice("paths", []string{"raw", "wireguard-go", "direct", "own-turn", "coturn"}, "paths to measure: raw, wireguard-go, direct, direct-ipv6 (routed IPv6 through the NAT routers, symmetric on IPv4), own-turn, coturn, own-turn-tls, coturn-tls, https-only (A behind the 443-only firewall)")
	f.StringSlice("nat", []string{"none", "port-restricted"}, "NAT on both sides: none, port-restricted, udp-blocked (own-turn and coturn then relay over TCP)")
	f.String("log-level", "info", "log level of the punchd processes (debug costs relay throughput)")
	f.String("profile", "", "save pprof CPU profiles of the punchd processes during TCP x1 into this directory")
	return cmd
}

// benchSample is one measurement of one path in one round.
type benchSample struct {
	res      map[string]bench.Result
	rtt      time.Duration
	relayCPU map[string]time.Duration
	drops    map[string]int64 // UDP buffer drops in the lab per test
	// turn is how A's and B's relay candidates reach the TURN server
	// ("udp/udp", "udp/tcp"…) on relayed paths.
	turn string
	err  error
}

type benchRow struct {
	topo lab.NATType
	path benchPath
	runs []*benchSample
}

func runBench(ctx context.Context, c benchConfig) error {
	var rows []*benchRow
	for _, topo := range c.topos {
		for _, p := range c.paths {
			rows = append(rows, &benchRow{topo: topo, path: p})
		}
	}
	// Round by round, so that drift in the machine's load hits every path
	// of a round alike and ratios within a round stay fair.
	for run := 1; run <= c.runs; run++ {
		for _, row := range rows {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			fmt.Fprintf(os.Stderr, "round %d/%d: measuring %s over %s…\n", run, c.runs, row.path.name, row.topo)
			s := &benchSample{res: map[string]bench.Result{}, relayCPU: map[string]time.Duration{}, drops: map[string]int64{}}
			s.err = measure(ctx, c, run, row.topo, row.path, s)
			if s.err != nil {
				fmt.Fprintf(os.Stderr, "  %s: %v\n", row.path.name, s.err)
			}
			row.runs = append(row.runs, s)
		}
	}
	printBench(os.Stdout, rows, c.runs)
	return nil
}

func measure(ctx context.Context, c benchConfig, run int, topo lab.NATType, path benchPath, s *benchSample) error {
	dir, err := os.MkdirTemp("", "punchd-bench-")
	if err != nil {
		return err
	}
	// The daemons' logs are only worth keeping when something failed.
	defer func() {
		if s.err == nil {
			_ = os.RemoveAll(dir)
		} else {
			fmt.Fprintf(os.Stderr, "  logs kept in %s\n", dir)
		}
	}()
	opts := scenario.Options{Binary: c.bin, NATA: topo, NATB: topo, Dir: dir, LogLevel: c.logLevel}
	if path.relayed() && path != pathHTTPS {
		opts.UpArgs = []string{"--force-relay"}
	}
	if path == pathHTTPS {
		opts.NATA = lab.NATHTTPSOnly
	}
	if path == pathDirect6 {
		if topo == lab.NATNone {
			return fmt.Errorf("direct-ipv6 crosses routers: measure it with --nat port-restricted")
		}
		opts.IPv6, opts.NATA, opts.NATB = true, lab.NATSymmetric, lab.NATSymmetric
	}
	opts.Relay = path.relay()
	const debugAddr = "127.0.0.1:6060" // each process in its own namespace
	if c.profileDir != "" && path.punchd() {
		opts.UpArgs = append(opts.UpArgs, "--debug-listen", debugAddr)
		opts.RendezvousArgs = []string{"--debug-listen", debugAddr}
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
	case pathRaw:
		// Stop the daemons: the raw path is the underlay alone. Behind
		// NATs the peer is unreachable, so the raw path goes to a public
		// host through A's NAT.
		_ = r.Stop(r.A, 10*time.Second)
		_ = r.Stop(r.B, 10*time.Second)
		dst = to.Addr
		if topo != lab.NATNone {
			to, dst = r.R, r.R.Addr
		}
	case pathStock:
		_ = r.Stop(r.A, 10*time.Second)
		_ = r.Stop(r.B, 10*time.Second)
		pubA, pubB := r.A.Host.Addr, r.B.Host.Addr
		if r.A.Host.Router != nil {
			pubA, pubB = r.A.Host.Router.WANAddr, r.B.Host.Router.WANAddr
		}
		sw, err := bench.StartStockWG(ctx, c.wg, r.A.Host, r.B.Host, pubA, pubB)
		if err != nil {
			return err
		}
		defer sw.Close()
		dst, pids = sw.Addr[1], sw.PIDs()
	default:
		dst, pids = r.B.Overlay4, []int{r.A.PID(), r.B.PID()}
		if path.relayed() {
			relayPID = r.RelayPID()
		}
	}
	pingCtx, cancelPing := context.WithTimeout(ctx, 30*time.Second)
	_, err = scenario.FirstPing(pingCtx, from, dst, 20*time.Millisecond)
	cancelPing()
	if err != nil {
		return fmt.Errorf("no path: %w", err)
	}
	if path.punchd() {
		want := "direct"
		if path.relayed() {
			want = "relay"
		}
		var protos []string
		for _, n := range []*scenario.Node{r.A, r.B} {
			st, err := r.Status(ctx, n)
			if err != nil || len(st.Peers) != 1 || st.Peers[0].Path != want {
				return fmt.Errorf("path from %s is not %s: %+v %v", n.Name, want, st.Peers, err)
			}
			if rc := st.Peers[0].RemoteCandidate; path == pathDirect6 && (rc == nil || !strings.HasPrefix(rc.Address, "[")) {
				return fmt.Errorf("path from %s is not over IPv6: %+v", n.Name, rc)
			}
			if lc := st.Peers[0].LocalCandidate; lc != nil && lc.Type == "relay" {
				protos = append(protos, lc.RelayProtocol)
			} else {
				protos = append(protos, "-")
			}
		}
		if path.relayed() {
			s.turn = strings.Join(protos, "/")
		}
	}
	if s.rtt, err = bench.PingRTT(ctx, from, dst, 100); err != nil {
		return err
	}
	nss := map[string]bench.Namespace{"a": r.A.Host, "b": r.B.Host, "relay": r.R}
	for name, h := range map[string]*lab.Host{"nat-a": r.A.Host, "nat-b": r.B.Host} {
		if h.Router != nil {
			nss[name] = h.Router
		}
	}
	for _, t := range bench.Tests() {
		var relayBefore time.Duration
		if relayPID != 0 {
			relayBefore = bench.CPUTime(relayPID)
		}
		dropsBefore, err := bench.UDPDrops(nss)
		if err != nil {
			return err
		}
		waitProfiles := func() {}
		if c.profileDir != "" && path.punchd() && t.Name == "tcp1" {
			waitProfiles = startProfiles(ctx, c, r, run, topo, path, debugAddr)
		}
		res, err := bench.Iperf(ctx, from, to, dst, t, c.secs, pids)
		waitProfiles()
		if err != nil {
			return err
		}
		s.res[t.Name] = res
		if relayPID != 0 {
			s.relayCPU[t.Name] = bench.CPUTime(relayPID) - relayBefore
		}
		dropsAfter, err := bench.UDPDrops(nss)
		if err != nil {
			return err
		}
		var where []string
		for _, name := range slices.Sorted(maps.Keys(dropsAfter)) {
			if d := dropsAfter[name] - dropsBefore[name]; d > 0 {
				s.drops[t.Name] += d
				where = append(where, fmt.Sprintf("%s %d", name, d))
			}
		}
		if len(where) > 0 {
			fmt.Fprintf(os.Stderr, "  %s: UDP buffer drops: %s\n", t.Name, strings.Join(where, ", "))
		}
	}
	return nil
}

// startProfiles fetches CPU profiles of both daemons, and of the
// rendezvous when it relays, over most of the test; failures are reported
// and do not fail the measurement. It returns the wait for them.
func startProfiles(ctx context.Context, c benchConfig, r *scenario.Run, run int, topo lab.NATType, path benchPath, addr string) (wait func()) {
	var wg sync.WaitGroup
	hosts := map[string]*lab.Host{"a": r.A.Host, "b": r.B.Host}
	if path == pathOwn || path == pathOwnTLS {
		hosts["relay"] = r.R
	}
	secs := max(1, c.secs-2)
	for name, h := range hosts {
		file := filepath.Join(c.profileDir, fmt.Sprintf("%s_%s_%s_run%d.pprof", topo, path.key, name, run))
		wg.Go(func() {
			if err := bench.FetchProfile(ctx, h, addr, secs, file); err != nil {
				fmt.Fprintf(os.Stderr, "  profile: %v\n", err)
			}
		})
	}
	return wg.Wait
}
