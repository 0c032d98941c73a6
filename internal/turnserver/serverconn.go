package turnserver

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"

	"golang.org/x/net/ipv4"

	"github.com/punchd/punchd/internal/udpbatch"
)

// The TURN server's UDP socket, as pion sees it. pion reads it one
// datagram at a time in one goroutine and writes it one datagram at a
// time from one goroutine per allocation (what a relay socket received,
// as ChannelData to the client). Profiled under a relayed iperf3, those
// sendto calls were 40% of the server's CPU. serverConn keeps pion's
// interface but
//
//   - queues writes and sends them from one writer goroutine with sendmmsg,
//     runs of equal-sized datagrams to one client as one UDP GSO message
//     (a relayed bulk transfer is exactly that);
//   - reads with recvmmsg and hands out one *net.UDPAddr per client
//     instead of a new one per datagram (pion only reads addresses).
//
// A write returns once queued, as UDP sends do once in the socket buffer;
// it waits while the queue is full, as a full socket buffer makes sendto
// wait. Send errors of single datagrams (an ICMP unreachable reported
// back) are dropped, as pion only logs them.

const (
	serverBatch = 64 // datagrams per recvmmsg and per sendmmsg
	// serverQueue bounds datagrams queued for sending.
	serverQueue = 2048
	// serverAddrs bounds the cache of client addresses.
	serverAddrs = 4096
)

type serverConn struct {
	*net.UDPConn
	pc  *ipv4.PacketConn
	log *slog.Logger

	// Read state, owned by pion's read loop.
	in    *udpbatch.Stream
	addrs map[netip.AddrPort]*net.UDPAddr

	out       chan outDatagram
	bufs      sync.Pool // *[]byte
	w         udpbatch.Writer
	done      chan struct{}
	writer    sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

type outDatagram struct {
	buf  *[]byte
	addr net.Addr
	dst  netip.AddrPort
}

func newServerConn(c *net.UDPConn, log *slog.Logger) (*serverConn, error) {
	// pion drops anything over its 1600-byte inbound MTU anyway.
	in, err := udpbatch.NewStream(c, serverBatch, 2048)
	if err != nil {
		return nil, err
	}
	s := &serverConn{
		UDPConn: c,
		pc:      ipv4.NewPacketConn(c),
		log:     log,
		in:      in,
		addrs:   make(map[netip.AddrPort]*net.UDPAddr),
		out:     make(chan outDatagram, serverQueue),
		done:    make(chan struct{}),
		w:       udpbatch.Writer{Log: log, What: "TURN server", SkipFailed: true},
	}
	s.bufs.New = func() any {
		b := make([]byte, 0, 2048)
		return &b
	}
	s.writer.Add(1)
	go func() {
		defer s.writer.Done()
		s.writeLoop()
	}()
	return s, nil
}

// ReadFrom returns the next datagram.
func (s *serverConn) ReadFrom(p []byte) (int, net.Addr, error) {
	m, err := s.in.Next()
	if err != nil {
		return 0, nil, err
	}
	return copy(p, m.Data()), s.addr(m.Addr), nil
}

func (s *serverConn) addr(ap netip.AddrPort) *net.UDPAddr {
	if a, ok := s.addrs[ap]; ok {
		return a
	}
	if len(s.addrs) >= serverAddrs {
		clear(s.addrs) // addresses already handed out stay valid
	}
	a := net.UDPAddrFromAddrPort(ap)
	s.addrs[ap] = a
	return a
}

// WriteTo queues p for addr.
func (s *serverConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return s.UDPConn.WriteTo(p, addr)
	}
	select {
	case <-s.done:
		return 0, net.ErrClosed
	default:
	}
	bp := s.bufs.Get().(*[]byte)
	*bp = append((*bp)[:0], p...)
	select {
	case s.out <- outDatagram{buf: bp, addr: ua, dst: ua.AddrPort()}:
		return len(p), nil
	case <-s.done:
		s.bufs.Put(bp)
		return 0, net.ErrClosed
	}
}

// writeLoop sends what WriteTo queued, as much per sendmmsg as is there.
func (s *serverConn) writeLoop() {
	batch := udpbatch.NewBatch(serverBatch)
	items := make([]outDatagram, 0, serverBatch)
	for {
		select {
		case d := <-s.out:
			items = append(items[:0], d)
		case <-s.done:
			return
		}
	more:
		for len(items) < serverBatch {
			select {
			case d := <-s.out:
				items = append(items, d)
			default:
				break more
			}
		}
		s.send(batch, items)
		for i := range items {
			s.bufs.Put(items[i].buf)
			items[i] = outDatagram{}
		}
	}
}

func (s *serverConn) send(batch *udpbatch.Batch, items []outDatagram) {
	size := 0
	for _, d := range items {
		size += len(*d.buf)
	}
	// At least a full batch of MTU-sized datagrams: the arena is made once.
	_ = s.w.Send(s.pc, batch, max(size, serverBatch*2048), func(b *udpbatch.Batch) {
		for _, d := range items {
			b.Add(d.addr, d.dst, nil, *d.buf)
		}
	}) // failed datagrams are skipped and logged; the error is only ever ErrClosed
}

// Close stops the writer (what is still queued is dropped) and closes the
// socket; idempotent.
func (s *serverConn) Close() error {
	s.closeOnce.Do(func() {
		close(s.done)
		s.writer.Wait()
		s.closeErr = s.UDPConn.Close()
	})
	return s.closeErr
}
