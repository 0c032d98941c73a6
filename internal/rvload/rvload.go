// Package rvload measures how a real `punchd rendezvous` holds up on
// loopback: many peers registered with real proofs and held, signaling
// latency between active pairs while the rest idle, a storm of peers
// connecting at once, and the same latency while bad clients flood the
// server. Peers connect from many 127.0.0.x source addresses, since the
// server caps connections per address. Every phase is bounded in time and
// count; traffic never leaves loopback.
package rvload

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/punchd/punchd/internal/identity"
	"github.com/punchd/punchd/internal/rvclient"
)

// Config says how hard to push. Zero values get defaults.
type Config struct {
	Binary string // the punchd binary to run as `punchd rendezvous`
	// Command, when set, makes the server's command for a listen address
	// instead (tests run a server of their own); it must log JSON to
	// stderr.
	Command func(listen string) *exec.Cmd
	// ServerArgs are added to `punchd rendezvous` (e.g. --debug-listen).
	ServerArgs []string
	// Peers are registered (in pairs that watch each other) and held.
	Peers int // default 10,000
	// ActivePairs of them exchange offer/answer rounds while the rest
	// idle, PairRate rounds per second each.
	ActivePairs int     // default 1,000
	PairRate    float64 // default 2
	// StormPeers connect all at once while Peers are held; 0: Peers.
	// Negative: no storm.
	StormPeers int
	// StormWatch is how long held peers are watched after the storm
	// for a lost registration; default 10 s.
	StormWatch time.Duration
	// Flood runs bad clients during a second latency window: FloodRate
	// bad connections per second (aborted handshakes, junk frames,
	// oversized frames) and FloodSpammers registered clients sending
	// to strangers over the rate limit.
	Flood         bool
	FloodRate     int // default 500
	FloodSpammers int // default 20; negative: none
	// Idle is how long idle CPU is measured; Latency each latency window.
	Idle    time.Duration // default 20 s
	Latency time.Duration // default 10 s
	// PeersPerSource peers share one 127.0.x.y source address (the
	// server's per-address cap is 64); default 50.
	PeersPerSource int
	// CPUProfile, when set, writes a CPU profile of this process (the
	// load clients) during the flooded latency window there.
	CPUProfile string
	// ServerLog, when set, keeps the server's log there (at debug level:
	// every peer that left, and why), to attribute lost registrations.
	ServerLog string
	Log       *slog.Logger
}

