// Package tlsmux serves two protocols on one TLS port: the rendezvous'
// HTTPS/WebSocket signaling and TURN over TLS. Networks that let nothing
// out but TCP to port 443 then reach both, with one listener. The TLS
// handshake comes first; then ALPN decides when the client offered it
// ("http/1.1", "h2" or "stun.turn", RFC 7443), else the first bytes do: a
// TURN client's first message is a STUN request, whose header carries the
// magic cookie 0x2112A442 in bytes 4-7, which no HTTP request line has.
//
// Everything a stranger can make it hold is bounded: handshakes in flight,
// the time a handshake and the first bytes may take, and the connections
// waiting for each side's Accept.
package tlsmux

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Protocol is where a connection goes.
type Protocol int

const (
	ProtoHTTP Protocol = iota // signaling, health, metrics
	ProtoTURN                 // TURN over TLS
)

func (p Protocol) String() string {
	switch p {
	case ProtoHTTP:
		return "http"
	case ProtoTURN:
		return "turn"
	}
	return "unknown"
}

// ALPN protocol IDs offered to clients.
const (
	alpnHTTP1 = "http/1.1"
	alpnTURN  = "stun.turn" // RFC 7443
)

// stunMagicCookie is in bytes 4-7 of every STUN message (RFC 5389).
const stunMagicCookie = 0x2112A442

// Config tunes a Mux; zero values take the defaults.
type Config struct {
	// TLS is the server configuration (certificates); its NextProtos are
	// replaced by the ones the Mux dispatches on.
	TLS *tls.Config
	// HandshakeTimeout bounds the TLS handshake and the first bytes
	// together (default 10 s).
	HandshakeTimeout time.Duration
	// MaxHandshakes bounds handshakes in flight; more connections are
	// closed at once (default 256).
	MaxHandshakes int
	// Backlog bounds connections waiting for each side's Accept; more are
	// closed (default 64).
	Backlog int
	Logger  *slog.Logger
}

const (
	defaultHandshakeTimeout = 10 * time.Second
	defaultMaxHandshakes    = 256
	defaultBacklog          = 64
	// dropLogEvery: refused connections are logged at most this often.
	dropLogEvery = 10 * time.Second
)

// Mux accepts on one TCP listener and hands TLS connections, handshake
// done, to the listener of their protocol.
type Mux struct {
	cfg    Config
	log    *slog.Logger
	ln     net.Listener
	tls    *tls.Config
	sem    chan struct{}
	out    [2]*listener
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	dropped atomic.Uint64 // refused or failed connections, for the log
	lastLog atomic.Int64  // unix nanos of the last drop log line
}

