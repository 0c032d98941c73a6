package birthday

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// A found path has no ICE consent checks on it: a Link sends its own
// keepalives (which also keep both NATs' mappings open while the tunnel
// idles) and declares the path dead after DeadAfter without one.
const (
	KeepaliveEvery = 5 * time.Second
	DeadAfter      = 16 * time.Second
)

// Link keeps one found path alive. The hard side's Link also carries the
// tunnel over the winning socket: Write sends, and everything but
// birthday packets read from it goes to the deliver function.
type Link struct {
	key     Key
	session Session
	remote  netip.AddrPort
	send    func(b []byte, to netip.AddrPort) error
	conn    *net.UDPConn // hard side only

	last      atomic.Int64 // unix nanos of the last keepalive from the peer
	dead      chan struct{}
	deadOnce  sync.Once
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// NewHardLink takes over hit.Conn: deliver gets what arrives on it (the
// tunnel's packets; the slice is reused after the call).
func NewHardLink(key Key, session Session, hit *Hit, deliver func(pkt []byte)) *Link {
	l := newLink(key, session, hit.Remote, func(b []byte, to netip.AddrPort) error {
		_, err := hit.Conn.WriteToUDPAddrPort(b, to)
		return err
	})
	l.conn = hit.Conn
	l.wg.Go(func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := hit.Conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if netip.AddrPortFrom(from.Addr().Unmap(), from.Port()) != l.remote {
				continue // only the peer's mapping can reach this socket anyway
			}
			if Is(buf[:n]) {
				l.Deliver(buf[:n], from)
				continue
			}
			deliver(buf[:n])
		}
	})
	return l
}

// NewEasyLink keeps the easy side's path to remote alive; its keepalives
// go out through send (the tunnel socket) and the peer's arrive through
// Deliver (the socket's birthday packets).
func NewEasyLink(key Key, session Session, remote netip.AddrPort, send func(b []byte, to netip.AddrPort) error) *Link {
	return newLink(key, session, remote, send)
}

func newLink(key Key, session Session, remote netip.AddrPort, send func(b []byte, to netip.AddrPort) error) *Link {
	ctx, cancel := context.WithCancel(context.Background())
	l := &Link{key: key, session: session, remote: remote, send: send, dead: make(chan struct{}), cancel: cancel}
	l.last.Store(time.Now().UnixNano())
	l.wg.Go(func() { l.keepalive(ctx) })
	return l
}

func (l *Link) keepalive(ctx context.Context) {
	t := time.NewTicker(KeepaliveEvery)
	defer t.Stop()
	ka := Seal(&l.key, Packet{Kind: KindKeepalive, Session: l.session})
	for {
		_ = l.send(ka, l.remote)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if time.Since(time.Unix(0, l.last.Load())) > DeadAfter {
			l.deadOnce.Do(func() { close(l.dead) })
			return
		}
	}
}

// Deliver takes a birthday packet from the path; a keepalive of this
// session from the remote address proves the path alive.
func (l *Link) Deliver(b []byte, from netip.AddrPort) {
	if netip.AddrPortFrom(from.Addr().Unmap(), from.Port()) != l.remote {
		return
	}
	if p, err := Open(&l.key, l.session, b); err == nil && (p.Kind == KindKeepalive || p.Kind == KindAck) {
		l.last.Store(time.Now().UnixNano())
	}
}

// Remote is the peer's address on the path.
func (l *Link) Remote() netip.AddrPort { return l.remote }

// Write sends one tunnel packet on the hard side's socket (an io.Writer
// for the tunnel's Path.Relay).
func (l *Link) Write(p []byte) (int, error) {
	return l.conn.WriteToUDPAddrPort(p, l.remote)
}

// Dead is closed when the peer's keepalives stopped.
func (l *Link) Dead() <-chan struct{} { return l.dead }

// Close stops the keepalives and, on the hard side, closes the socket;
// idempotent.
func (l *Link) Close() {
	l.closeOnce.Do(func() {
		l.cancel()
		if l.conn != nil {
			l.conn.Close()
		}
		l.wg.Wait()
	})
}
