package daemon

import (
	"net"
	"net/netip"

	"github.com/punchd/punchd/internal/natprobe"
)

// stunServerAddr is the rendezvous' STUN server, resolved (for birthday
// punching to learn a sequential NAT's pattern).
func (d *daemon) stunServerAddr() (netip.AddrPort, bool) {
	var urls []string
	for _, s := range d.currentICEServers() {
		urls = append(urls, s.URL)
	}
	hostport := natprobe.STUNServer(urls)
	if hostport == "" {
		return netip.AddrPort{}, false
	}
	a, err := net.ResolveUDPAddr("udp4", hostport)
	if err != nil {
		return netip.AddrPort{}, false
	}
	ap := a.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
}
