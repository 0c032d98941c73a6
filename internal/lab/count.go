package lab

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
)

// countTable is the nftables table of the router's packet counters.
const countTable = "punchdcount"

// Counter counts the packets a router forwards that match an nftables
// expression: the router's own tally, independent of the code under test.
type Counter struct {
	r    *Router
	name string
}

// CountForwarded adds a named counter on r for forwarded packets matching
// match (an nftables expression, e.g. `iifname "lan0" udp dport 4000`). It
// only counts: its chain accepts everything, the router's own chains
// decide.
func (r *Router) CountForwarded(ctx context.Context, name, match string) (*Counter, error) {
	rs := fmt.Sprintf(`table ip %[1]s {
  counter %[2]s { }
  chain forward { type filter hook forward priority -10; policy accept; }
}
add rule ip %[1]s forward %[3]s counter name %[2]s
`, countTable, name, match)
	if err := r.nft(ctx, rs); err != nil {
		return nil, fmt.Errorf("counter %s: %w", name, err)
	}
	return &Counter{r: r, name: name}, nil
}

var packetsRe = regexp.MustCompile(`packets (\d+)`)

// Packets reads the counter.
func (c *Counter) Packets(ctx context.Context) (int, error) {
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", c.r.NS, "nft", "list", "counter", "ip", countTable, c.name).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("read counter %s on %s: %w: %s", c.name, c.r.Name, err, out)
	}
	m := packetsRe.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("counter %s on %s: no packet count in %q", c.name, c.r.Name, out)
	}
	return strconv.Atoi(string(m[1]))
}
