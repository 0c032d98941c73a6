package icemux

import (
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
)

// movingConn is a socket whose reported address changes, as the tunnel
// Bind's STUN side does after tunnel.Bind.RefreshLocal.
type movingConn struct {
	net.PacketConn
	local atomic.Pointer[net.UDPAddr]
}

func (c *movingConn) LocalAddr() net.Addr { return c.local.Load() }

// After the host's address changed, the mux offers the new address for
// host candidates and still hands out connections for it (pion's own mux
// refuses any address but the first).
func TestMuxFollowsHostAddress(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	c := &movingConn{PacketConn: pc}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	c.local.Store(&net.UDPAddr{IP: net.IPv4(198, 19, 1, 2), Port: port})
	mux, err := NewUDPMux(c, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer mux.Close()

	moved := &net.UDPAddr{IP: net.IPv4(198, 19, 3, 2), Port: port}
	c.local.Store(moved)
	addrs := mux.GetListenAddresses()
	if len(addrs) != 1 || addrs[0].String() != moved.String() {
		t.Fatalf("listen addresses %v after the move, want [%v]", addrs, moved)
	}
	conn, err := mux.GetConn("ufrag1", addrs[0])
	if err != nil {
		t.Fatalf("GetConn for the new address: %v", err)
	}
	conn.Close()
	conn, err = mux.GetConnForURL("ufrag2", "stun:198.18.0.2:3478", addrs[0])
	if err != nil {
		t.Fatalf("GetConnForURL for the new address: %v", err)
	}
	conn.Close()
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestNewUDPMuxErrors(t *testing.T) {
	if _, err := NewUDPMux(nil, nil); err == nil {
		t.Fatal("NewUDPMux(nil) succeeded")
	}
}
