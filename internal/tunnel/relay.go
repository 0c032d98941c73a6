package tunnel

import (
	"fmt"
	"net"

	"golang.org/x/net/ipv4"
	"golang.zx2c4.com/wireguard/conn"

	"github.com/punchd/punchd/internal/identity"
)

// TURNChannel is a relay path's channel on its TURN server (turnclient.Channel):
// with it the Bind sends a relayed peer's packets as ChannelData on the
// TURN client's own UDP socket, in batches and with GSO, instead of one
// ice.Conn.Write each through pion's TURN client.
type TURNChannel interface {
	// Bound returns the channel number and the server's address once the
	// channel to the peer is bound; until then packets use Path.Relay.
	Bound() (number uint16, server *net.UDPAddr, ok bool)
	// WriteBatch sends datagrams on the TURN client's socket (sendmmsg).
	WriteBatch(msgs []ipv4.Message, flags int) (int, error)
}

// sendChannel writes bufs as ChannelData on a bound TURN channel.
func (b *Bind) sendChannel(bufs [][]byte, ch TURNChannel, number uint16, server *net.UDPAddr) error {
	if err := b.sendBatched(ch, &b.relayGSO, bufs, server, number); err != nil {
		return fmt.Errorf("send via relay channel %#x to %s: %w", number, server, err)
	}
	return nil
}

// DeliverRelay hands a packet that arrived through a relay (read from the
// relay pair's ice.Conn) to the device, as if it came from peer. It copies
// pkt, so the caller may reuse it; anything but WireGuard is dropped, and
// so is the packet when the device lags behind by relayQueue packets.
func (b *Bind) DeliverRelay(peer identity.PublicKey, pkt []byte) {
	if Classify(pkt) != KindWireGuard {
		if isProbe(pkt) {
			b.answerProbe(pkt, b.peer(peer), nil)
		}
		return
	}
	bp := b.relayBufs.Get().(*[]byte)
	*bp = append((*bp)[:0], pkt...)
	select {
	case b.relayIn <- relayPacket{ep: b.peer(peer), buf: bp}:
	default:
		b.relayDrops.Add(1)
		b.putRelayBuf(bp)
	}
}

// receiveRelay feeds the device what DeliverRelay queued. The queue
// outlives a Close/Open cycle; packets queued meanwhile wait for the next
// receiver.
func (b *Bind) receiveRelay(s *socket) conn.ReceiveFunc {
	return func(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		var rp relayPacket
		select {
		case rp = <-b.relayIn:
		case <-s.closed:
			return 0, net.ErrClosed
		}
		n := 0
		for {
			sizes[n] = copy(packets[n], *rp.buf)
			eps[n] = rp.ep
			b.putRelayBuf(rp.buf)
			n++
			if n == len(packets) {
				return n, nil
			}
			select {
			case rp = <-b.relayIn:
			default:
				return n, nil
			}
		}
	}
}

// putRelayBuf recycles a buffer unless a jumbo packet grew it: the pool
// should hold ordinary sizes only.
func (b *Bind) putRelayBuf(bp *[]byte) {
	if cap(*bp) <= relayBufSize {
		b.relayBufs.Put(bp)
	}
}
