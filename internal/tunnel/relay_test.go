package tunnel

import (
	"bytes"
	"encoding/binary"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/punchd/punchd/internal/udpbatch"
)

// fakeChannel is a TURN channel on a loopback socket: the "server" is a
// plain UDP socket that sees the ChannelData datagrams.
type fakeChannel struct {
	pc     *ipv4.PacketConn
	server *net.UDPAddr
	number uint16
	bound  atomic.Bool
}

func (c *fakeChannel) Bound() (uint16, *net.UDPAddr, bool) {
	return c.number, c.server, c.bound.Load()
}

func (c *fakeChannel) WriteBatch(msgs []ipv4.Message, flags int) (int, error) {
	return c.pc.WriteBatch(msgs, flags)
}

func newFakeChannel(t testing.TB) (*fakeChannel, *net.UDPConn) {
	t.Helper()
	lo := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
	client, err := net.ListenUDP("udp4", lo)
	if err != nil {
		t.Fatal(err)
	}
	server, err := net.ListenUDP("udp4", lo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return &fakeChannel{pc: ipv4.NewPacketConn(client), server: server.LocalAddr().(*net.UDPAddr), number: 0x4001}, server
}

// A relay path with a bound TURN channel sends ChannelData on the TURN
// socket itself, batched (and coalesced for GSO when the kernel allows),
// and only falls back to the relay writer before the channel is bound.
func TestRelayChannelSend(t *testing.T) {
	tests := []struct {
		name   string
		bound  bool
		noGSO  bool
		sizes  []int
		direct int // datagrams expected on the channel
	}{
		{"bound, GSO", true, false, []int{1200, 1200, 1200, 500}, 4},
		{"bound, no GSO", true, true, []int{1200, 1200, 500}, 3},
		{"bound, one packet", true, false, []int{148}, 1},
		{"not bound yet", false, false, []int{1200, 1200}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, _ := openLoopback(t)
			if tt.noGSO {
				b.relayGSO.DisableGSO()
			}
			ch, server := newFakeChannel(t)
			ch.bound.Store(tt.bound)
			var viaRelay int
			peer := key(t)
			b.SetPath(peer, Path{Relay: relayFunc(func([]byte) { viaRelay++ }), Channel: ch})
			ep, _ := b.ParseEndpoint(b.EndpointFor(peer))
			var bufs [][]byte
			for i, n := range tt.sizes {
				p := wgPacket(4, n)
				p[16] = byte(i)
				bufs = append(bufs, p)
			}
			if err := b.Send(bufs, ep); err != nil {
				t.Fatal(err)
			}
			if viaRelay != len(bufs)-tt.direct {
				t.Fatalf("%d packets through the relay writer, want %d", viaRelay, len(bufs)-tt.direct)
			}
			buf := make([]byte, 4096)
			_ = server.SetReadDeadline(time.Now().Add(5 * time.Second))
			for i := 0; i < tt.direct; i++ {
				n, _, err := server.ReadFrom(buf)
				if err != nil {
					t.Fatalf("datagram %d: %v", i, err)
				}
				d := buf[:n]
				if len(d) < 4 || binary.BigEndian.Uint16(d) != ch.number || int(binary.BigEndian.Uint16(d[2:])) != len(bufs[i]) || !bytes.Equal(d[4:], bufs[i]) {
					t.Fatalf("datagram %d is not ChannelData %#x with packet %d: % x…", i, ch.number, i, d[:min(8, len(d))])
				}
			}
		})
	}
}

func TestCoalesceChannelData(t *testing.T) {
	addr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}
	bufs := [][]byte{bytes.Repeat([]byte{1}, 100), bytes.Repeat([]byte{2}, 100), bytes.Repeat([]byte{3}, 60)}
	msgs := coalesce(udpbatch.NewBatch(batchSize), bufs, addr, 0x4abc)
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
	m := msgs[0]
	var want []byte
	for _, b := range bufs {
		want = binary.BigEndian.AppendUint16(want, 0x4abc)
		want = binary.BigEndian.AppendUint16(want, uint16(len(b)))
		want = append(want, b...)
	}
	if !bytes.Equal(m.Buffers[0], want) {
		t.Fatal("coalesced ChannelData differs")
	}
	// The segment size counts the header: the kernel cuts 104-byte datagrams.
	if seg := binary.NativeEndian.Uint16(m.OOB[unix.CmsgLen(0):]); seg != 104 {
		t.Fatalf("segment size %d, want 104", seg)
	}
}

// A datagram beyond the coalescing limit still goes out, alone.
func TestCoalesceOversized(t *testing.T) {
	addr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}
	bufs := [][]byte{make([]byte, udpbatch.MaxGSOBytes+10), make([]byte, 100)}
	msgs := coalesce(udpbatch.NewBatch(batchSize), bufs, addr, 0)
	if len(msgs) != 2 || len(msgs[0].Buffers[0]) != udpbatch.MaxGSOBytes+10 || msgs[0].OOB != nil {
		t.Fatalf("%d messages; first %d bytes", len(msgs), len(msgs[0].Buffers[0]))
	}
}