func (c *Config) defaults() {
	if c.Peers <= 0 {
		c.Peers = 10000
	}
	c.Peers += c.Peers % 2
	if c.ActivePairs <= 0 {
		c.ActivePairs = 1000
	}
	c.ActivePairs = min(c.ActivePairs, c.Peers/2)
	if c.PairRate <= 0 {
		c.PairRate = 2
	}
	if c.StormPeers == 0 {
		c.StormPeers = c.Peers
	}
	if c.StormWatch <= 0 {
		c.StormWatch = 10 * time.Second
	}
	if c.FloodRate <= 0 {
		c.FloodRate = 500
	}
	if c.FloodSpammers == 0 {
		c.FloodSpammers = 20
	}
	if c.Idle <= 0 {
		c.Idle = 20 * time.Second
	}
	if c.Latency <= 0 {
		c.Latency = 10 * time.Second
	}
	if c.PeersPerSource <= 0 {
		c.PeersPerSource = 50
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

// loadGOGC is the load process's GC percent while it runs (see Run).
const loadGOGC = 400

// Latency summarises one latency window: one-way delivery times of
// sealed offers and answers (sender and receiver share a clock).
type Latency struct {
	Pairs     int
	Sealed    int           // messages sealed ahead of the window
	SealTime  time.Duration // how long that took (not in the window)
	ServerCPU float64       // fraction of a core, during the window
	LoadCPU   float64       // this process (the clients), the same
	// ServerWait and LoadWait are the seconds per second the processes'
	// threads waited on a run queue for a CPU during the window (other
	// work on a shared machine).
	ServerWait, LoadWait float64
	// LoadLate50 and LoadLate99 are how late this process's own timer
	// wake-ups were during the window (see schedProbe): the part of a
	// message's latency that is the load's scheduling, not the server.
	LoadLate50, LoadLate99 time.Duration
	LoadAvg                string // the machine's 1-minute load average after the window
	Messages               int
	PerSecond              float64
	Lost                   int // rounds without an answer within 2 s
	P50, P99               time.Duration
	Max                    time.Duration
}

func (l Latency) String() string {
	perMsg := func(cpu float64) string {
		if l.PerSecond <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f µs", cpu/l.PerSecond*1e6)
	}
	return fmt.Sprintf("p50 %s  p99 %s  max %s  (%d pairs, %d messages, %.0f/s, %d rounds lost; CPU: server %.0f%% of a core (%s/message), load clients %.0f%% (%s/message); waiting for a CPU: server %.2f s/s, load %.2f s/s; load's own wake-ups late by p50 %s, p99 %s; load average %s; %d messages sealed ahead in %s)",
		ms(l.P50), ms(l.P99), ms(l.Max), l.Pairs, l.Messages, l.PerSecond, l.Lost,
		100*l.ServerCPU, perMsg(l.ServerCPU), 100*l.LoadCPU, perMsg(l.LoadCPU), l.ServerWait, l.LoadWait, ms(l.LoadLate50), ms(l.LoadLate99), l.LoadAvg,
		l.Sealed, l.SealTime.Round(time.Millisecond))
}

// loadAvg is the machine's 1-minute load average, as /proc says it.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "?"
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

// Report holds every figure the run measured.
type Report struct {
	Peers            int
	BaseRSS          int64
	BaseFDs          int
	FDLimit          string // the server's "Max open files" soft limit
	RegisterTime     time.Duration
	RegisterFailed   int
	HeldRSS          int64
	HeldFDs          int
	HeldThreads      int64
	IdleCPU          float64 // fraction of one core
	Quiet            Latency
	StormPeers       int
	StormHeld        int // peers held while the storm ran
	StormFDRoom      int // peer connections that fit both processes' fd limits, when fewer than Peers+StormPeers
	StormTime        time.Duration
	StormFailed      int
	StormErr         string   // the first failed attempt, if any
	StormRetries     int64    // attempts that failed and were tried again
	StormLost        int      // already registered peers that registered again
	StormLostWhy     []string // the held clients' reasons for dropping their connection during the storm
	StormRSSPeak     int64
	Flooded          Latency
	FloodConns       int64
	FloodFrames      int64
	FloodPeakFDs     int
	FloodLost        int // held peers that registered again during the flood
	AfterFDs         int
	AfterRSS         int64
	AfterWait        time.Duration
	ServerAlive      bool
	JunkLogLines     int
	JunkLogLinesCaus map[string]int
}

// Print writes the report as a table a person reads.
func (r Report) Print(w io.Writer) {
	mib := func(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	fmt.Fprintf(w, "rendezvous load on loopback, %d peers (real registration proofs)\n", r.Peers)
	fmt.Fprintf(w, "  baseline:             RSS %s, %d fds (limit %s)\n", mib(r.BaseRSS), r.BaseFDs, r.FDLimit)
	fmt.Fprintf(w, "  register %d:       %s (%.0f/s), %d failed\n", r.Peers, r.RegisterTime.Round(time.Millisecond), float64(r.Peers)/r.RegisterTime.Seconds(), r.RegisterFailed)
	fmt.Fprintf(w, "  held:                 RSS %s (%.1f KiB/peer), %d fds, %d threads\n", mib(r.HeldRSS), float64(r.HeldRSS-r.BaseRSS)/1024/float64(max(r.Peers, 1)), r.HeldFDs, r.HeldThreads)
	fmt.Fprintf(w, "  idle CPU:             %.1f%% of a core\n", 100*r.IdleCPU)
	fmt.Fprintf(w, "  latency, quiet:       %s\n", r.Quiet)
	if r.StormPeers > 0 {
		fmt.Fprintf(w, "  storm of %d at once:  %d held meanwhile; registered in %s, %d failed for good (%d attempts tried again), %d of the %d held peers lost their registration, RSS peak %s\n",
			r.StormPeers, r.StormHeld, r.StormTime.Round(time.Millisecond), r.StormFailed, r.StormRetries, r.StormLost, r.StormHeld, mib(r.StormRSSPeak))
		if r.StormFDRoom > 0 {
			fmt.Fprintf(w, "                        FD LIMIT: %d held + %d storm peers do not fit (%d peer connections fit the fd limits of both processes, server limit %s): %d held during the storm\n",
				r.Peers, r.StormPeers, r.StormFDRoom, r.FDLimit, r.StormHeld)
		}
		if r.StormErr != "" {
			fmt.Fprintf(w, "                        first failed attempt: %s\n", r.StormErr)
		}
		for _, why := range r.StormLostWhy {
			fmt.Fprintf(w, "                        held client: %s\n", why)
		}
	}
	if r.Flooded.Messages > 0 {
		ratio := func(a, b time.Duration) string { return fmt.Sprintf("%.2fx", float64(a)/float64(max(b, 1))) }
		fmt.Fprintf(w, "  latency, flooded:     %s\n", r.Flooded)
		fmt.Fprintf(w, "                        p50 %s, p99 %s of quiet; %d bad connections, %d junk frames; peak %d fds; %d held peers lost their registration\n",
			ratio(r.Flooded.P50, r.Quiet.P50), ratio(r.Flooded.P99, r.Quiet.P99), r.FloodConns, r.FloodFrames, r.FloodPeakFDs, r.FloodLost)
		fmt.Fprintf(w, "  after the flood:      %d fds (held: %d), RSS %s (held: %s), %s later; server alive: %v\n",
			r.AfterFDs, r.HeldFDs, mib(r.AfterRSS), mib(r.HeldRSS), r.AfterWait.Round(time.Second), r.ServerAlive)
		causes := make([]string, 0, len(r.JunkLogLinesCaus))
		for c, n := range r.JunkLogLinesCaus {
			causes = append(causes, fmt.Sprintf("%s %d", c, n))
		}
		slices.Sort(causes)
		fmt.Fprintf(w, "  junk log lines:       %d in the whole run (%s)\n", r.JunkLogLines, strings.Join(causes, ", "))
	}
}

// Run starts the server, runs every phase and stops the server.
func Run(ctx context.Context, cfg Config) (Report, error) {
	cfg.defaults()
	// The load holds every client in one process, hundreds of MiB of
	// heap: collecting it as often as GOGC=100 would have its goroutines
	// (which record the latency) assist the collector for hundreds of
	// milliseconds at a time. A rarer collection makes the load cheaper
	// and its figures the server's; the server keeps its own setting.
	if os.Getenv("GOGC") == "" {
		defer debug.SetGCPercent(debug.SetGCPercent(loadGOGC))
	}
	log := cfg.Log
	var rep Report
	rep.Peers = cfg.Peers

	dir, err := os.MkdirTemp("", "punchd-load-")
	if err != nil {
		return rep, err
	}
	defer os.RemoveAll(dir)
	command := cfg.Command
	if command == nil {
		command = func(listen string) *exec.Cmd {
			args := []string{"rendezvous", "--listen", listen, "--stun-listen", "", "--log-format", "json"}
			if cfg.ServerLog != "" {
				args = append(args, "--log-level", "debug")
			}
			args = append(args, cfg.ServerArgs...)
			return exec.Command(cfg.Binary, args...)
		}
	}
	logPath := filepath.Join(dir, "server.log")
	if cfg.ServerLog != "" {
		logPath = cfg.ServerLog
	}
	srv, err := startServer(ctx, command, logPath)
	if err != nil {
		return rep, err
	}
	defer srv.stop()
	p := srv.proc
	rep.BaseRSS, _ = p.rss()
	rep.BaseFDs, _ = p.fds()
	rep.FDLimit = p.fdLimit()

	// Phase 1: register and hold.
	log.Info("registering", "peers", cfg.Peers)
	held := newFleet(srv.url, cfg.PeersPerSource, 1)
	defer held.close()
	start := time.Now()
	rep.RegisterFailed = held.connect(ctx, cfg.Peers, 256)
	rep.RegisterTime = time.Since(start)
	if rep.RegisterFailed > cfg.Peers/100 {
		return rep, fmt.Errorf("%d of %d peers failed to register (first error: %v)", rep.RegisterFailed, cfg.Peers, held.firstErr())
	}
	if !sleep(ctx, 5*time.Second) { // let the registration garbage go
		return rep, ctx.Err()
	}

	// Phase 2: idle.
	log.Info("measuring idle CPU", "for", cfg.Idle)
	c0, _ := p.cpu()
	t0 := time.Now()
	if !sleep(ctx, cfg.Idle) {
		return rep, ctx.Err()
	}
	c1, _ := p.cpu()
	rep.IdleCPU = float64(c1-c0) / float64(time.Since(t0))
	rep.HeldRSS, _ = p.rss()
	rep.HeldFDs, _ = p.fds()
	rep.HeldThreads, _ = p.threads()

	// Phase 3: latency between active pairs while the rest idle.
	log.Info("measuring latency", "pairs", cfg.ActivePairs, "rate", cfg.PairRate, "for", cfg.Latency)
	rep.Quiet = held.measure(ctx, p, cfg.ActivePairs, cfg.PairRate, cfg.Latency)

	// Phase 4: a storm of new peers at once.
	if cfg.StormPeers > 0 {
		// Held and storm peers cost one fd each in both processes: when
		// they would not fit, fewer peers are held during the storm.
		if room := fdRoom(p) - cfg.StormPeers; room < len(held.peers) {
			rep.StormFDRoom = fdRoom(p)
			log.Info("fewer peers held during the storm, for the fd limits", "held", max(room, 0), "storm", cfg.StormPeers)
			held.release(len(held.peers) - max(room, 0))
			waitFDs(ctx, p, rep.BaseFDs+len(held.peers)+16, 20*time.Second)
		}
		rep.StormHeld = len(held.peers)
		log.Info("storm", "peers", cfg.StormPeers, "held", rep.StormHeld)
		before := held.registrations()
		whyBefore := held.why.snapshot()
		storm := newFleet(srv.url, cfg.PeersPerSource, 2)
		start := time.Now()
		rep.StormFailed = storm.connect(ctx, cfg.StormPeers, cfg.StormPeers)
		rep.StormTime = time.Since(start)
		if err := storm.firstErr(); err != nil {
			rep.StormErr = err.Error()
		}
		rep.StormRetries = storm.retries.Load()
		rep.StormRSSPeak, _ = p.hwm()
		sleep(ctx, cfg.StormWatch) // a held peer that lost its registration shows now
		rep.StormPeers = cfg.StormPeers
		rep.StormLost = held.lostSince(before)
		rep.StormLostWhy = held.why.since(whyBefore, 6)
		storm.close()
		waitFDs(ctx, p, rep.HeldFDs+16, 20*time.Second)
	}

	// Phase 5: latency again, with a flood of bad clients.
	if cfg.Flood {
		log.Info("flood", "bad_conns_per_s", cfg.FloodRate, "spammers", cfg.FloodSpammers)
		before := held.registrations()
		fctx, stop := context.WithCancel(ctx)
		fl := &flood{addr: srv.addr, rate: cfg.FloodRate, spammers: cfg.FloodSpammers, url: srv.url}
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			fl.run(fctx)
		}()
		var peak atomic.Int64
		wg.Add(1)
		go func() {
			defer wg.Done()
			for fctx.Err() == nil {
				if n, err := p.fds(); err == nil && int64(n) > peak.Load() {
					peak.Store(int64(n))
				}
				sleep(fctx, 200*time.Millisecond)
			}
		}()
		sleep(ctx, time.Second) // the flood at full rate first
		stopProfile := startProfile(cfg.CPUProfile, log)
		rep.Flooded = held.measure(ctx, p, cfg.ActivePairs, cfg.PairRate, cfg.Latency)
		stopProfile()
		stop()
		wg.Wait()
		rep.FloodConns, rep.FloodFrames = fl.conns.Load(), fl.frames.Load()
		rep.FloodPeakFDs = int(peak.Load())
		rep.FloodLost = held.lostSince(before)
		start := time.Now()
		waitFDs(ctx, p, rep.HeldFDs+16, 30*time.Second)
		waitRSS(ctx, p, rep.HeldRSS+rep.HeldRSS/4, 30*time.Second)
		rep.AfterWait = time.Since(start)
		rep.AfterFDs, _ = p.fds()
		rep.AfterRSS, _ = p.rss()
	}
	rep.ServerAlive = srv.alive()
	held.close()
	srv.stop()
	rep.JunkLogLines, rep.JunkLogLinesCaus = countJunkLines(logPath)
	return rep, nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// waitFDs waits (bounded) for the server's fd count to fall to want.
func waitFDs(ctx context.Context, p proc, want int, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if n, err := p.fds(); err != nil || n <= want {
			return
		}
		if !sleep(ctx, 200*time.Millisecond) {
			return
		}
	}
}

// waitRSS waits (bounded) for the server's RSS to fall to want.
func waitRSS(ctx context.Context, p proc, want int64, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if n, err := p.rss(); err != nil || n <= want {
			return
		}
		if !sleep(ctx, time.Second) {
			return
		}
	}
}

type server struct {
	cmd  *exec.Cmd
	proc proc
	addr string
	url  string
	done chan struct{}
	once sync.Once
}

func startServer(ctx context.Context, command func(string) *exec.Cmd, logPath string) (*server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := command(addr)
	bin := cmd.Path
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s rendezvous: %w (build it with `make build`, or give --punchd)", bin, err)
	}
	s := &server{cmd: cmd, proc: proc(cmd.Process.Pid), addr: addr, url: "http://" + addr, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(s.done)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(s.url + "/healthz")
		if err == nil {
			resp.Body.Close()
			return s, nil
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("%s rendezvous exited at start: see its log", bin)
		case <-ctx.Done():
			s.stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("%s rendezvous did not answer /healthz within 10 s", bin)
		}
	}
}

