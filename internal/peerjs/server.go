// Package peerjs is a PeerServer-compatible signaling server for web apps
// that use the peerjs client library: `new Peer(id, {host, port, path:
// '/peerjs'})` pointed at `punchd rendezvous` registers and exchanges
// offers, answers and candidates here. It is plain WebRTC signaling for
// browsers, apart from punchd's own sealed protocol (internal/rendezvous),
// and bounded the same way: frame size, connections per address and in
// total, messages per second, bytes queued per peer, idle timeout.
//
// What differs from PeerServer, on purpose: a message to a peer that is
// not connected is answered at once with EXPIRE instead of being queued
// for 5 s (a stranger could otherwise park messages for any ID), peer
// listing (/peers) is never offered, and malformed input gets an ERROR
// and a close instead of being ignored.
package peerjs

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	"golang.org/x/time/rate"

	"github.com/punchd/punchd/internal/iplimit"
	"github.com/punchd/punchd/internal/junklog"
	"github.com/punchd/punchd/internal/weborigin"
)

// Path is where the server is mounted; the peerjs client's `path` option.
const Path = "/peerjs"

// Config configures the server. Zero limits get defaults.
type Config struct {
	// Origins may connect from a browser; a request without an Origin
	// (a non-browser client) is admitted too. Empty: the server is off.
	Origins *weborigin.Allowlist
	// Key is the peerjs `key` option; default "peerjs", as PeerServer's.
	Key string

	MaxPeers          int           // registered at once; default 5000 (PeerServer's concurrent_limit)
	MaxPeersPerIP     int           // WebSockets per IPv4 address or IPv6 /64; default 32
	MaxFrameBytes     int           // default 64 KiB (an offer with media SDP is a few KiB)
	MessagesPerSecond int           // per connection, sustained, burst 2x; default 50
	QueueBytesPerPeer int           // waiting for a slow reader; default 256 KiB
	IdleTimeout       time.Duration // no message; default 90 s, PeerServer's alive_timeout (clients heartbeat every 5 s, but a hidden tab's timers may fire only once a minute)
	WriteTimeout      time.Duration // one frame to a client; default 10 s
	Logger            *slog.Logger
}

func (c *Config) defaults() {
	if c.Key == "" {
		c.Key = "peerjs"
	}
	if c.MaxPeers <= 0 {
		c.MaxPeers = 5000
	}
	if c.MaxPeersPerIP <= 0 {
		c.MaxPeersPerIP = 32
	}
	if c.MaxFrameBytes <= 0 {
		c.MaxFrameBytes = 64 << 10
	}
	if c.MessagesPerSecond <= 0 {
		c.MessagesPerSecond = 50
	}
	if c.QueueBytesPerPeer <= 0 {
		c.QueueBytesPerPeer = 256 << 10
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 90 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Server holds the registered peers.
type Server struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	peers  map[string]*client
	closed bool
	// conns bounds the WebSockets, registered or not (a peer's goroutines
	// and buffers exist from the upgrade on). A little room above
	// MaxPeers lets a full server still tell newcomers it is full.
	conns iplimit.Conns

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	junk  *junklog.Log // strangers' junk, counted by cause and logged at a bounded rate
	stats Stats
}

// Stats are counters for metrics.
type Stats struct {
	Forwarded atomic.Uint64 // messages routed to a connected peer
	Expired   atomic.Uint64 // messages to a peer not connected (EXPIRE sent back)
	Dropped   atomic.Uint64 // messages to a peer whose queue was full
}

type client struct {
	id, token string
	conn      *websocket.Conn
	cancel    context.CancelFunc

	mu     sync.Mutex
	queue  [][]byte
	queued int
	wake   chan struct{} // cap 1
}

// New returns a server; mount Handler at Path.
func New(cfg Config) *Server {
	cfg.defaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{cfg: cfg, log: cfg.Logger, peers: map[string]*client{}, ctx: ctx, cancel: cancel, junk: junklog.New(cfg.Logger, 0),
		conns: iplimit.Conns{PerAddr: cfg.MaxPeersPerIP, Total: cfg.MaxPeers + cfg.MaxPeers/10 + 1}}
}

// Stats are the server's counters.
func (s *Server) Stats() *Stats { return &s.stats }

// Rejected counts refused connections and input by cause (peerjs-…).
func (s *Server) Rejected() map[string]uint64 { return s.junk.Counts() }

// Online is how many peers are registered.
func (s *Server) Online() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.peers)
}

// Close ends every connection; idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}

