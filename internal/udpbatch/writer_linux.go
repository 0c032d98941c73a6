package udpbatch

import (
	"errors"
	"log/slog"
	"net"
	"sync/atomic"

	"golang.org/x/net/ipv4"
)

// BatchConn is a socket that takes sendmmsg batches: an ipv4.PacketConn,
// or the tunnel's view of a TURN client socket.
type BatchConn interface {
	WriteBatch(msgs []ipv4.Message, flags int) (int, error)
}

// Writer is the one GSO send path of the TURN server's socket and of the
// tunnel's sockets: it writes Batches laid out with UDP GSO until the
// kernel refuses GSO once, then turns GSO off for good and lays the same
// datagrams out again, one message each. The zero Writer is ready (with
// slog.Default for its two log lines); it is safe for concurrent use.
type Writer struct {
	// Log gets one info line when GSO is turned off and, with
	// SkipFailed, a debug line per failed datagram.
	Log *slog.Logger
	// What names the socket in those lines.
	What string
	// SkipFailed skips a datagram the kernel fails (say, an ICMP port
	// unreachable reported back on the socket) and still sends the rest,
	// as a server with many clients must; without it the error returns.
	SkipFailed bool

	gsoOff atomic.Bool // read on every send, hence atomic
}

// GSO reports whether sends still lay datagrams out for GSO.
func (w *Writer) GSO() bool { return !w.gsoOff.Load() }

// DisableGSO turns GSO off, as a kernel without it would.
func (w *Writer) DisableGSO() { w.gsoOff.Store(true) }

// Send empties b for about size bytes, lets fill add the datagrams (fill
// may be called twice: again without GSO if the kernel refuses it; it must
// add no more than b has messages for) and writes them all on c.
func (w *Writer) Send(c BatchConn, b *Batch, size int, fill func(*Batch)) error {
	gso := w.GSO()
	b.Reset(size, gso)
	fill(b)
	err := w.write(c, b.Messages(), gso)
	if gso && err != nil && IsGSOUnsupported(err) {
		w.log().Info("kernel refuses UDP GSO; sending datagram by datagram", "socket", w.What, "err", err)
		w.DisableGSO()
		// What went out already may go twice: UDP allows it.
		b.Reset(size, false)
		fill(b)
		err = w.write(c, b.Messages(), false)
	}
	return err
}

// WriteAll writes every message, none of them laid out for GSO; sendmmsg
// may take fewer than offered.
func (w *Writer) WriteAll(c BatchConn, msgs []ipv4.Message) error { return w.write(c, msgs, false) }

func (w *Writer) write(c BatchConn, msgs []ipv4.Message, gso bool) error {
	for sent := 0; sent < len(msgs); {
		k, err := c.WriteBatch(msgs[sent:], 0)
		sent += k
		switch {
		case err == nil:
		case !w.SkipFailed, errors.Is(err, net.ErrClosed), gso && IsGSOUnsupported(err):
			return err
		default:
			// The datagram at msgs[sent] failed; the others still go.
			w.log().Debug("send", "socket", w.What, "to", msgs[sent].Addr, "err", err)
			sent++
		}
	}
	return nil
}

func (w *Writer) log() *slog.Logger {
	if w.Log == nil {
		return slog.Default()
	}
	return w.Log
}