func (s *server) alive() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

func (s *server) stop() {
	s.once.Do(func() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	})
}

// countJunkLines counts the server's log lines about junk, per cause.
func countJunkLines(path string) (int, map[string]int) {
	f, err := os.Open(path)
	if err != nil {
		return 0, nil
	}
	defer f.Close()
	per := map[string]int{}
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l struct {
			Cause string `json:"cause"`
		}
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.Cause != "" {
			n++
			per[l.Cause]++
		}
	}
	return n, per
}

// fleet is a set of peers connected through the real client, paired:
// peer 2i and 2i+1 watch each other.
type fleet struct {
	url      string
	perSrc   int
	srcBlock byte // 127.<block>.x.y
	mu       sync.Mutex
	peers    []*peer
	err      error // the first failed attempt
	retries  atomic.Int64
	clients  map[int]*http.Client
	why      reasons // why its clients dropped their connections
}

type peer struct {
	key     identity.PrivateKey
	pub     identity.PublicKey // key's, derived once (a scalar multiplication)
	c       atomic.Pointer[rvclient.Client]
	regs    atomic.Int64
	partner *peer
	// latency rounds
	answers chan int
	win     atomic.Pointer[window]
}

func newFleet(url string, perSrc int, block byte) *fleet {
	return &fleet{url: url, perSrc: perSrc, srcBlock: block, clients: map[int]*http.Client{}}
}