// ServeHTTP answers below Path: GET id (and KEY/id) hands out a fresh
// ID, KEY/peers is refused (401, as PeerServer without allow_discovery),
// peerjs?key=&id=&token= is the WebSocket.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Origins.Empty() {
		http.NotFound(w, r)
		return
	}
	if s.cfg.Origins.Preflight(w, r, "GET, OPTIONS", "") {
		return
	}
	if s.cfg.Origins.Check(w, r) == weborigin.Foreign {
		s.junk.Drop("peerjs-foreign-origin", "peerjs request from a foreign origin", "remote", r.RemoteAddr, "origin", r.Header.Get("Origin"))
		http.Error(w, "origin not allowed: the rendezvous' --web-origin does not list it", http.StatusForbidden)
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET, OPTIONS")
		http.Error(w, "use GET", http.StatusMethodNotAllowed)
		return
	}
	rest := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, Path), "/")
	switch rest {
	case "":
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"name":"punchd rendezvous","description":"PeerJS-compatible signaling"}` + "\n"))
		return
	case "peerjs":
		s.serveWS(w, r)
		return
	case "id", s.cfg.Key + "/id":
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte(uuid.NewString()))
		return
	case s.cfg.Key + "/peers":
		http.Error(w, "peer listing is off", http.StatusUnauthorized)
		return
	}
	http.NotFound(w, r)
}

func (s *Server) admitIP(ip netip.Addr) bool {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	return !closed && s.conns.Acquire(ip)
}

func (s *Server) releaseIP(ip netip.Addr) { s.conns.Release(ip) }

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	ip := iplimit.RemoteAddr(r)
	if !s.admitIP(ip) {
		s.junk.Drop("peerjs-connection-limit", "peerjs connections over the per-address or total limit", "remote", r.RemoteAddr)
		http.Error(w, "too many connections from your address, or the server is full", http.StatusTooManyRequests)
		return
	}
	defer s.releaseIP(ip)
	// The origin was checked by ServeHTTP against the allowlist, which
	// is stricter than the library's same-host check.
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return
	}
	conn.SetReadLimit(int64(s.cfg.MaxFrameBytes))
	s.wg.Add(1)
	defer s.wg.Done()
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()

	q := r.URL.Query()
	id, token, key := q.Get("id"), q.Get("token"), q.Get("key")
	refuse := func(cause string, b []byte) {
		s.junk.Drop(cause, "peerjs connection refused", "remote", r.RemoteAddr, "answer", string(b))
		wctx, c := context.WithTimeout(ctx, s.cfg.WriteTimeout)
		defer c()
		_ = conn.Write(wctx, websocket.MessageText, b)
		conn.Close(websocket.StatusPolicyViolation, "")
	}
	switch {
	case id == "" || token == "" || key == "":
		refuse("peerjs-bad-parameters", errorMessage(msgNoParams))
		return
	case key != s.cfg.Key:
		refuse("peerjs-bad-parameters", errorMessage(msgInvalidKey))
		return
	case !ValidID(id):
		refuse("peerjs-bad-parameters", errorMessage(msgInvalidID))
		return
	case !validToken(token):
		refuse("peerjs-bad-parameters", errorMessage(msgInvalidToken))
		return
	}
	c := &client{id: id, token: token, conn: conn, cancel: cancel, wake: make(chan struct{}, 1)}
	// OPEN goes first: once registered, others' messages may be queued.
	c.push(encode(Message{Type: TypeOpen}), s.cfg.QueueBytesPerPeer)
	old, verdict := s.register(c)
	switch verdict {
	case regTaken:
		refuse("peerjs-id-taken", encode(Message{Type: TypeIDTaken, Payload: json.RawMessage(`{"msg":"` + msgIDTaken + `"}`)}))
		return
	case regFull:
		refuse("peerjs-full", errorMessage(msgLimitExceeded))
		return
	case regClosed:
		conn.Close(websocket.StatusGoingAway, "server shutting down")
		return
	}
	if old != nil {
		// Same ID and token: the client reconnected before its old
		// socket died. Like PeerServer, the new socket takes over.
		old.cancel()
	}
	defer s.unregister(c)
	s.log.Debug("peerjs peer open", "peer", id, "remote", r.RemoteAddr)

	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.writeLoop(ctx, c)
	}()
	s.readLoop(ctx, c, r.RemoteAddr)
}

type regVerdict int

const (
	regOK regVerdict = iota
	regTaken
	regFull
	regClosed
)

func (s *Server) register(c *client) (old *client, _ regVerdict) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, regClosed
	}
	if o := s.peers[c.id]; o != nil {
		if o.token != c.token {
			return nil, regTaken
		}
		s.peers[c.id] = c
		return o, regOK
	}
	if len(s.peers) >= s.cfg.MaxPeers {
		return nil, regFull
	}
	s.peers[c.id] = c
	return nil, regOK
}

func (s *Server) unregister(c *client) {
	s.mu.Lock()
	if s.peers[c.id] == c {
		delete(s.peers, c.id)
	}
	s.mu.Unlock()
}

func (s *Server) lookup(id string) *client {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peers[id]
}

// push queues b unless that would put more than limit bytes in the
// queue; it never blocks.
func (c *client) push(b []byte, limit int) bool {
	c.mu.Lock()
	if c.queued+len(b) > limit {
		c.mu.Unlock()
		return false
	}
	c.queue = append(c.queue, b)
	c.queued += len(b)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return true
}

func (c *client) take() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	q := c.queue
	c.queue, c.queued = nil, 0
	return q
}

func (s *Server) writeLoop(ctx context.Context, c *client) {
	defer c.conn.Close(websocket.StatusGoingAway, "")
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.wake:
		}
		for _, b := range c.take() {
			wctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
			err := c.conn.Write(wctx, websocket.MessageText, b)
			cancel()
			if err != nil {
				c.cancel()
				return
			}
		}
	}
}

// closeWith counts cause, writes an ERROR and ends the connection once it
// is written (or the write times out).
func (s *Server) closeWith(ctx context.Context, c *client, remote, cause, msg string) {
	s.junk.Drop(cause, "peerjs peer closed", "peer", c.id, "remote", remote, "reason", msg)
	wctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
	defer cancel()
	// Written directly: the queue may be what is full.
	_ = c.conn.Write(wctx, websocket.MessageText, errorMessage(msg))
	c.cancel()
}

func (s *Server) readLoop(ctx context.Context, c *client, remote string) {
	limit := rate.NewLimiter(rate.Limit(s.cfg.MessagesPerSecond), 2*s.cfg.MessagesPerSecond)
	for {
		rctx, cancel := context.WithTimeout(ctx, s.cfg.IdleTimeout)
		typ, b, err := c.conn.Read(rctx)
		idle := rctx.Err() != nil && ctx.Err() == nil
		cancel()
		if err != nil {
			switch {
			case idle:
				s.log.Debug("peerjs peer idle", "peer", c.id)
			case websocket.CloseStatus(err) == websocket.StatusMessageTooBig:
				s.junk.Drop("peerjs-oversized-frame", "peerjs peer sent an oversized frame", "peer", c.id, "remote", remote)
			}
			return
		}
		if !limit.Allow() {
			s.closeWith(ctx, c, remote, "peerjs-rate", "more than the allowed messages per second")
			return
		}
		if typ != websocket.MessageText {
			s.closeWith(ctx, c, remote, "peerjs-bad-message", "binary frames are not part of the protocol")
			return
		}
		m, err := ParseClientMessage(b)
		if err != nil {
			s.closeWith(ctx, c, remote, "peerjs-bad-message", "bad message: "+err.Error())
			return
		}
		if m.Type == TypeHeartbeat {
			continue
		}
		if m.Type == TypeLeave && m.Dst == "" {
			return // PeerServer: a LEAVE to nobody ends the sender's session
		}
		m.Src = c.id
		s.forward(c, m)
	}
}

// forward routes m to its dst. A peer that is not connected gets the
// sender an EXPIRE (except for LEAVE and EXPIRE themselves, as in
// PeerServer); a peer whose queue is full loses the message and the
// sender is told the same way.
func (s *Server) forward(from *client, m Message) {
	dst := s.lookup(m.Dst)
	if dst != nil && dst.push(encode(m), s.cfg.QueueBytesPerPeer) {
		s.stats.Forwarded.Add(1)
		return
	}
	if dst != nil {
		s.stats.Dropped.Add(1)
		s.junk.Drop("peerjs-queue-full", "peerjs peer's queue is full; message dropped", "peer", m.Dst, "from", from.id)
	} else {
		s.stats.Expired.Add(1)
	}
	if m.Type == TypeLeave || m.Type == TypeExpire {
		return
	}
	from.push(encode(Message{Type: TypeExpire, Src: m.Dst, Dst: from.id}), s.cfg.QueueBytesPerPeer)
}
