package lab

import (
	"context"
	"fmt"
	"net/netip"
	"time"
)

// Faults of a moving host, for the roaming drills: the ISP hands the NAT a
// new public address, the NAT reboots, the host itself moves to another
// network (Wi-Fi to LTE).

// Rebind gives r a new public address, as an ISP does when it renews a
// DHCP lease or a PPP session with another address: the old address goes,
// with every mapping and tracked connection on it, and the next outgoing
// packets leave from the new one. It returns the old address.
func (l *Lab) Rebind(ctx context.Context, r *Router) (netip.Addr, error) {
	next := l.nextPublic()
	l.mu.Lock()
	old := r.WANAddr
	l.mu.Unlock()
	if err := r.renumber(ctx, old, next, 0); err != nil {
		return old, err
	}
	l.mu.Lock()
	r.WANAddr = next
	l.mu.Unlock()
	return old, nil
}

// Reboot makes r lose its WAN address and every mapping for down, then
// come back with the same address, as a home router that restarts (or its
// modem that resyncs) does: what crossed it before has to find new
// mappings, which on a symmetric NAT have new ports.
func (r *Router) Reboot(ctx context.Context, down time.Duration) error {
	return r.renumber(ctx, r.WANAddr, r.WANAddr, down)
}

// renumber takes address from off r's WAN side, flushes conntrack, waits
// down, and puts to there with the default route (removed with from).
func (r *Router) renumber(ctx context.Context, from, to netip.Addr, down time.Duration) error {
	if err := run(ctx, "ip", "-n", r.NS, "addr", "del", from.String()+fmt.Sprintf("/%d", wanPrefixLen), "dev", "eth0"); err != nil {
		return err
	}
	if err := r.FlushMappings(); err != nil {
		return err
	}
	if down > 0 {
		t := time.NewTimer(down)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
	if err := runAll(ctx,
		[]string{"ip", "-n", r.NS, "addr", "add", to.String() + fmt.Sprintf("/%d", wanPrefixLen), "dev", "eth0"},
		[]string{"ip", "-n", r.NS, "route", "replace", "default", "via", wanBridgeAddr},
	); err != nil {
		return err
	}
	// Whatever was tracked while the address was gone (packets the host
	// kept sending) must not pin a mapping to it.
	return r.FlushMappings()
}

// MoveHost moves h from its network to the LAN of router to, as a laptop
// that leaves the Wi-Fi for a phone's hotspot: a new interface with an
// address in the new LAN and the default route through it come up, then
// the old interface goes (with its address and every socket's source on
// it). Sockets bound to the wildcard address stay open; their packets
// leave from the new address. A host that was public (no router) cannot
// be moved.
func (l *Lab) MoveHost(ctx context.Context, h *Host, to *Router) error {
	if h.Router == nil {
		return fmt.Errorf("MoveHost %s: a public host has no LAN to leave", h.Name)
	}
	if to == nil {
		return fmt.Errorf("MoveHost %s: no router to move to", h.Name)
	}
	l.mu.Lock()
	oldIf := fmt.Sprintf("eth%d", h.moves)
	h.moves++
	l.mu.Unlock()
	if err := l.attach(ctx, h, to); err != nil {
		return fmt.Errorf("MoveHost %s to %s: %w", h.Name, to.Name, err)
	}
	// Deleting one end of the veth deletes both.
	if err := run(ctx, "ip", "-n", h.NS, "link", "del", oldIf); err != nil {
		return fmt.Errorf("MoveHost %s: remove the old interface: %w", h.Name, err)
	}
	return nil
}
