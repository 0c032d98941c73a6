package turnserver

import (
	"net/netip"
	"os"
	"testing"

	"github.com/pion/turn/v5"

	"github.com/punchd/punchd/internal/sockbuf"
)

// TestDataPathSocketsBuffered checks every UDP socket of the server a
// relayed tunnel crosses gets large buffers: the listening socket and each
// relay allocation.
func TestDataPathSocketsBuffered(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("forcing buffers past rmem_max needs root (CAP_NET_ADMIN)")
	}
	tests := []struct {
		name string
		open func(t *testing.T) (any, error)
	}{
		{"TURN server socket", func(t *testing.T) (any, error) {
			s := startServer(t)
			return s.conn, nil
		}},
		{"TURN relay allocation", func(*testing.T) (any, error) {
			g := newRelayGenerator(netip.MustParseAddr("127.0.0.1"), nil)
			if err := g.Validate(); err != nil {
				return nil, err
			}
			c, _, err := g.AllocatePacketConn(turn.AllocateListenerConfig{Network: "udp4"})
			if err != nil {
				return nil, err
			}
			return c.(*guardedRelay).PacketConn, nil
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
