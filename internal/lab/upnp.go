package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Debian's miniupnpd on a lab router: UPnP-IGD, NAT-PMP and PCP on the
// LAN side, port forwarding with nftables.
//
// Two facts shape this:
//   - miniupnpd refuses to forward ports when its external address is
//     private or reserved, and the lab's internet (198.18.0.0/15, the
//     benchmarking range) is reserved. With ext_perform_stun it asks a STUN
//     server instead and forwards when the four RFC 3489 tests (answers from
//     the other IP and port) all come back; the router's guard admits those
//     answers from RouterOptions.STUN.
//   - its nftables backend writes rules into chains it expects to exist:
//     table inet <upnp_table_name> with chains miniupnpd (forward),
//     prerouting_miniupnpd and postrouting_miniupnpd (nat). Debian's
//     nft_init.sh that would make them sources an iptables helper, so the
//     lab makes them itself. The router's guard runs after DNAT, so
//     forwarded ports pass it (see ruleset).

// upnpTable is the nftables table miniupnpd writes into.
const upnpTable = "punchdupnp"

// MiniUPnPd is a running miniupnpd.
type MiniUPnPd struct {
	*proc
	dir string
	ns  string
}

// MiniUPnPdInstalled says what to install when miniupnpd is missing.
func MiniUPnPdInstalled() error {
	if _, err := exec.LookPath("miniupnpd"); err != nil {
		return errors.New("miniupnpd not installed (apt-get install miniupnpd miniupnpd-nftables; `make test` as root does it)")
	}
	return nil
}

// StartMiniUPnPd runs miniupnpd on r (made with RouterOptions.UPnP) with
// stun (an RFC 5780/3489 server) for its external address, and waits until
// it forwards ports and answers NAT-PMP.
func (r *Router) StartMiniUPnPd(ctx context.Context, stun netip.AddrPort) (*MiniUPnPd, error) {
	if !r.opts.UPnP {
		return nil, errors.New("router " + r.Name + " was not made for UPnP: use AddNATWith(name, type, RouterOptions{UPnP: true, STUN: ...})")
	}
	if err := MiniUPnPdInstalled(); err != nil {
		return nil, err
	}
	tables := fmt.Sprintf(`table inet %[1]s {
  chain forward { type filter hook forward priority 0; policy accept; jump miniupnpd; }
  chain miniupnpd { }
  chain prerouting { type nat hook prerouting priority dstnat; policy accept; jump prerouting_miniupnpd; }
  chain postrouting { type nat hook postrouting priority srcnat; policy accept; jump postrouting_miniupnpd; }
  chain prerouting_miniupnpd { }
  chain postrouting_miniupnpd { }
}
`, upnpTable)
	nft := exec.CommandContext(ctx, "ip", "netns", "exec", r.NS, "nft", "-f", "-")
	nft.Stdin = strings.NewReader(tables)
	if out, err := nft.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("nftables chains for miniupnpd in %s: %w: %s", r.NS, err, out)
	}
	dir, err := os.MkdirTemp("", "punchd-lab-miniupnpd-")
	if err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(`ext_ifname=eth0
listening_ip=lan0
enable_natpmp=yes
enable_upnp=yes
secure_mode=yes
system_uptime=yes
ext_perform_stun=yes
ext_stun_host=%s
ext_stun_port=%d
upnp_table_name=%s
upnp_nat_table_name=%s
uuid=3bfb1e2a-7a0b-4c7e-9a57-70756e636864
friendly_name=punchd lab router %s
allow 1024-65535 %s 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
`, stun.Addr(), stun.Port(), upnpTable, upnpTable, r.Name, r.LAN)
	confPath := filepath.Join(dir, "miniupnpd.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	ready := make(chan struct{})
	var readyOnce sync.Once
	// -d: foreground, log to stderr. Lab.Close kills it with the namespace
	// in case Stop is never called.
	cmd := exec.Command("ip", "netns", "exec", r.NS, "miniupnpd", "-d", "-f", confPath, "-P", filepath.Join(dir, "miniupnpd.pid"))
	p, err := startProc(cmd, func(all string) {
		if upnpReady(all) {
			readyOnce.Do(func() { close(ready) })
		}
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start miniupnpd: %w", err)
	}
	m := &MiniUPnPd{proc: p, dir: dir, ns: r.NS}
	timer := time.NewTimer(15 * time.Second)
	defer timer.Stop()
	select {
	case <-ready:
		return m, nil
	case <-m.done:
		err = errors.New("miniupnpd exited")
	case <-timer.C:
		err = errors.New("miniupnpd did not enable port forwarding within 15s")
	case <-ctx.Done():
		err = ctx.Err()
	}
	m.Stop()
	return nil, fmt.Errorf("%w; its log:\n%s", err, m.Log())
}

// upnpReady reports whether miniupnpd's log says it forwards ports and
// listens for NAT-PMP/PCP.
func upnpReady(log string) bool {
	return strings.Contains(log, "Listening for NAT-PMP/PCP traffic") &&
		(strings.Contains(log, "Port forwarding is now enabled") || strings.Contains(log, "Port forwarding is enabled"))
}

// Forwards lists the port forwards miniupnpd holds (its nat chain).
func (m *MiniUPnPd) Forwards(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", m.ns, "nft", "list", "chain", "inet", upnpTable, "prerouting_miniupnpd").CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("list miniupnpd's forwards: %w", err)
	}
	return string(out), nil
}

// Stop ends miniupnpd (SIGTERM, then SIGKILL) and removes its files;
// idempotent. Its nftables table goes with the router's namespace.
func (m *MiniUPnPd) Stop() {
	m.stop(5 * time.Second)
	os.RemoveAll(m.dir)
}
