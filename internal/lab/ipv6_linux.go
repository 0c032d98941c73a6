package lab

import (
	"context"
	"fmt"
	"net/netip"
)

// IPv6 in the lab (Options.IPv6): routed global-looking addresses from the
// documentation prefix 2001:db8::/32, used inside the lab only. The
// internet is 2001:db8:ffff::/64 on the bridge, whose namespace routes each
// LAN's /64 (2001:db8:N::/64) to its router. Routers do not translate
// IPv6; they are stateful firewalls, as home routers are: what the LAN
// sent out may be answered, nothing unsolicited comes in.

const wanBridge6 = "2001:db8:ffff::fe"

// firewall6 is the router's IPv6 recipe.
const firewall6 = `table ip6 punchdlab6 {
  chain forwarding {
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    iifname "lan0" oifname "eth0" accept
  }
}
`

// wan6 is the IPv6 address on the internet for a host or router whose
// IPv4 address there is a.
func wan6(a netip.Addr) netip.Addr {
	b := a.As4()
	return netip.MustParseAddr(fmt.Sprintf("2001:db8:ffff::%x:%x", b[2], b[3]))
}

func lan6(n int) netip.Prefix { return netip.MustParsePrefix(fmt.Sprintf("2001:db8:%x::/64", n)) }

func (l *Lab) setupWAN6(ctx context.Context) error {
	return runAll(ctx,
		[]string{"ip", "-n", l.wan, "-6", "addr", "add", wanBridge6 + "/64", "dev", "br0", "nodad"},
		[]string{"ip", "netns", "exec", l.wan, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"},
	)
}

func (l *Lab) setupPublic6(ctx context.Context, h *Host) error {
	h.Addr6 = wan6(h.Addr)
	return runAll(ctx,
		[]string{"ip", "-n", h.NS, "-6", "addr", "add", h.Addr6.String() + "/64", "dev", "eth0", "nodad"},
		[]string{"ip", "-n", h.NS, "-6", "route", "add", "default", "via", wanBridge6},
	)
}

func (l *Lab) setupRouter6(ctx context.Context, r *Router, n int) error {
	r.WANAddr6, r.LAN6 = wan6(r.WANAddr), lan6(n)
	gw := r.LAN6.Addr().Next()
	if err := runAll(ctx,
		[]string{"ip", "-n", r.NS, "-6", "addr", "add", r.WANAddr6.String() + "/64", "dev", "eth0", "nodad"},
		[]string{"ip", "-n", r.NS, "-6", "route", "add", "default", "via", wanBridge6},
		[]string{"ip", "-n", r.NS, "-6", "addr", "add", gw.String() + "/64", "dev", "lan0", "nodad"},
		[]string{"ip", "netns", "exec", r.NS, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"},
		[]string{"ip", "-n", l.wan, "-6", "route", "add", r.LAN6.String(), "via", r.WANAddr6.String()},
	); err != nil {
		return err
	}
	return r.nft(ctx, firewall6)
}

// attach6 gives h the IPv6 address of LAN host number k behind r.
func (l *Lab) attach6(ctx context.Context, h *Host, r *Router, ifname string, k int) error {
	a := r.LAN6.Addr().Next()
	for i := 0; i < k; i++ {
		a = a.Next()
	}
	if err := runAll(ctx,
		[]string{"ip", "-n", h.NS, "-6", "addr", "add", a.String() + "/64", "dev", ifname, "nodad"},
		[]string{"ip", "-n", h.NS, "-6", "route", "replace", "default", "via", r.LAN6.Addr().Next().String(), "dev", ifname},
	); err != nil {
		return err
	}
	l.mu.Lock()
	h.Addr6 = a
	l.mu.Unlock()
	return nil
}

// RemoveIPv6 takes h's global IPv6 address and IPv6 default route away
// (its LAN keeps IPv6): a host on an IPv4-only network, or one whose
// IPv6 comes later (AddIPv6).
func (l *Lab) RemoveIPv6(ctx context.Context, h *Host) error {
	l.mu.Lock()
	a, ifname := h.Addr6, fmt.Sprintf("eth%d", h.moves)
	l.mu.Unlock()
	if !a.IsValid() {
		return fmt.Errorf("lab: %s has no IPv6 address", h.Name)
	}
	if err := runAll(ctx,
		[]string{"ip", "-n", h.NS, "-6", "route", "del", "default"},
		[]string{"ip", "-n", h.NS, "-6", "addr", "del", a.String() + "/64", "dev", ifname},
	); err != nil {
		return err
	}
	l.mu.Lock()
	h.Addr6 = netip.Addr{}
	l.mu.Unlock()
	return nil
}

// AddIPv6 gives h, behind a router of a lab with IPv6, the global IPv6
// address of its place on the LAN (as RemoveIPv6 took it away, or as a
// router's advertisement would give it late).
func (l *Lab) AddIPv6(ctx context.Context, h *Host) error {
	l.mu.Lock()
	r, ifname := h.Router, fmt.Sprintf("eth%d", h.moves)
	k := 0
	if r != nil {
		// The host's IPv4 place on the LAN names its IPv6 one.
		k = int(h.Addr.As4()[3]) - int(r.gateway().As4()[3])
	}
	l.mu.Unlock()
	if r == nil || !r.LAN6.IsValid() {
		return fmt.Errorf("lab: %s is not behind a router with IPv6", h.Name)
	}
	return l.attach6(ctx, h, r, ifname, k)
}