// source is the HTTP client dialing from the i-th peer's loopback address.
func (f *fleet) source(i int) *http.Client {
	n := i / f.perSrc
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.clients[n]; c != nil {
		return c
	}
	ip := net.IPv4(127, f.srcBlock+byte(n/250), byte(n%250+1), 1)
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 10 * time.Second}
	c := &http.Client{Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: -1}}
	f.clients[n] = c
	return c
}

// connect registers n peers, parallel at a time, and returns how many
// failed.
func (f *fleet) connect(ctx context.Context, n, parallel int) int {
	base := len(f.peers)
	peers := make([]*peer, n)
	for i := range peers {
		k, err := identity.GeneratePrivateKey()
		if err != nil {
			panic(err) // crypto/rand does not fail on Linux
		}
		peers[i] = &peer{key: k, pub: k.PublicKey(), answers: make(chan int, poolSize)}
	}
	for i := 0; i+1 < n; i += 2 {
		peers[i].partner, peers[i+1].partner = peers[i+1], peers[i]
	}
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i, p := range peers {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := f.dial(ctx, base+i, p); err != nil {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	f.mu.Lock()
	f.peers = append(f.peers, peers...)
	f.mu.Unlock()
	return int(failed.Load())
}

func (f *fleet) firstErr() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

func (f *fleet) dial(ctx context.Context, i int, p *peer) error {
	var watch []identity.PublicKey
	if p.partner != nil {
		watch = []identity.PublicKey{p.partner.pub}
	}
	// A daemon whose first connection fails tries again (systemd
	// restarts it); so does the load, a few times within a minute, and
	// counts the retries.
	deadline := time.Now().Add(time.Minute)
	for attempt := 0; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		c, err := rvclient.Connect(cctx, rvclient.ClientConfig{
			URL: f.url, Key: p.key, Watch: watch, HTTPClient: f.source(i),
			Logger:       slog.New(reasonHandler{&f.why}),
			OnRegistered: func(rvclient.Registration) { p.regs.Add(1) },
			OnSealed:     p.onSealed,
		})
		cancel()
		if err == nil {
			p.c.Store(c)
			return nil
		}
		f.retries.Add(1)
		f.mu.Lock()
		if f.err == nil {
			f.err = err
		}
		f.mu.Unlock()
		if attempt >= 4 || time.Now().After(deadline) || !sleep(ctx, time.Duration(500<<attempt)*time.Millisecond) {
			return err
		}
	}
}

func (f *fleet) registrations() []int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]int64, len(f.peers))
	for i, p := range f.peers {
		out[i] = p.regs.Load()
	}
	return out
}

