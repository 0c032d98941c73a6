package lab

import (
	"net"
	"testing"
	"time"
)

// The lab gotcha (docs/architecture.md, "The lab"): a packet that reaches a NAT router before the host
// behind it has sent anything must not leave conntrack state that moves
// the host's later mapping to another port. With the early drop, the
// mapping keeps the host's port and replies get through.
func TestUnsolicitedInboundKeepsMapping(t *testing.T) {
	RequireRoot(t)
	for _, nt := range []NATType{NATFullCone, NATRestricted, NATPortRestricted} {
		t.Run(string(nt), func(t *testing.T) {
			t.Parallel()
			_, l := newTestLab(t, 30*time.Second)
			peer, err := l.AddPublicHost("peer", 0)
			if err != nil {
				t.Fatal(err)
			}
			r, err := l.AddNAT("nat", nt)
			if err != nil {
				t.Fatal(err)
			}
			h, err := l.AddHost("h", r)
			if err != nil {
				t.Fatal(err)
			}
			hc := listenUDP(t, h)
			pc := listenUDP(t, peer)
			hostPort := hc.LocalAddr().(*net.UDPAddr).Port
			peerAddr := &net.UDPAddr{IP: peer.Addr.AsSlice(), Port: pc.LocalAddr().(*net.UDPAddr).Port}

			// The remote's packet arrives first, at the port the host
			// is about to use.
			for i := 0; i < 3; i++ {
				if _, err := pc.WriteTo([]byte("early"), &net.UDPAddr{IP: r.WANAddr.AsSlice(), Port: hostPort}); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(100 * time.Millisecond)

			if _, err := hc.WriteTo([]byte("hello"), peerAddr); err != nil {
				t.Fatal(err)
			}
			from := readUntil(t, pc, "hello")
			if from.Port != hostPort || !from.IP.Equal(r.WANAddr.AsSlice()) {
				t.Fatalf("host %s:%d mapped to %s after an unsolicited packet, want %s:%d (mapping moved)",
					h.Addr, hostPort, from, r.WANAddr, hostPort)
			}
			if _, err := pc.WriteTo([]byte("reply"), from); err != nil {
				t.Fatal(err)
			}
			readUntil(t, hc, "reply")
		})
	}
}

// listenUDP opens a UDP socket inside h's namespace; it is closed with t.
func listenUDP(t *testing.T, h *Host) net.PacketConn {
	t.Helper()
	var c net.PacketConn
	if err := h.Do(func() (err error) {
		c, err = net.ListenPacket("udp4", h.Addr.String()+":0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readUntil reads c until a datagram with payload want arrives (a full-cone
// host legitimately also gets the early packets), bounded to 2 s.
func readUntil(t *testing.T, c net.PacketConn, want string) *net.UDPAddr {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 1500)
	for i := 0; i < 16; i++ {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			t.Fatalf("waiting for %q on %s: %v", want, c.LocalAddr(), err)
		}
		if string(buf[:n]) == want {
			return from.(*net.UDPAddr)
		}
	}
	t.Fatalf("no %q on %s among 16 datagrams", want, c.LocalAddr())
	return nil
}
