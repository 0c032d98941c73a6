package turnclient

import (
	"net"
	"net/netip"
	"os"
	"testing"

	"github.com/punchd/punchd/internal/sockbuf"
	"github.com/punchd/punchd/internal/turnserver"
)

// TestDataPathSocketsBuffered checks every UDP socket ICE opens (the TURN
// client socket of a relayed tunnel among them) gets large buffers; the
// server's sockets are checked in turnserver.
func TestDataPathSocketsBuffered(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("forcing buffers past rmem_max needs root (CAP_NET_ADMIN)")
	}
	lo := net.IPv4(127, 0, 0, 1)
	tests := []struct {
		name string
		open func(t *testing.T) (any, error)
	}{
		{"ICE ListenPacket", func(*testing.T) (any, error) {
			n, err := NewNet(nil, nil)
			if err != nil {
				return nil, err
			}
			return n.ListenPacket("udp4", "127.0.0.1:0")
		}},
		{"ICE ListenUDP", func(*testing.T) (any, error) {
			n, err := NewNet(nil, nil)
			if err != nil {
				return nil, err
			}
			return n.ListenUDP("udp4", &net.UDPAddr{IP: lo})
		}},
		{"ICE DialUDP", func(*testing.T) (any, error) {
			n, err := NewNet(nil, nil)
			if err != nil {
				return nil, err
			}
			return n.DialUDP("udp4", nil, &net.UDPAddr{IP: lo, Port: 9})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tt.open(t)
			if err != nil {
				t.Fatal(err)
			}
			if cl, ok := c.(interface{ Close() error }); ok {
				t.Cleanup(func() { cl.Close() })
			}
			got, err := sockbuf.Get(c)
			if err != nil || got.Short(sockbuf.Size) {
				t.Errorf("buffers %+v, %v; want at least %d each", got, err, sockbuf.Size)
			}
		})
	}
}

// A TURN client socket on IPv6 gets an IPv4 relay from a server that has
// both (pion/turn's client alone would ask for IPv6, as the plain socket
// shows), and says it is on IPv6; on IPv4 nothing changes.
func TestIPv4RelayOverIPv6(t *testing.T) {
	if c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback}); err != nil {
		t.Skip("no IPv6 loopback here")
	} else {
		c.Close()
	}
	const secret = "test-secret"
	srv, err := turnserver.ListenServer(turnserver.ServerConfig{STUNListen: "127.0.0.1:0", STUNListen6: "[::1]:0", TURNSecret: secret,
		RelayIP: netip.MustParseAddr("127.0.0.1"), RelayIP6: netip.MustParseAddr("::1"), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	for _, tt := range []struct {
		name      string
		ours      bool // the socket from Net, not a plain one
		network   string
		server    net.Addr
		relay4    bool // want an IPv4 relayed address
		over6     bool
		shownZero bool // LocalAddr shows 0.0.0.0
	}{
		{"ours on IPv6", true, "udp6", srv.Addr6(), true, true, true},
		{"ours on IPv4", true, "udp4", srv.Addr(), true, false, false},
		{"plain on IPv6", false, "udp6", srv.Addr6(), false, false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			n, err := NewNet(nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			local := "127.0.0.1:0"
			if tt.network == "udp6" {
				local = "[::1]:0"
			}
			var pc net.PacketConn
			if tt.ours {
				pc, err = n.ListenPacket(tt.network, local)
			} else {
				pc, err = net.ListenPacket(tt.network, local)
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { pc.Close() })
			la := pc.LocalAddr().(*net.UDPAddr)
			if la.IP.Equal(net.IPv4zero) != tt.shownZero {
				t.Fatalf("LocalAddr %s", la)
			}
			if got := n.Over6("udp", la.Port); got != tt.over6 {
				t.Fatalf("Over6 = %v, want %v", got, tt.over6)
			}
			relayConn := allocate(t, pc, tt.server.String(), secret, n)
			if ip := relayConn.LocalAddr().(*net.UDPAddr).IP; (ip.To4() != nil) != tt.relay4 {
				t.Fatalf("relayed address %s, want IPv4 %v", ip, tt.relay4)
			}
		})
	}
}
