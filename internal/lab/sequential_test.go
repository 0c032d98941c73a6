package lab

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// The sequential symmetric NAT must hand out consecutive ports to
// consecutive new mappings, whatever their destination: observed at the
// far end (a plain UDP listener on a public host, no punchd code), from a
// fresh socket per packet, alternating between two destination ports.
func TestSequentialNATCountsPorts(t *testing.T) {
	RequireRoot(t)
	_, l := newTestLab(t, 60*time.Second)
	pub, err := l.AddPublicHost("pub", 0)
	if err != nil {
		t.Fatal(err)
	}
	r, err := l.AddNAT("nat", NATSymmetricSequential)
	if err != nil {
		t.Fatal(err)
	}
	h, err := l.AddHost("h", r)
	if err != nil {
		t.Fatal(err)
	}
	var lns [2]*net.UDPConn
	for i := range lns {
		if err := pub.Do(func() error {
			var err error
			lns[i], err = net.ListenUDP("udp4", &net.UDPAddr{IP: pub.Addr.AsSlice(), Port: 4000 + i})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer lns[i].Close()
	}
	const n = 8
	var seen []netip.AddrPort
	for i := range n {
		var c *net.UDPConn
		if err := h.Do(func() error {
			var err error
			c, err = net.ListenUDP("udp4", nil)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		ln := lns[i%2]
		_, err := c.WriteToUDPAddrPort([]byte("seq"), ln.LocalAddr().(*net.UDPAddr).AddrPort())
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 16)
		_ = ln.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, from, err := ln.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("packet %d through the sequential NAT did not arrive: %v\n%s", i, err, l.Describe())
		}
		seen = append(seen, from)
	}
	for i, a := range seen {
		if a.Addr() != r.WANAddr {
			t.Errorf("mapping %d from %v, want the router's WAN address %v", i, a, r.WANAddr)
		}
		if i > 0 && a.Port() != seen[i-1].Port()+1 {
			t.Errorf("mapping %d got port %d after %d: not sequential (all: %v)", i, a.Port(), seen[i-1].Port(), seen)
		}
		if a.Port() < sequentialBase || a.Port() >= sequentialBase+sequentialSpan {
			t.Errorf("port %d outside the NAT's range", a.Port())
		}
	}
}
