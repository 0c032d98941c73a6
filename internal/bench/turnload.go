package bench

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/pion/turn/v5"

	"github.com/punchd/punchd/internal/scenario"
)

// TURNLoadConfig is one run of the TURN allocation load: a real `punchd
// rendezvous` on loopback and clients that allocate, as a punchd peer
// does, with REST credentials under the rendezvous' secret.
type TURNLoadConfig struct {
	Binary      string // punchd
	Allocations int    // in total, bounded
	Concurrency int    // clients allocating at once
	Transport   string // udp, tcp or tls
	// PerSource allocations per client address (127.0.0.x): under the
	// server's per-IP quota.
	PerSource int
	Dir       string // logs; a temporary directory when empty
	Log       func(format string, args ...any)
}

// TURNLoadResult is what one run measured.
type TURNLoadResult struct {
	Allocated, Failed int
	Elapsed           time.Duration
	PerSecond         float64
	P50, P99          time.Duration // one Allocate (two round trips: 401, then success)
	RSSBefore         int64         // KiB, server idle
	RSSHeld           int64         // KiB, server holding every allocation
	ServerCPU         time.Duration // the server's CPU time while allocating
	FailedSample      string
}

// TURNLoad runs the load; bounded by the allocation count and by ctx.
func TURNLoad(ctx context.Context, cfg TURNLoadConfig) (TURNLoadResult, error) {
	var res TURNLoadResult
	if cfg.Allocations < 1 || cfg.Allocations > 20000 {
		return res, fmt.Errorf("allocations %d: use 1..20000", cfg.Allocations)
	}
	if cfg.Concurrency < 1 {
		cfg.Concurrency = 16
	}
	if cfg.PerSource < 1 {
		cfg.PerSource = 16
	}
	if cfg.Allocations/cfg.PerSource > 250 {
		return res, fmt.Errorf("%d allocations at %d per source need more than the 250 loopback addresses used", cfg.Allocations, cfg.PerSource)
	}
	if cfg.Log == nil {
		cfg.Log = func(string, ...any) {}
	}
	dir := cfg.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "punchd-turnload-")
		if err != nil {
			return res, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	ports, err := freePorts(3)
	if err != nil {
		return res, err
	}
	secret := rand.Text()
	stunAddr := "127.0.0.1:" + strconv.Itoa(ports[0])
	tlsAddr := "127.0.0.1:" + strconv.Itoa(ports[2])
	args := []string{"rendezvous", "--listen", "127.0.0.1:" + strconv.Itoa(ports[1]), "--stun-listen", stunAddr,
		"--stun-alt-ip", "none", "--relay-ip", "127.0.0.1", "--turn-secret", secret, "--log-level", "warn"}
	var rootCAs *tls.Config
	if cfg.Transport == "tls" {
		cert, key, err := scenario.SelfSigned(dir, "127.0.0.1")
		if err != nil {
			return res, err
		}
		args = append(args, "--tls-cert", cert, "--tls-key", key, "--turn-tls-listen", tlsAddr)
		rootCAs = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // our own server on loopback
	}
	logf, err := os.Create(filepath.Join(dir, "rendezvous.log"))
	if err != nil {
		return res, err
	}
	defer logf.Close()
	cmd := exec.CommandContext(ctx, cfg.Binary, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("start %s rendezvous: %w", cfg.Binary, err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	server := stunAddr
	if cfg.Transport == "tls" {
		server = tlsAddr
	}
	if err := waitListening(ctx, cfg.Transport, server); err != nil {
		return res, fmt.Errorf("rendezvous did not listen on %s: %w (log in %s)", server, err, logf.Name())
	}
	res.RSSBefore = RSSKiB(cmd.Process.Pid)
	cpuBefore := CPUTime(cmd.Process.Pid)

	var (
		mu      sync.Mutex
		holding []allocation
		lat     []time.Duration
	)
	jobs := make(chan int)
	var wg sync.WaitGroup
	start := time.Now()
	for range cfg.Concurrency {
		wg.Go(func() {
			for i := range jobs {
				h, d, err := allocateOnce(ctx, cfg.Transport, server, secret, i, cfg.PerSource, rootCAs)
				mu.Lock()
				if err != nil {
					res.Failed++
					if res.FailedSample == "" {
						res.FailedSample = err.Error()
					}
				} else {
					res.Allocated++
					lat = append(lat, d)
					holding = append(holding, h)
				}
				mu.Unlock()
			}
		})
	}
	for i := 0; i < cfg.Allocations && ctx.Err() == nil; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.PerSecond = float64(res.Allocated) / res.Elapsed.Seconds()
	res.RSSHeld = RSSKiB(cmd.Process.Pid)
	res.ServerCPU = CPUTime(cmd.Process.Pid) - cpuBefore
	slices.Sort(lat)
	if len(lat) > 0 {
		res.P50, res.P99 = lat[len(lat)/2], lat[len(lat)*99/100]
	}
	cfg.Log("allocated %d, releasing", res.Allocated)
	for _, h := range holding {
		_ = h.relay.Close()
		h.client.Close()
		_ = h.conn.Close()
	}
	return res, ctx.Err()
}

type allocation struct {
	client *turn.Client
	relay  net.PacketConn
	conn   net.Conn
}

// allocateOnce makes allocation i from source 127.0.0.(2 + i/perSource)
// as user "load-i" and returns how long the Allocate took.
func allocateOnce(ctx context.Context, transport, server, secret string, i, perSource int, tlsCfg *tls.Config) (allocation, time.Duration, error) {
	src := net.IPv4(127, 0, 0, byte(2+i/perSource))
	user, pass, err := turn.GenerateLongTermTURNRESTCredentials(secret, fmt.Sprintf("load-%d", i), time.Hour)
	if err != nil {
		return allocation{}, 0, err
	}
	var conn net.Conn
	var pc net.PacketConn
	switch transport {
	case "udp":
		uc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: src})
		if err != nil {
			return allocation{}, 0, err
		}
		conn, pc = uc, uc
	case "tcp", "tls":
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 5 * time.Second}
		c, err := d.DialContext(ctx, "tcp4", server)
		if err != nil {
			return allocation{}, 0, err
		}
		if transport == "tls" {
			tc := tls.Client(c, tlsCfg)
			if err := tc.HandshakeContext(ctx); err != nil {
				_ = c.Close()
				return allocation{}, 0, err
			}
			c = tc
		}
		conn, pc = c, turn.NewSTUNConn(c)
	default:
		return allocation{}, 0, fmt.Errorf("transport %q: use udp, tcp or tls", transport)
	}
	client, err := turn.NewClient(&turn.ClientConfig{Conn: pc, TURNServerAddr: server, Username: user, Password: pass, Realm: "punchd"})
	if err != nil {
		_ = conn.Close()
		return allocation{}, 0, err
	}
	if err := client.Listen(); err != nil {
		client.Close()
		_ = conn.Close()
		return allocation{}, 0, err
	}
	start := time.Now()
	relay, err := client.Allocate()
	d := time.Since(start)
	if err != nil {
		client.Close()
		_ = conn.Close()
		return allocation{}, 0, fmt.Errorf("allocate %d from %s: %w", i, src, err)
	}
	return allocation{client, relay, conn}, d, nil
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var keep []net.Listener
	defer func() {
		for _, l := range keep {
			_ = l.Close()
		}
	}()
	for range n {
		// A port free for TCP on loopback; UDP on it is free in practice.
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		keep = append(keep, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func waitListening(ctx context.Context, transport, addr string) error {
	network := "tcp4"
	if transport == "udp" {
		network = "udp4"
	}
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < 200 && time.Now().Before(deadline); i++ {
		if network == "tcp4" {
			if c, err := net.DialTimeout(network, addr, 100*time.Millisecond); err == nil {
				_ = c.Close()
				return nil
			}
		} else if udpBound(addr) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return errors.New("timed out")
}

// udpBound reports whether addr is taken (binding it fails).
func udpBound(addr string) bool {
	c, err := net.ListenPacket("udp4", addr)
	if err != nil {
		return true
	}
	_ = c.Close()
	return false
}
