package bench

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/punchd/punchd/internal/lab"
)

// StockWG is stock wireguard-go (the binary the benchmark script builds
// from the module proxy) on two lab hosts, configured with `wg`, each
// pointing at the other's public address: the baseline punchd is held to.
type StockWG struct {
	hosts []*lab.Host
	pids  []int
	Addr  [2]netip.Addr // overlay addresses of host 0 and 1
}

const stockPort = 51899

// StartStockWG brings up wg-stock on a and b. pubA/pubB are the addresses
// each is reached at (its own, or its NAT's public one).
func StartStockWG(ctx context.Context, binary string, a, b *lab.Host, pubA, pubB netip.Addr) (*StockWG, error) {
	s := &StockWG{hosts: []*lab.Host{a, b}, Addr: [2]netip.Addr{netip.MustParseAddr("10.99.0.1"), netip.MustParseAddr("10.99.0.2")}}
	keys := make([][2]string, 2)
	for i := range keys {
		priv, err := exec.CommandContext(ctx, "wg", "genkey").Output()
		if err != nil {
			return nil, fmt.Errorf("wg genkey: %w (apt-get install wireguard-tools)", err)
		}
		cmd := exec.CommandContext(ctx, "wg", "pubkey")
		cmd.Stdin = strings.NewReader(string(priv))
		pub, err := cmd.Output()
		if err != nil {
			return nil, err
		}
		keys[i] = [2]string{strings.TrimSpace(string(priv)), strings.TrimSpace(string(pub))}
	}
	pubs := []netip.Addr{pubA, pubB}
	dir, err := os.MkdirTemp("", "punchd-bench-wg-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	for i, h := range s.hosts {
		other := 1 - i
		// Distinct names: wireguard-go's UAPI sockets live in the shared
		// /var/run/wireguard, whatever the network namespace.
		ifname := "wgstock" + strconv.Itoa(i)
		start := h.Command(ctx, binary, "-f", ifname)
		start.Env = append(os.Environ(), "WG_PROCESS_FOREGROUND=1")
		if err := start.Start(); err != nil {
			return nil, fmt.Errorf("start wireguard-go: %w", err)
		}
		s.pids = append(s.pids, start.Process.Pid)
		// Wait for the interface; bounded.
		for j := 0; j < 200; j++ {
			if h.Command(ctx, "ip", "link", "show", ifname).Run() == nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		keyFile := filepath.Join(dir, "key"+strconv.Itoa(i))
		if err := os.WriteFile(keyFile, []byte(keys[i][0]), 0o600); err != nil {
			return nil, err
		}
		for _, c := range [][]string{
			{"wg", "set", ifname, "listen-port", strconv.Itoa(stockPort), "private-key", keyFile,
				"peer", keys[other][1], "endpoint", fmt.Sprintf("%s:%d", pubs[other], stockPort),
				"allowed-ips", s.Addr[other].String() + "/32", "persistent-keepalive", "1"},
			{"ip", "addr", "add", s.Addr[i].String() + "/24", "dev", ifname},
			{"ip", "link", "set", ifname, "mtu", "1420", "up"},
		} {
			if out, err := h.Command(ctx, c[0], c[1:]...).CombinedOutput(); err != nil {
				s.Close()
				return nil, fmt.Errorf("%s: %w: %s", strings.Join(c, " "), err, out)
			}
		}
	}
	return s, nil
}

// PIDs are the two wireguard-go processes.
func (s *StockWG) PIDs() []int { return s.pids }

// Close stops both.
func (s *StockWG) Close() {
	for _, pid := range s.pids {
		if p, err := os.FindProcess(pid); err == nil {
			_ = p.Kill()
			_, _ = p.Wait()
		}
	}
}