// lostSince counts peers that registered again since before was taken,
// or are not registered right now (lost, and still reconnecting).
func (f *fleet) lostSince(before []int64) int {
	f.mu.Lock()
	peers := f.peers
	f.mu.Unlock()
	n := 0
	for i := range min(len(before), len(peers)) {
		c := peers[i].c.Load()
		if peers[i].regs.Load() > before[i] || c == nil || !c.Connected() {
			n++
		}
	}
	return n
}

// release closes the last n peers (n even, so pairs stay pairs) and
// drops them from the fleet.
func (f *fleet) release(n int) {
	f.mu.Lock()
	n = min(n+n%2, len(f.peers))
	gone := f.peers[len(f.peers)-n:]
	f.peers = f.peers[:len(f.peers)-n]
	f.mu.Unlock()
	closeAll(gone)
}

func (f *fleet) close() {
	f.mu.Lock()
	peers := f.peers
	f.peers = nil
	f.mu.Unlock()
	closeAll(peers)
}

func closeAll(peers []*peer) {
	sem := make(chan struct{}, 512)
	var wg sync.WaitGroup
	for _, p := range peers {
		if c := p.c.Load(); c != nil {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				c.Close()
			}()
		}
	}
	wg.Wait()
}

// payloadSize is about the size of a real offer with candidates.
const payloadSize = 640

