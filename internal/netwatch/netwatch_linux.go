package netwatch

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Open subscribes to the kernel's address and route changes in the
// calling thread's network namespace (the daemon's).
func Open(cfg Config) (*Watcher, error) {
	if cfg.OnChange == nil {
		return nil, fmt.Errorf("netwatch: no OnChange callback")
	}
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netwatch: open netlink: %w", err)
	}
	done := make(chan struct{})
	addrs := make(chan netlink.AddrUpdate, 64)
	routes := make(chan netlink.RouteUpdate, 64)
	fail := func(error) {} // the update channel closes after an error; Run notices
	if err := netlink.AddrSubscribeWithOptions(addrs, done, netlink.AddrSubscribeOptions{ErrorCallback: fail}); err != nil {
		h.Close()
		return nil, fmt.Errorf("netwatch: subscribe to address changes: %w", err)
	}
	if err := netlink.RouteSubscribeWithOptions(routes, done, netlink.RouteSubscribeOptions{ErrorCallback: fail}); err != nil {
		close(done)
		h.Close()
		return nil, fmt.Errorf("netwatch: subscribe to route changes: %w", err)
	}
	// One event stream out of both; its goroutine ends with done or when
	// either subscription closes its channel.
	events := make(chan struct{}, 1)
	fwdDone := make(chan struct{})
	go func() {
		defer close(fwdDone)
		defer close(events)
		for {
			select {
			case <-done:
				return
			case _, ok := <-addrs:
				if !ok {
					return
				}
			case _, ok := <-routes:
				if !ok {
					return
				}
			}
			select {
			case events <- struct{}{}:
			default: // one pending event is enough: Run reads a snapshot
			}
		}
	}()
	stop := func() {
		close(done)
		<-fwdDone
		h.Close()
	}
	snap := func() (Snapshot, error) { return snapshot(h, cfg.Exclude) }
	return newWatcher(cfg, events, snap, stop), nil
}

func snapshot(h *netlink.Handle, exclude []string) (Snapshot, error) {
	links, err := h.LinkList()
	if err != nil {
		return Snapshot{}, fmt.Errorf("list links: %w", err)
	}
	names := make(map[int]string, len(links))
	for _, l := range links {
		a := l.Attrs()
		if a.Flags&unix.IFF_LOOPBACK != 0 || slices.Contains(exclude, a.Name) {
			continue
		}
		names[a.Index] = a.Name
	}
	var s Snapshot
	addrs, err := h.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return Snapshot{}, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		name, ok := names[a.LinkIndex]
		if !ok || a.IPNet == nil {
			continue
		}
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || ip.IsLinkLocalUnicast() || ip.IsLoopback() {
			continue
		}
		entry := name + " " + a.IPNet.String()
		if a.Flags&unix.IFA_F_TENTATIVE != 0 {
			// An IPv6 address in duplicate address detection is no
			// source yet: its end is a change too.
			entry += " tentative"
		}
		s.Addrs = append(s.Addrs, entry)
	}
	routes, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return Snapshot{}, fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst != nil {
			if ones, _ := r.Dst.Mask.Size(); ones != 0 {
				continue // only default routes
			}
		}
		name, ok := names[r.LinkIndex]
		if !ok {
			continue
		}
		s.Routes = append(s.Routes, fmt.Sprintf("default via %v dev %s", r.Gw, name))
	}
	s.sort()
	return s, nil
}
