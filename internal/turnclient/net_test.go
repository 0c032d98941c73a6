package turnclient

import (
	"net"
	"os"
	"testing"

	"github.com/punchd/punchd/internal/sockbuf"
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