// poolSize sealed offers and as many answers per active pair are made
// before a window and used in turn. The server never opens them, so
// sending the same bytes again costs it what a fresh message would; a
// slot is used again only poolSize rounds (2 s at 2 rounds/s) later, when
// a message still on its way is counted lost anyway.
const poolSize = 4

// window is one latency window: every sealed message of every active
// pair, made before the window, found by its correlation id (the first
// bytes of its ephemeral key, random per message) without opening it.
type window struct {
	base  time.Time
	slots map[uint64]*slot
	rec   recorder
}

// slot is one sealed message.
type slot struct {
	sealed []byte
	to     identity.PublicKey
	from   *peer
	idx    int
	answer *slot        // an offer's answer; nil for an answer
	sent   atomic.Int64 // ns since window.base + 1 while on its way; 0 otherwise
}

// corrID is a sealed message's correlation id: bytes 1..8 are the start
// of its Noise ephemeral key (see rvclient.Client.Seal).
func corrID(sealed []byte) (uint64, bool) {
	if len(sealed) < 9 {
		return 0, false
	}
	return binary.BigEndian.Uint64(sealed[1:9]), true
}

func (w *window) now() int64 { return int64(time.Since(w.base)) + 1 }

func (w *window) send(ctx context.Context, s *slot) error {
	c := s.from.c.Load()
	if c == nil {
		return rvclient.ErrNotConnected
	}
	s.sent.Store(w.now())
	sctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	return c.SendSealed(sctx, s.to, s.sealed)
}

type recorder struct {
	mu  sync.Mutex
	lat []time.Duration
}

func (r *recorder) add(d time.Duration) {
	r.mu.Lock()
	r.lat = append(r.lat, d)
	r.mu.Unlock()
}

// onSealed takes a message without opening it: it is recorded by its
// correlation id, and an offer is answered with the answer sealed for it.
func (p *peer) onSealed(_ identity.PublicKey, b []byte) {
	w := p.win.Load()
	if w == nil {
		return
	}
	id, ok := corrID(b)
	if !ok {
		return
	}
	s := w.slots[id]
	if s == nil {
		return
	}
	sent := s.sent.Swap(0)
	if sent == 0 {
		return // a duplicate, or its slot was reused
	}
	w.rec.add(time.Duration(w.now() - sent))
	if a := s.answer; a != nil {
		// The callback runs on the client's reader: sending from here
		// would let one slow write stall the reader.
		go func() { _ = w.send(context.Background(), a) }()
		return
	}
	select {
	case p.answers <- s.idx:
	default:
	}
}

