package turnserver

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// TURN over TCP and TLS: every accepted connection holds an fd, a
// goroutine and pion's read buffer. A connection with no allocation does
// nothing a client needs for long (allocating takes two round trips), so
// it is closed after the idle timeout; one whose allocation ends gets the
// same time again. Connections per source IP (IPv6 per /64) and in total
// are capped, as the signaling server caps its own.
const (
	DefaultStreamIdle = 30 * time.Second
	streamsPerIP      = 64
	streamsTotal      = 4096
)

// streamGuard wraps the raw TCP listener of TURN over TCP or TLS (TLS
// runs on top of it, so the handshake counts against the same timer).
type streamGuard struct {
	net.Listener
	idle time.Duration
	log  *slog.Logger

	mu    sync.Mutex
	conns map[string]*guardedStream // by "remote|local", as pion names its 5-tuple
	perIP map[netip.Prefix]int
	// refusedAt bounds the log about refused connections.
	refusedAt time.Time
}

func newStreamGuard(l net.Listener, idle time.Duration, log *slog.Logger) *streamGuard {
	if idle <= 0 {
		idle = DefaultStreamIdle
	}
	return &streamGuard{Listener: l, idle: idle, log: orDefault(log),
		conns: map[string]*guardedStream{}, perIP: map[netip.Prefix]int{}}
}

func streamKey(remote, local net.Addr) string { return remote.String() + "|" + local.String() }

func (g *streamGuard) Accept() (net.Conn, error) {
	for {
		c, err := g.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := clientKey(c.RemoteAddr())
		g.mu.Lock()
		if g.perIP[ip] >= streamsPerIP || len(g.conns) >= streamsTotal {
			now := time.Now()
			if now.Sub(g.refusedAt) >= time.Minute {
				g.refusedAt = now
				g.log.Warn("TURN over TCP/TLS: connection refused, too many open", "from", c.RemoteAddr().String(),
					"from_ip", g.perIP[ip], "per_ip_limit", streamsPerIP, "total", len(g.conns), "total_limit", streamsTotal)
			}
			g.mu.Unlock()
			_ = c.Close()
			continue
		}
		s := &guardedStream{Conn: c, g: g, key: streamKey(c.RemoteAddr(), c.LocalAddr()), ip: ip}
		g.conns[s.key] = s
		g.perIP[ip]++
		s.timer = time.AfterFunc(g.idle, s.expire)
		g.mu.Unlock()
		return s, nil
	}
}

// allocated and released follow pion's allocation events: a connection
// with an allocation has no idle timer.
func (g *streamGuard) allocated(src, dst net.Addr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if s := g.conns[streamKey(src, dst)]; s != nil {
		s.allocs++
		s.timer.Stop()
	}
}

func (g *streamGuard) released(src, dst net.Addr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if s := g.conns[streamKey(src, dst)]; s != nil {
		if s.allocs--; s.allocs <= 0 {
			s.allocs = 0
			s.timer.Reset(g.idle)
		}
	}
}

// guardedStream is one accepted TURN connection.
type guardedStream struct {
	net.Conn
	g      *streamGuard
	key    string
	ip     netip.Prefix
	timer  *time.Timer // guarded by g.mu
	allocs int         // guarded by g.mu
	once   sync.Once
}

func (s *guardedStream) expire() {
	s.g.mu.Lock()
	idle := s.allocs == 0
	s.g.mu.Unlock()
	if idle {
		s.g.log.Debug("TURN over TCP/TLS: closing a connection that holds no allocation", "from", s.RemoteAddr().String(), "idle", s.g.idle)
		_ = s.Close()
	}
}

// Close forgets the connection (once) and closes it.
func (s *guardedStream) Close() error {
	s.once.Do(func() {
		s.g.mu.Lock()
		s.timer.Stop()
		if s.g.conns[s.key] == s {
			delete(s.g.conns, s.key)
		}
		if s.g.perIP[s.ip]--; s.g.perIP[s.ip] <= 0 {
			delete(s.g.perIP, s.ip)
		}
		s.g.mu.Unlock()
	})
	return s.Conn.Close()
}
