package scenario

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/punchd/punchd/internal/identity"
	"github.com/punchd/punchd/internal/lab"
)

// LAN-style play: a subnet broadcast (a game lobby's "who is hosting?")
// and a multicast datagram (mDNS, SSDP) sent on punch0 reach the peer with
// their original destination, as on a LAN.
func TestLANBroadcastAndMulticast(t *testing.T) {
	lab.RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, err := Start(ctx, Options{Binary: punchdBinary, NATA: lab.NATPortRestricted, NATB: lab.NATSymmetric, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	wctx, stop := r.Watch(ctx)
	defer stop()
	pctx, cancelPing := context.WithTimeout(wctx, 30*time.Second)
	_, err = FirstPing(pctx, r.A.Host, r.B.Overlay4, 10*time.Millisecond)
	cancelPing()
	if err != nil {
		t.Fatalf("first ping: %v\n%s", err, r.Logs())
	}
	prefix := identity.DefaultOverlayIPv4
	bcast := lastOf(prefix)
	group := netip.MustParseAddr("239.255.42.99")

	tests := []struct {
		name string
		dst  netip.Addr
	}{
		{"subnet broadcast", bcast},
		{"multicast group", group},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recv := listenGroup(t, r.B.Host, tt.dst)
			send := senderOn(t, r.A.Host, tt.dst)
			want := "lobby? " + tt.name
			to := &net.UDPAddr{IP: tt.dst.AsSlice(), Port: recv.port}
			// UDP may be lost; a few tries, each answered within 300 ms.
			for i := 0; i < 10; i++ {
				if _, err := send.WriteTo([]byte(want), nil, to); err != nil {
					t.Fatalf("send to %s: %v", to, err)
				}
				got, dst, from, ok := recv.read(300 * time.Millisecond)
				if !ok {
					continue
				}
				if got != want || dst != tt.dst || from != r.A.Overlay4 {
					t.Fatalf("B got %q to %s from %s; want %q to %s from %s", got, dst, from, want, tt.dst, r.A.Overlay4)
				}
				return
			}
			t.Fatalf("nothing sent to %s on A's punch0 reached B\n%s", tt.dst, r.Logs())
		})
	}
}

func lastOf(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	for i := p.Bits(); i < 32; i++ {
		a[i/8] |= 1 << (7 - i%8)
	}
	return netip.AddrFrom4(a)
}

type groupReceiver struct {
	pc   *ipv4.PacketConn
	port int
}

// listenGroup listens in h on dst (a broadcast or multicast address) on
// punch0, reporting each datagram's destination address.
func listenGroup(t *testing.T, h *lab.Host, dst netip.Addr) *groupReceiver {
	t.Helper()
	return listenGroupOn(t, h, dst, 0)
}

// listenGroupOn is listenGroup on a given port (mDNS needs 5353).
func listenGroupOn(t *testing.T, h *lab.Host, dst netip.Addr, port int) *groupReceiver {
	t.Helper()
	c := udpSocketOn(t, h, syscall.SO_REUSEADDR, port)
	pc := ipv4.NewPacketConn(c)
	if err := pc.SetControlMessage(ipv4.FlagDst|ipv4.FlagSrc, true); err != nil {
		t.Fatal(err)
	}
	if dst.IsMulticast() {
		if err := pc.JoinGroup(punch0(t, h), &net.UDPAddr{IP: dst.AsSlice()}); err != nil {
			t.Fatalf("join %s on punch0: %v", dst, err)
		}
	}
	return &groupReceiver{pc: pc, port: c.LocalAddr().(*net.UDPAddr).Port}
}

func (g *groupReceiver) read(timeout time.Duration) (payload string, dst, src netip.Addr, ok bool) {
	buf := make([]byte, 1500)
	_ = g.pc.SetReadDeadline(time.Now().Add(timeout))
	n, cm, from, err := g.pc.ReadFrom(buf)
	if err != nil || cm == nil {
		return "", netip.Addr{}, netip.Addr{}, false
	}
	dst, _ = netip.AddrFromSlice(cm.Dst.To4())
	if ua, isUDP := from.(*net.UDPAddr); isUDP {
		src, _ = netip.AddrFromSlice(ua.IP.To4())
	}
	return string(buf[:n]), dst, src, true
}

// senderOn opens a UDP socket in h that may broadcast, and sends multicast
// out of punch0.
func senderOn(t *testing.T, h *lab.Host, dst netip.Addr) *ipv4.PacketConn {
	t.Helper()
	pc := ipv4.NewPacketConn(udpSocketIn(t, h, syscall.SO_BROADCAST))
	if dst.IsMulticast() {
		if err := pc.SetMulticastInterface(punch0(t, h)); err != nil {
			t.Fatal(err)
		}
	}
	return pc
}

// udpSocketIn opens a UDP socket on any port inside h, with the boolean
// socket option opt set; it is closed with t.
func udpSocketIn(t *testing.T, h *lab.Host, opt int) net.PacketConn {
	t.Helper()
	return udpSocketOn(t, h, opt, 0)
}

func udpSocketOn(t *testing.T, h *lab.Host, opt, port int) net.PacketConn {
	t.Helper()
	var c net.PacketConn
	err := h.Do(func() error {
		lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, opt, 1)
			}); err != nil {
				return err
			}
			return serr
		}}
		var err error
		c, err = lc.ListenPacket(context.Background(), "udp4", "0.0.0.0:"+strconv.Itoa(port))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func punch0(t *testing.T, h *lab.Host) *net.Interface {
	t.Helper()
	var ifi *net.Interface
	if err := h.Do(func() (err error) { ifi, err = net.InterfaceByName("punch0"); return err }); err != nil {
		t.Fatal(err)
	}
	return ifi
}