// prepare seals poolSize offers and answers for each active pair, on
// every core, and returns the window (not yet started) and how long the
// sealing took.
func (f *fleet) prepare(pairs int) (*window, []*peer, time.Duration) {
	f.mu.Lock()
	peers := f.peers
	f.mu.Unlock()
	var active []*peer
	for i := 0; i+1 < len(peers) && len(active) < pairs; i += 2 {
		if peers[i].c.Load() != nil && peers[i+1].c.Load() != nil {
			active = append(active, peers[i])
		}
	}
	start := time.Now()
	type job struct {
		p  *peer
		ss []*slot // offers then answers
	}
	jobs := make([]job, len(active))
	payload := make([]byte, payloadSize)
	for i := range payload {
		payload[i] = 'a' + byte(i%26)
	}
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(active) {
					return
				}
				p := active[i]
				ss := make([]*slot, 2*poolSize)
				for k := range ss {
					from, to := p, p.partner
					if k >= poolSize {
						from, to = p.partner, p
					}
					s := &slot{from: from, to: to.pub, idx: k % poolSize}
					if c := from.c.Load(); c != nil {
						s.sealed, _ = c.Seal(s.to, payload)
					}
					ss[k] = s
				}
				for k := range poolSize {
					ss[k].answer = ss[poolSize+k]
				}
				jobs[i] = job{p: p, ss: ss}
			}
		}()
	}
	wg.Wait()
	w := &window{slots: make(map[uint64]*slot, len(active)*2*poolSize)}
	var ok []*peer
	for _, j := range jobs {
		good := true
		for _, s := range j.ss {
			id, fine := corrID(s.sealed)
			if !fine || w.slots[id] != nil {
				good = false // a client went away while sealing
			}
		}
		if !good {
			continue
		}
		for _, s := range j.ss {
			id, _ := corrID(s.sealed)
			w.slots[id] = s
		}
		ok = append(ok, j.p)
	}
	return w, ok, time.Since(start)
}

// measure seals ahead, then runs latency and adds the CPU both sides used
// meanwhile (the sealing is not in it).
func (f *fleet) measure(ctx context.Context, server proc, pairs int, rate float64, d time.Duration) Latency {
	w, active, prep := f.prepare(pairs)
	self := proc(os.Getpid())
	s0, _ := server.cpu()
	l0, _ := self.cpu()
	sw0, _ := server.runWait()
	lw0, _ := self.runWait()
	t0 := time.Now()
	probe := startSchedProbe()
	l := f.latency(ctx, w, active, rate, d)
	l.LoadLate50, l.LoadLate99 = probe.end()
	el := float64(time.Since(t0))
	s1, _ := server.cpu()
	l1, _ := self.cpu()
	sw1, _ := server.runWait()
	lw1, _ := self.runWait()
	l.ServerCPU, l.LoadCPU = float64(s1-s0)/el, float64(l1-l0)/el
	l.ServerWait, l.LoadWait = float64(sw1-sw0)/el, float64(lw1-lw0)/el
	l.LoadAvg = loadAvg()
	l.Pairs, l.Sealed, l.SealTime = len(active), 2*poolSize*len(active), prep
	return l
}