// New starts serving ln; call Close to stop (it closes ln).
func New(ln net.Listener, cfg Config) (*Mux, error) {
	if cfg.TLS == nil || (len(cfg.TLS.Certificates) == 0 && cfg.TLS.GetCertificate == nil) {
		return nil, errors.New("tlsmux: no certificate: give --tls-cert and --tls-key")
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = defaultHandshakeTimeout
	}
	if cfg.MaxHandshakes <= 0 {
		cfg.MaxHandshakes = defaultMaxHandshakes
	}
	if cfg.Backlog <= 0 {
		cfg.Backlog = defaultBacklog
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	t := cfg.TLS.Clone()
	t.NextProtos = []string{alpnHTTP1, alpnTURN}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Mux{cfg: cfg, log: log, ln: ln, tls: t, sem: make(chan struct{}, cfg.MaxHandshakes), ctx: ctx, cancel: cancel}
	for i := range m.out {
		m.out[i] = &listener{addr: ln.Addr(), conns: make(chan net.Conn, cfg.Backlog), muxDone: ctx.Done(), closed: make(chan struct{})}
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.acceptLoop()
	}()
	return m, nil
}

// Listener returns the listener of protocol p: conns from its Accept are
// TLS connections with the handshake done.
func (m *Mux) Listener(p Protocol) net.Listener { return m.out[p] }

// Addr is the shared listener's address.
func (m *Mux) Addr() net.Addr { return m.ln.Addr() }

// Close stops accepting, closes the listener and every connection not yet
// accepted, and waits for its goroutines; idempotent.
func (m *Mux) Close() error {
	var err error
	m.once.Do(func() {
		m.cancel()
		err = m.ln.Close()
		m.wg.Wait()
		for _, l := range m.out {
			l.drain()
		}
	})
	return err
}

func (m *Mux) acceptLoop() {
	backoff := 5 * time.Millisecond
	for {
		c, err := m.ln.Accept()
		if err != nil {
			if m.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and friends: wait instead of spinning.
			m.log.Warn("shared TLS port: accept failed; retrying", "err", err, "in", backoff)
			select {
			case <-time.After(backoff):
			case <-m.ctx.Done():
				return
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		select {
		case m.sem <- struct{}{}:
		default:
			c.Close()
			m.drop("too many TLS handshakes in flight", c.RemoteAddr())
			continue
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			defer func() { <-m.sem }()
			m.handle(c)
		}()
	}
}

// handle does the handshake and the dispatch for one connection.
func (m *Mux) handle(raw net.Conn) {
	deadline := time.Now().Add(m.cfg.HandshakeTimeout)
	_ = raw.SetDeadline(deadline)
	tc := tls.Server(raw, m.tls)
	ctx, cancel := context.WithDeadline(m.ctx, deadline)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		tc.Close()
		m.drop("TLS handshake failed", raw.RemoteAddr())
		return
	}
	var conn net.Conn = tc
	var proto Protocol
	switch tc.ConnectionState().NegotiatedProtocol {
	case alpnHTTP1, "h2":
		proto = ProtoHTTP
	case alpnTURN:
		proto = ProtoTURN
	default:
		br := bufio.NewReaderSize(tc, 512)
		head, err := br.Peek(8)
		if err != nil {
			tc.Close()
			m.drop("no request after the TLS handshake", raw.RemoteAddr())
			return
		}
		proto = Sniff(head)
		conn = &peekedConn{Conn: tc, r: br}
	}
	_ = raw.SetDeadline(time.Time{})
	if !m.out[proto].deliver(conn) {
		conn.Close()
		m.drop("backlog full for "+proto.String(), raw.RemoteAddr())
	}
}

// Sniff tells the protocol from a connection's first bytes (at least 8):
// a STUN message has the magic cookie in bytes 4-7 and its two top bits
// clear; anything else is taken for HTTP (whose server answers junk).
func Sniff(head []byte) Protocol {
	if len(head) >= 8 && head[0]&0xc0 == 0 && binary.BigEndian.Uint32(head[4:8]) == stunMagicCookie {
		return ProtoTURN
	}
	return ProtoHTTP
}

// drop counts a refused connection and logs at a bounded rate.
func (m *Mux) drop(why string, from net.Addr) {
	n := m.dropped.Add(1)
	now := time.Now().UnixNano()
	last := m.lastLog.Load()
	if now-last < int64(dropLogEvery) || !m.lastLog.CompareAndSwap(last, now) {
		return
	}
	m.log.Info("shared TLS port: connection refused", "why", why, "from", from.String(), "refused_total", n)
}

// Dropped is how many connections were refused or failed before dispatch.
func (m *Mux) Dropped() uint64 { return m.dropped.Load() }

// peekedConn reads first what the dispatch peeked.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// NetConn is the TCP connection under it (the rendezvous asks the kernel
// about its socket).
func (c *peekedConn) NetConn() net.Conn { return c.Conn }

// listener is one protocol's side.
type listener struct {
	addr    net.Addr
	conns   chan net.Conn
	muxDone <-chan struct{}
	closed  chan struct{} // this side closed
	once    sync.Once
	mu      sync.Mutex
	shut    bool
}

func (l *listener) deliver(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.shut {
		return false
	}
	select {
	case l.conns <- c:
		return true
	default:
		return false
	}
}

func (l *listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.muxDone:
		return nil, net.ErrClosed
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// Close stops this side only: its server is shutting down, the other may
// still serve. Connections for it are refused from now on.
func (l *listener) Close() error {
	l.once.Do(func() {
		close(l.closed)
		l.drain()
	})
	return nil
}

func (l *listener) Addr() net.Addr { return l.addr }

// drain closes what is still queued; no deliver succeeds afterwards.
func (l *listener) drain() {
	l.mu.Lock()
	l.shut = true
	l.mu.Unlock()
	for {
		select {
		case c := <-l.conns:
			c.Close()
		default:
			return
		}
	}
}
