package lab

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// Rebind, Reboot and MoveHost must do to a host what the real events do:
// its packets leave from another public address (rebind, move), and a
// mapping the router had is forgotten (reboot). Checked from a public
// server that sees the source of each datagram.
func TestRoamFaults(t *testing.T) {
	RequireRoot(t)
	ctx, l := newTestLab(t, 60*time.Second)
	srv, err := l.AddPublicHost("srv", 0)
	if err != nil {
		t.Fatal(err)
	}
	wifi, err := l.AddNAT("wifi", NATPortRestricted)
	if err != nil {
		t.Fatal(err)
	}
	lte, err := l.AddNAT("lte", NATPortRestricted)
	if err != nil {
		t.Fatal(err)
	}
	h, err := l.AddHost("h", wifi)
	if err != nil {
		t.Fatal(err)
	}
	sc := listenUDP(t, srv)
	srvAddr := &net.UDPAddr{IP: srv.Addr.AsSlice(), Port: sc.LocalAddr().(*net.UDPAddr).Port}
	// A wildcard socket, as the tunnel's: it must survive the move.
	var hc net.PacketConn
	if err := h.Do(func() (err error) {
		hc, err = net.ListenPacket("udp4", ":0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hc.Close() })
	// source sends one datagram to the server and returns where from it
	// arrived.
	source := func(tag string) netip.AddrPort {
		t.Helper()
		if _, err := hc.WriteTo([]byte(tag), srvAddr); err != nil {
			t.Fatalf("%s: send: %v", tag, err)
		}
		return readUntil(t, sc, tag).AddrPort()
	}
	// inbound reports whether the server's datagram to m reaches the host.
	inbound := func(m netip.AddrPort, tag string) bool {
		t.Helper()
		if _, err := sc.WriteTo([]byte(tag), net.UDPAddrFromAddrPort(m)); err != nil {
			t.Fatal(err)
		}
		return arrives(hc, tag)
	}

	m := source("before")
	if m.Addr() != wifi.WANAddr {
		t.Fatalf("before: from %v, want the Wi-Fi NAT's %v", m, wifi.WANAddr)
	}
	if !inbound(m, "answer-before") {
		t.Fatal("the server's answer to the mapping does not arrive; the checks below would prove nothing")
	}

	old, err := l.Rebind(ctx, wifi)
	if err != nil {
		t.Fatal(err)
	}
	if old != m.Addr() || wifi.WANAddr == old {
		t.Fatalf("Rebind: old %v new %v, the mapping was on %v", old, wifi.WANAddr, m.Addr())
	}
	if got := source("rebound"); got.Addr() != wifi.WANAddr {
		t.Fatalf("after Rebind: from %v, want the new address %v", got, wifi.WANAddr)
	}
	if _, err := srv.Ping(ctx, old, 300*time.Millisecond); err == nil {
		t.Errorf("the old address %v still answers after Rebind", old)
	}

	m = source("before-reboot")
	if !inbound(m, "answer-before-reboot") {
		t.Fatal("no answer through the new mapping")
	}
	if err := wifi.Reboot(ctx, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if inbound(m, "answer-after-reboot") {
		t.Error("a mapping survived Reboot")
	}
	if got := source("after-reboot"); got.Addr() != wifi.WANAddr {
		t.Fatalf("after Reboot: from %v, want %v", got, wifi.WANAddr)
	}

	if err := l.MoveHost(ctx, h, lte); err != nil {
		t.Fatal(err)
	}
	if !lte.LAN.Contains(h.Addr) || h.Router != lte {
		t.Fatalf("after MoveHost the host is %v behind %v, want in %v", h.Addr, h.Router.Name, lte.LAN)
	}
	if got := source("moved"); got.Addr() != lte.WANAddr {
		t.Fatalf("after MoveHost: from %v, want the LTE NAT's %v", got, lte.WANAddr)
	}
	if out, err := h.Command(ctx, "ip", "link", "show", "eth0").CombinedOutput(); err == nil {
		t.Errorf("the old interface is still there after MoveHost: %s", out)
	}
	if err := l.MoveHost(ctx, srv, lte); err == nil {
		t.Error("MoveHost of a public host: no error")
	}
}

// The https-only firewall passes TCP to port 443 and nothing else from
// its LAN.
func TestHTTPSOnly(t *testing.T) {
	RequireRoot(t)
	ctx, l := newTestLab(t, 60*time.Second)
	srv, err := l.AddPublicHost("srv", 0)
	if err != nil {
		t.Fatal(err)
	}
	fw, err := l.AddNAT("fw", NATHTTPSOnly)
	if err != nil {
		t.Fatal(err)
	}
	h, err := l.AddHost("h", fw)
	if err != nil {
		t.Fatal(err)
	}
	listen := func(port string) {
		var ln net.Listener
		if err := srv.Do(func() (err error) {
			ln, err = net.Listen("tcp4", net.JoinHostPort(srv.Addr.String(), port))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for i := 0; i < 8; i++ { // bounded: the test dials twice
				c, err := ln.Accept()
				if err != nil {
					return
				}
				_, _ = c.Write([]byte("hi"))
				c.Close()
			}
		}()
	}
	listen("443")
	listen("80")
	tcp := func(port string) bool {
		ok := false
		_ = h.Do(func() error {
			c, err := net.DialTimeout("tcp4", net.JoinHostPort(srv.Addr.String(), port), 500*time.Millisecond)
			if err != nil {
				return nil
			}
			defer c.Close()
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			b := make([]byte, 2)
			n, _ := c.Read(b)
			ok = string(b[:n]) == "hi"
			return nil
		})
		return ok
	}
	if !tcp("443") {
		t.Error("TCP to 443 does not pass")
	}
	if tcp("80") {
		t.Error("TCP to 80 passes")
	}
	hc := listenUDP(t, h)
	sc := listenUDP(t, srv)
	if _, err := hc.WriteTo([]byte("udp"), sc.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	if arrives(sc, "udp") {
		t.Error("UDP passes")
	}
	if _, err := h.Ping(ctx, srv.Addr, 300*time.Millisecond); err == nil {
		t.Error("ICMP passes")
	}
}