// latency runs offer/answer rounds between the active pairs at rate per
// second each for d.
func (f *fleet) latency(ctx context.Context, w *window, active []*peer, rate float64, d time.Duration) Latency {
	w.base = time.Now()
	for _, p := range active {
		p.win.Store(w)
		p.partner.win.Store(w)
	}
	var lost atomic.Int64
	var wg sync.WaitGroup
	every := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	end := start.Add(d)
	offers := make(map[*peer][]*slot, len(active))
	for _, s := range w.slots {
		if s.answer != nil {
			if offers[s.from] == nil {
				offers[s.from] = make([]*slot, poolSize)
			}
			offers[s.from][s.idx] = s
		}
	}
	for i, p := range active {
		pool := offers[p]
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Spread the pairs' rounds over the interval.
			if !sleep(ctx, every*time.Duration(i)/time.Duration(len(active))) {
				return
			}
			for seq := 0; time.Now().Before(end) && ctx.Err() == nil; seq++ {
				next := time.Now().Add(every)
				if !p.round(ctx, w, pool[seq%poolSize]) {
					lost.Add(1)
				}
				if !sleep(ctx, time.Until(next)) {
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	for _, p := range active {
		p.win.Store(nil)
		p.partner.win.Store(nil)
	}
	w.rec.mu.Lock()
	lat := w.rec.lat
	w.rec.mu.Unlock()
	slices.Sort(lat)
	out := Latency{Messages: len(lat), PerSecond: float64(len(lat)) / elapsed.Seconds(), Lost: int(lost.Load())}
	if len(lat) > 0 {
		out.P50 = lat[len(lat)/2]
		out.P99 = lat[len(lat)*99/100]
		out.Max = lat[len(lat)-1]
	}
	return out
}

// round sends an offer to the partner and waits for its answer.
func (p *peer) round(ctx context.Context, w *window, offer *slot) bool {
	for len(p.answers) > 0 { // late answers of lost rounds
		<-p.answers
	}
	lost := time.NewTimer(2 * time.Second)
	defer lost.Stop()
	if err := w.send(ctx, offer); err != nil {
		return false
	}
	for {
		select {
		case got := <-p.answers:
			if got == offer.idx {
				return true
			}
		case <-lost.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// sendTimeout bounds a Send. It is long on purpose: a write whose
// context expires closes the WebSocket, and the peer would register
// again. A slow round is counted lost after 2 s either way.
const sendTimeout = 30 * time.Second

// flood runs bad clients from 127.3.x.y until ctx ends.
type flood struct {
	addr, url string
	rate      int
	spammers  int
	conns     atomic.Int64
	frames    atomic.Int64
}

func (fl *flood) run(ctx context.Context) {
	var wg sync.WaitGroup
	// Spammers: registered clients (real proofs) sending to strangers
	// as fast as they can, far over the rate limit.
	spam := newFleet(fl.url, 50, 4)
	spam.connect(ctx, max(fl.spammers, 0), max(fl.spammers, 1))
	defer spam.close()
	strangerKey, _ := identity.GeneratePrivateKey()
	// Derived once: a public key costs a scalar multiplication, and the
	// load's CPU goes to the flood's frames, not to its own arithmetic.
	stranger := strangerKey.PublicKey()
	for _, p := range spam.peers {
		c := p.c.Load()
		if c == nil {
			continue
		}
		// Sealed once: the load's CPU goes to the flood, not to Noise.
		junk, err := c.Seal(stranger, []byte("junk for a stranger"))
		if err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				sctx, cancel := context.WithTimeout(ctx, time.Second)
				err := c.SendSealed(sctx, stranger, junk)
				cancel()
				if err != nil {
					sleep(ctx, 10*time.Millisecond)
					continue
				}
				fl.frames.Add(1)
				sleep(ctx, time.Millisecond)
			}
		}()
	}
	// Bad connections at fl.rate per second, each from the next of 250
	// source addresses in 127.3.0.0/16 (the per-address cap is 64).
	tick := time.NewTicker(time.Second / time.Duration(fl.rate))
	defer tick.Stop()
	sem := make(chan struct{}, 256)
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-tick.C:
		}
		select {
		case sem <- struct{}{}:
		default:
			continue // the server is slow to answer; do not pile up
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			src := net.IPv4(127, 3, byte(i/250%250), byte(i%250+1))
			fl.conns.Add(1)
			if n := badClient(fl.addr, src, i%4); n > 0 {
				fl.frames.Add(int64(n))
			}
		}()
	}
}

// badClient misbehaves in one of four ways and returns how many junk
// frames it sent: 0 aborts after the upgrade request, 1 after reading the
// challenge, 2 sends junk frames instead of a registration, 3 announces
// an oversized frame.
func badClient(addr string, src net.IP, how int) int {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return 0
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	req := "GET /v1/ws HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil || how == 0 {
		return 0
	}
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		return 0
	}
	switch how {
	case 1:
		_, _ = r.ReadByte()
		return 0
	case 2:
		n := 0
		for _, junk := range []string{"{", `{"v":1,"type":"send","to":"nobody","payload":"AAAA"}`, strings.Repeat("\x00", 100)} {
			if _, err := c.Write(clientFrame(1, []byte(junk))); err != nil {
				break
			}
			n++
		}
		_, _ = io.Copy(io.Discard, r) // until the server closes
		return n
	default:
		hdr := []byte{0x81, 0x80 | 127, 0, 0, 0, 0, 0, 0x10, 0, 0, 1, 2, 3, 4} // 1 MiB, masked
		_, _ = c.Write(append(hdr, make([]byte, 1024)...))
		_, _ = io.Copy(io.Discard, r)
		return 1
	}
}

// clientFrame encodes a masked WebSocket frame (clients must mask).
func clientFrame(opcode byte, payload []byte) []byte {
	b := []byte{0x80 | opcode}
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n < 1<<16:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	mask := [4]byte{0x12, 0x34, 0x56, 0x78}
	b = append(b, mask[:]...)
	for i, c := range payload {
		b = append(b, c^mask[i%4])
	}
	return b
}
