package lab

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"

	"github.com/vishvananda/netlink"
)

// Faults a running lab can suffer, for the self-healing tests: a path that
// stops carrying UDP while others still do, and a NAT that forgets its
// mappings (a router reboot, a conntrack table overflow).

// cutTable is the nftables table CutUDP adds; separate from the NAT
// recipe's table so that restoring cannot touch the recipe.
const cutTable = "punchdlab_cut"

// CutUDP makes r drop every UDP packet between its WAN side and the given
// internet addresses, in both directions, as a path that broke for those
// peers only (the rendezvous and the relay stay reachable). It replaces
// any earlier cut. Undo it with RestoreUDP.
func (r *Router) CutUDP(ctx context.Context, peers ...netip.Addr) error {
	if len(peers) == 0 {
		return fmt.Errorf("CutUDP on %s: no addresses given", r.Name)
	}
	set := make([]string, len(peers))
	for i, p := range peers {
		if !p.Is4() {
			return fmt.Errorf("CutUDP on %s: %s is not an IPv4 address", r.Name, p)
		}
		set[i] = p.String()
	}
	addrs := "{ " + strings.Join(set, ", ") + " }"
	// Priority -300: before conntrack (-200), so established flows are
	// cut too, not only new ones.
	rs := fmt.Sprintf(`table ip %[1]s {
  chain pre {
    type filter hook prerouting priority -300; policy accept;
    iifname "eth0" ip saddr %[2]s meta l4proto udp drop
  }
  chain post {
    type filter hook postrouting priority 300; policy accept;
    oifname "eth0" ip daddr %[2]s meta l4proto udp drop
  }
}
`, cutTable, addrs)
	_ = r.RestoreUDP(ctx)
	return r.nft(ctx, rs)
}

// RestoreUDP undoes CutUDP; restoring an uncut router is not an error.
func (r *Router) RestoreUDP(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", r.NS, "nft", "list", "table", "ip", cutTable)
	if cmd.Run() != nil {
		return nil // no cut in place
	}
	return r.nft(ctx, "delete table ip "+cutTable+"\n")
}

// FlushMappings makes r forget every NAT mapping and connection it tracks,
// as a rebooting home router does. Hosts behind it get new mappings with
// their next outgoing packets (on a symmetric NAT at new ports), and until
// then nothing from outside reaches them.
func (r *Router) FlushMappings() error {
	return r.Do(func() error {
		if err := netlink.ConntrackTableFlush(netlink.ConntrackTable); err != nil {
			return fmt.Errorf("flush conntrack on %s: %w", r.Name, err)
		}
		return nil
	})
}

func (r *Router) nft(ctx context.Context, ruleset string) error {
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", r.NS, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft on %s: %w: %s", r.Name, err, strings.TrimSpace(string(out)))
	}
	return nil
}
