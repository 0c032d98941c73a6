package lab

import (
	"net"
	"net/netip"
	"os/exec"
	"testing"
	"time"

	natpmp "github.com/jackpal/go-nat-pmp"
)

// The lab's UPnP router: miniupnpd comes up (its STUN check passes the
// guard), answers NAT-PMP from the LAN with the router's WAN address, and
// a port it maps is reachable from the internet while unmapped ones stay
// closed.
func TestUPnPRouter(t *testing.T) {
	RequireRoot(t)
	for _, check := range []func() error{CoturnInstalled, MiniUPnPdInstalled} {
		if err := check(); err != nil {
			t.Skip(err)
		}
	}
	ctx, l := newTestLab(t, 60*time.Second)
	isp, err := l.AddPublicHost("ispstun", 1)
	if err != nil {
		t.Fatal(err)
	}
	peer, err := l.AddPublicHost("peer", 0)
	if err != nil {
		t.Fatal(err)
	}
	r, err := l.AddNATWith("nat", NATPortRestricted, RouterOptions{UPnP: true, STUN: append([]netip.Addr{isp.Addr}, isp.Extra...)})
	if err != nil {
		t.Fatal(err)
	}
	host, err := l.AddHost("host", r)
	if err != nil {
		t.Fatal(err)
	}
	coturn, err := StartCoturn(ctx, isp)
	if err != nil {
		t.Fatal(err)
	}
	defer coturn.Stop()
	m, err := r.StartMiniUPnPd(ctx, netip.AddrPortFrom(isp.Addr, 3478))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()

	var sock, closed *net.UDPConn
	var ext *natpmp.GetExternalAddressResult
	var mapped *natpmp.AddPortMappingResult
	err = host.Do(func() error {
		c := natpmp.NewClientWithTimeout(net.IP(r.gateway().AsSlice()), 3*time.Second)
		var err error
		if ext, err = c.GetExternalAddress(); err != nil {
			return err
		}
		if sock, err = net.ListenUDP("udp4", nil); err != nil {
			return err
		}
		if closed, err = net.ListenUDP("udp4", nil); err != nil {
			return err
		}
		port := sock.LocalAddr().(*net.UDPAddr).Port
		mapped, err = c.AddPortMapping("udp", port, port, 60)
		return err
	})
	if err != nil {
		t.Fatalf("NAT-PMP from the LAN: %v\n%s\nminiupnpd:\n%s", err, l.Describe(), m.Log())
	}
	defer sock.Close()
	defer closed.Close()
	if got := netip.AddrFrom4(ext.ExternalIPAddress); got != r.WANAddr {
		t.Errorf("NAT-PMP external address %s, want the router's %s", got, r.WANAddr)
	}
	send := func(port uint16) {
		_ = peer.Do(func() error {
			c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(r.WANAddr, port)))
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.Write([]byte("through the mapping"))
			return err
		})
	}
	buf := make([]byte, 100)
	for i := 0; i < 10; i++ { // bounded: the mapping's rules land asynchronously
		send(mapped.MappedExternalPort)
		_ = sock.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if n, _, err := sock.ReadFrom(buf); err == nil && string(buf[:n]) == "through the mapping" {
			// An unmapped port of the same host stays closed.
			send(uint16(closed.LocalAddr().(*net.UDPAddr).Port))
			_ = closed.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			if _, _, err := closed.ReadFrom(buf); err == nil {
				t.Fatal("an unmapped port received unsolicited traffic: the NAT is not port-restricted any more")
			}
			return
		}
	}
	rules, _ := exec.Command("ip", "netns", "exec", r.NS, "nft", "list", "ruleset").CombinedOutput()
	t.Fatalf("nothing arrived through the mapped port %d\nrouter's nftables:\n%s\nminiupnpd:\n%s", mapped.MappedExternalPort, rules, m.Log())
}
