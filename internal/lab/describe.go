package lab

import (
	"fmt"
	"strings"
	"text/tabwriter"
)

// Describe renders the lab's layout (hosts, routers, addresses, namespace
// names) for demo output and test failure messages.
func (l *Lab) Describe() string {
	l.mu.Lock()
	hosts := append([]*Host(nil), l.hosts...)
	routers := append([]*Router(nil), l.routers...)
	wan, closed := l.wan, l.closed
	l.mu.Unlock()

	var b strings.Builder
	state := ""
	if closed {
		state = " (closed)"
	}
	fmt.Fprintf(&b, "lab %s-%s%s: internet 198.18.0.0/16 on bridge br0 in namespace %s\n", namePrefix, l.id, state, wan)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, h := range hosts {
		if h.Router != nil {
			continue
		}
		fmt.Fprintf(tw, "  %s\tpublic\t%s\t%s\n", h.Name, addrList(h), h.NS)
	}
	for _, r := range routers {
		kind := string(r.Type) + " NAT"
		if r.opts.UPnP {
			kind += " with miniupnpd"
		}
		fmt.Fprintf(tw, "  %s\t%s\twan %s, lan %s\t%s\n", r.Name, kind, r.WANAddr, r.LAN, r.NS)
		for _, h := range hosts {
			if h.Router == r {
				fmt.Fprintf(tw, "    %s\tbehind %s\t%s\t%s\n", h.Name, r.Name, addrList(h), h.NS)
			}
		}
	}
	_ = tw.Flush()
	return b.String()
}

func addrList(h *Host) string {
	s := h.Addr.String()
	for _, a := range h.Extra {
		s += ", " + a.String()
	}
	return s
}
