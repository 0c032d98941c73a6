package rendezvous

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/turn/v5"
	"golang.org/x/time/rate"

	"github.com/punchd/punchd/internal/identity"
	"github.com/punchd/punchd/internal/iplimit"
	"github.com/punchd/punchd/internal/junklog"
	"github.com/punchd/punchd/internal/sealed"
	"github.com/punchd/punchd/internal/signalwire"
)

// ServerConfig configures the signaling server. Zero limits get defaults;
// docs/rendezvous.md says why each default is what it is.
type ServerConfig struct {
	Logger *slog.Logger
	// STUNPort, when > 0, is announced to clients as
	// stun:<the host they dialed>:<port>.
	STUNPort int
	// ICEServers, when set, is announced instead.
	ICEServers []string
	// TURN, when set, is announced with per-peer credentials.
	TURN *TURNConfig
	// Addr4 and Addr6 are the STUN/TURN host's addresses by family. A
	// client that dialed an IP literal is also told the other family's
	// address (a daemon whose IPv4 UDP is blocked reaches the relay over
	// IPv6); a host name stands for both, resolved by the client.
	Addr4, Addr6 netip.Addr

	MaxFrameBytes int // largest frame a client may send; default 64 KiB
	// Frames waiting for a slow recipient are bounded per recipient
	// (count and bytes), per recipient address (IPv4 address or IPv6
	// /64) and in total; what does not fit is dropped and the sender told.
	QueuePerPeer      int // frames; default 256
	QueueBytesPerPeer int // default 256 KiB
	QueueBytesPerIP   int // default 4 MiB
	QueueBytesTotal   int // default 64 MiB
	MaxPeersPerIP     int // WebSocket connections per IPv4 address or IPv6 /64; default 64
	FramesPerSecond   int // per connection, sustained; default 100 (burst 2x)
	// RegisterTimeout bounds the handshake; default 10 s.
	RegisterTimeout time.Duration
	// MaxHandshakes bounds the registrations in progress at once (from
	// the WebSocket upgrade to the registered frame); default 256. A
	// connection that finds them all taken waits up to HandshakeWait
	// (default 3 s) for one, else gets HTTP 503 with Retry-After before
	// the upgrade: a storm of new peers, or a flood of handshakes, costs
	// the server a bounded amount of work at a time and does not starve
	// the peers it already holds.
	MaxHandshakes int
	HandshakeWait time.Duration
	// WriteTimeout closes a client that does not take a frame (or answer
	// a ping) within it; default 10 s.
	WriteTimeout time.Duration
	// PingInterval: a client the server has not heard from (no signalwire.Frame, no
	// ping, no pong) for this long is pinged, and closed when it does not
	// answer within WriteTimeout. The pings also keep NAT state along
	// the way, and idle clients rely on them instead of pinging
	// themselves (see clientSilent); default 30 s.
	PingInterval time.Duration
	// MaxTopicMembers bounds the connections on one group topic;
	// default 256 (network.MaxMembers).
	MaxTopicMembers int
	// AnnouncesPerSecond and AnnounceBurst bound the announcements one
	// connection sends (each is fanned out to the whole topic); default
	// 1 per second, burst 8.
	AnnouncesPerSecond float64
	AnnounceBurst      int
}

// TURNConfig describes the TURN relay the rendezvous hands out.
type TURNConfig struct {
	Secret  string // shared with the relay (punchd's own, or coturn's static-auth-secret)
	UDPPort int    // 0: not offered
	TCPPort int
	TLSPort int
	// TTL of the credentials; they are refreshed at half-life. Default 12 h.
	TTL time.Duration
}

func (c *ServerConfig) defaults() {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	setDefault(&c.MaxFrameBytes, 64<<10)
	setDefault(&c.QueuePerPeer, 256)
	setDefault(&c.QueueBytesPerPeer, 256<<10)
	setDefault(&c.QueueBytesPerIP, 4<<20)
	setDefault(&c.QueueBytesTotal, 64<<20)
	setDefault(&c.MaxPeersPerIP, 64)
	setDefault(&c.FramesPerSecond, 100)
	setDefault(&c.RegisterTimeout, 10*time.Second)
	setDefault(&c.MaxHandshakes, 256)
	setDefault(&c.HandshakeWait, 3*time.Second)
	setDefault(&c.WriteTimeout, 10*time.Second)
	setDefault(&c.PingInterval, 30*time.Second)
	setDefault(&c.MaxTopicMembers, 256)
	setDefault(&c.AnnounceBurst, 8)
	if c.AnnouncesPerSecond <= 0 {
		c.AnnouncesPerSecond = 1
	}
	if c.TURN != nil && c.TURN.TTL <= 0 {
		c.TURN.TTL = 12 * time.Hour
	}
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// Server routes sealed messages between registered peers.
type Server struct {
	cfg  ServerConfig
	log  *slog.Logger
	junk *junklog.Log

	mu      sync.Mutex
	clients map[identity.PublicKey]*serverClient
	topics  map[string]map[*serverClient]struct{} // group topic -> its members
	closed  bool

	// ipmu guards per-address state and the global queue budget. Lock
	// order: mu, then a client's qmu, then ipmu.
	ipmu   sync.Mutex
	perIP  map[netip.Addr]*ipState
	queued int // bytes queued for all clients

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	dropped atomic.Uint64 // frames dropped for slow clients
	// Frames read from registered clients and written to them (for
	// metrics; one atomic add per signalwire.Frame).
	framesIn, framesOut atomic.Uint64
	pings               atomic.Uint64 // keepalive pings received
	// behind counts silent clients kept because their answer sat unread
	// in the socket (the server was too busy to read it in time).
	behind atomic.Uint64
	// unanswered counts refusals not answered (over a client's budget).
	unanswered atomic.Uint64
	admits     atomic.Uint64 // WebSocket connections admitted

	work       []chan frameJob // one per frame worker
	nextWorker atomic.Uint32

	// handshakes holds a token per registration in progress
	// (MaxHandshakes).
	handshakes chan struct{}
}

type ipState struct {
	conns  int // WebSocket connections, registered or not
	queued int // bytes queued for clients at this address
}

type serverClient struct {
	id      identity.PublicKey
	ip      netip.Addr
	conn    *wsConn
	watches map[identity.PublicKey]struct{} // guarded by Server.mu
	// topics this connection joined (guarded by Server.mu); announces
	// bounds its announcements.
	topics    map[string]struct{}
	announces *rate.Limiter
	// refusals bounds the error frames that answer refused frames (see
	// refuse).
	refusals *rate.Limiter
	// strangers bounds its sends to IDs it does not watch; past it the
	// client is closed (see forward).
	strangers *rate.Limiter
	cancel    context.CancelCauseFunc       // ends the connection, saying why (the debug log has it)
	ice       func() []signalwire.ICEServer // this client's ICE servers, fresh credentials each call
	iceAt     time.Time                     // when ICE servers were last sent; the sweeper's
	seen      *atomic.Int64                 // unix ns of the last frame or ping from the client
	probing   atomic.Bool                   // a liveness ping is being sent
	pingedAt  atomic.Int64                  // unix ns of the sweeper's unanswered ping; 0: none
	worker    uint32                        // the frame worker for this client's frames

	// The send queue; a writer goroutine runs only while it is non-empty,
	// so an idle client costs no goroutine but its reader.
	qmu     sync.Mutex
	queue   [][]byte
	qbytes  int
	writing bool
	done    bool // the connection is over: enqueue refuses, the writer drains
}

// NewServer returns a server; mount Handler on an HTTP server (see
// NewHTTPServer for one with the limits a public listener needs).
func NewServer(cfg ServerConfig) *Server {
	cfg.defaults()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger,
		junk:    junklog.New(cfg.Logger, junklog.DefaultEvery),
		clients: make(map[identity.PublicKey]*serverClient),
		topics:  make(map[string]map[*serverClient]struct{}),
		perIP:   make(map[netip.Addr]*ipState),
		ctx:     ctx,
		cancel:  cancel,

		handshakes: make(chan struct{}, cfg.MaxHandshakes),
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.sweep(ctx)
	}()
	s.work = make([]chan frameJob, 2*runtime.GOMAXPROCS(0))
	for i := range s.work {
		s.work[i] = make(chan frameJob, 64)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.frameWorker(ctx, s.work[i])
		}()
	}
	return s
}

// Handler serves /v1/ws (signaling) and /healthz.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/ws", s.serveWS)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}

// Close ends every connection; idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	already := s.closed
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	if !already {
		// What was refused over the server's life, per cause: the junk
		// lines themselves are one a minute per cause.
		st := s.Stats()
		s.log.Info("signaling server stopped", "frames_in", st.FramesIn, "frames_out", st.FramesOut, "dropped", st.Dropped, "kept_while_behind", st.Behind, "refusals_unanswered", st.Unanswered, "junk", st.Junk)
	}
	return nil
}

// Online reports how many peers are registered.
func (s *Server) Online() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.clients)
}

// Stats are the server's counters, for the load benchmark and metrics.
type Stats struct {
	Online      int
	QueuedBytes int
	Dropped     uint64 // frames dropped: queue caps, rate limit
	FramesIn    uint64 // frames read from registered clients
	FramesOut   uint64 // frames written to them
	Pings       uint64 // keepalive pings received
	// Behind counts the times a silent client was kept because its
	// answer sat unread in its socket (the server was behind).
	Behind uint64
	// Unanswered counts refused frames not answered with an error
	// frame: the client was over its refusal budget.
	Unanswered uint64
	Junk       map[string]uint64
}

// Stats returns the current counters.
func (s *Server) Stats() Stats {
	st := Stats{Online: s.Online(), Dropped: s.dropped.Load(),
		FramesIn: s.framesIn.Load(), FramesOut: s.framesOut.Load(), Pings: s.pings.Load(), Behind: s.behind.Load(), Unanswered: s.unanswered.Load(), Junk: s.junk.Counts()}
	s.ipmu.Lock()
	st.QueuedBytes = s.queued
	s.ipmu.Unlock()
	return st
}

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	ip := addrKey(r.RemoteAddr)
	if !s.admit(ip) {
		s.note(junkPerIPCap, "remote", r.RemoteAddr)
		http.Error(w, "too many connections from your address", http.StatusTooManyRequests)
		return
	}
	if !s.startHandshake(r.Context()) {
		s.release(ip)
		s.wg.Done()
		s.note(junkBusy, "remote", r.RemoteAddr)
		// Before the upgrade and any cryptography: a refusal costs
		// next to nothing, and the client's backoff spreads the retry.
		w.Header().Set("Retry-After", "1")
		http.Error(w, "rendezvous busy: too many registrations in progress; retry in a second", http.StatusServiceUnavailable)
		return
	}
	seen := new(atomic.Int64)
	seen.Store(time.Now().UnixNano())
	sb := &smallBuffers{ResponseWriter: w}
	conn, err := websocket.Accept(sb, r, &websocket.AcceptOptions{
		CompressionMode: websocket.CompressionDisabled,
		OnPingReceived: func(context.Context, []byte) bool {
			s.pings.Add(1)
			seen.Store(time.Now().UnixNano())
			return true
		},
		OnPongReceived: func(context.Context, []byte) { seen.Store(time.Now().UnixNano()) },
	})
	if err != nil {
		// Accept has answered with an HTTP error; net/http owns the
		// connection still and closes it.
		s.endHandshake()
		s.release(ip)
		s.wg.Done()
		s.note(junkHandshake, "remote", r.RemoteAddr, "err", err)
		return
	}
	host := r.Host
	remote := r.RemoteAddr
	// The HTTP handler returns now: its goroutine (with the request and
	// net/http's buffers) goes away, and the connection is served by one
	// goroutine of our own with a small stack.
	go s.serveConn(&wsConn{Conn: conn, raw: sb.conn, batch: sb.batch}, ip, host, remote, seen)
}

// wsConn is an upgraded connection and the TCP (or TLS) connection under
// it, which closeWithError closes when the peer does not finish the close
// handshake in time.
type wsConn struct {
	*websocket.Conn
	raw   net.Conn
	batch *batchWriter
}

// closeHandshakeWait bounds the close handshake with a misbehaving peer
// (the library would wait 5 s for its close signalwire.Frame).
const closeHandshakeWait = time.Second

// closeWithError sends an error frame and closes with a close frame; a
// peer that does not answer the close within closeHandshakeWait is cut.
func (s *Server) closeWithError(ctx context.Context, conn *wsConn, code, msg string) {
	ctx, cancel := context.WithTimeout(ctx, closeHandshakeWait)
	defer cancel()
	cut := time.AfterFunc(closeHandshakeWait, func() { conn.raw.Close() })
	defer cut.Stop()
	_ = conn.Write(ctx, websocket.MessageText, signalwire.Encode(signalwire.Frame{Type: signalwire.TypeError, Code: code, Message: msg}))
	conn.Close(websocket.StatusPolicyViolation, code)
}

// serveConn owns conn from the upgrade on: every path out closes it and
// gives back what admit took. Once the peer is registered, a fresh
// goroutine holds the connection: it starts with a small stack that the
// handshake's crypto and JSON never grew, and it only reads (frames are
// decoded and routed by the frame workers), so ten thousand idle peers
// cost ten thousand small stacks.
func (s *Server) serveConn(conn *wsConn, ip netip.Addr, host, remote string, seen *atomic.Int64) {
	conn.SetReadLimit(int64(s.cfg.MaxFrameBytes))
	ctx, cancel := context.WithCancelCause(s.ctx)
	c, refused := s.admitPeer(ctx, cancel, conn, ip, host, remote, seen)
	// The slot goes back before a refused client's close handshake (a
	// second at most): a flood of bad registrations must not hold the
	// slots good ones need.
	s.endHandshake()
	if refused != nil {
		s.closeWithError(ctx, conn, refused.code, refused.msg)
	}
	if c == nil {
		cancel(nil)
		conn.CloseNow()
		s.release(ip)
		s.wg.Done()
		return
	}
	go s.hold(ctx, cancel, c)
}

// refusal is the error frame a failed registration is closed with.
type refusal struct{ code, msg string }

// admitPeer runs the handshake and registers the peer; nil when either
// fails, with the refusal to send when the client should hear why.
func (s *Server) admitPeer(ctx context.Context, cancel context.CancelCauseFunc, conn *wsConn, ip netip.Addr, host, remote string, seen *atomic.Int64) (*serverClient, *refusal) {
	id, refused, err := s.handshake(ctx, conn)
	if err != nil {
		cause := junkHandshake
		if errors.Is(err, sealed.ErrAuth) {
			cause = junkAuth
		}
		s.note(cause, "remote", remote, "err", err)
		return nil, refused
	}
	c := &serverClient{id: id, ip: ip, conn: conn, watches: map[identity.PublicKey]struct{}{}, cancel: cancel,
		topics: map[string]struct{}{}, announces: newAnnounceLimiter(s.cfg), refusals: rate.NewLimiter(refusalsPerSecond, refusalBurst),
		strangers: rate.NewLimiter(strangerSendsPerSecond, strangerSendBurst),
		seen:      seen, iceAt: time.Now(), ice: func() []signalwire.ICEServer { return s.iceServers(host, id) },
		worker: s.nextWorker.Add(1) % uint32(len(s.work))}
	// "registered" must be the first frame the client sees: once register
	// makes c visible, other peers' messages may be queued for it.
	s.enqueue(c, signalwire.Encode(signalwire.Frame{Type: signalwire.TypeRegistered, ICEServers: c.ice()}))
	if !s.register(c) {
		s.finish(c)
		return nil, nil
	}
	s.log.Debug("peer registered", "peer", id.Short(), "remote", remote)
	return c, nil
}

// hold reads c's frames until the connection ends, then unregisters c and
// closes the connection.
func (s *Server) hold(ctx context.Context, cancel context.CancelCauseFunc, c *serverClient) {
	defer s.wg.Done()
	defer s.release(c.ip)
	defer c.conn.CloseNow()
	defer cancel(nil)
	err := s.readLoop(ctx, c)
	if ctx.Err() != nil {
		err = context.Cause(ctx) // the server ended it: replaced, slow, silent, shutdown
	}
	s.unregister(c, err)
}

// startHandshake takes a registration token (MaxHandshakes), waiting up
// to HandshakeWait for one.
func (s *Server) startHandshake(ctx context.Context) bool {
	select {
	case s.handshakes <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(s.cfg.HandshakeWait)
	defer t.Stop()
	select {
	case s.handshakes <- struct{}{}:
		return true
	case <-t.C:
	case <-ctx.Done():
	case <-s.ctx.Done():
	}
	return false
}

func (s *Server) endHandshake() { <-s.handshakes }

// handshake runs the challenge-response; see internal/sealed/auth.go.
func (s *Server) handshake(ctx context.Context, conn *wsConn) (identity.PublicKey, *refusal, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RegisterTimeout)
	defer cancel()
	ch, err := sealed.NewChallenge()
	if err != nil {
		conn.CloseNow()
		return identity.PublicKey{}, nil, err
	}
	if err := conn.Write(ctx, websocket.MessageText, signalwire.Encode(signalwire.Frame{Type: signalwire.TypeChallenge, ServerKey: ch.ServerKey(), Nonce: ch.Nonce()})); err != nil {
		return identity.PublicKey{}, nil, err
	}
	_, b, err := conn.Read(ctx)
	if err != nil {
		return identity.PublicKey{}, nil, err
	}
	f, err := signalwire.Decode(b)
	if err == nil && f.Type != signalwire.TypeRegister {
		err = errors.New("expected a register frame")
	}
	if err != nil {
		code := signalwire.CodeBadFrame
		if errors.Is(err, signalwire.ErrVersion) {
			code = signalwire.CodeVersion
		}
		return identity.PublicKey{}, &refusal{code, err.Error()}, err
	}
	id, err := identity.ParseID(f.ID)
	if err != nil {
		return identity.PublicKey{}, &refusal{signalwire.CodeAuth, err.Error()}, err
	}
	if err := ch.Verify(id, f.Proof); err != nil {
		return identity.PublicKey{}, &refusal{signalwire.CodeAuth, err.Error()}, err
	}
	return id, nil, nil
}

func (s *Server) register(c *serverClient) bool {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	old := s.clients[c.id]
	s.clients[c.id] = c
	s.mu.Unlock()
	// c watches nobody yet, so nobody may hear of it: presence follows
	// its watch frame (see watch).
	if old != nil {
		// The newest registration wins: a restarted daemon must not wait
		// for its dead connection to time out.
		s.enqueue(old, signalwire.Encode(signalwire.Frame{Type: signalwire.TypeError, Code: signalwire.CodeReplaced, Message: "this ID registered again from another connection"}))
		old.cancel(errReplaced)
	}
	return true
}

// unregister removes c; why is what ended its connection (for the debug
// log: a read error is the client's side, a cancel the server's).
func (s *Server) unregister(c *serverClient, why error) {
	s.mu.Lock()
	var peers []*serverClient
	if s.clients[c.id] == c {
		peers = s.talkPeersLocked(c)
		delete(s.clients, c.id)
	}
	clear(c.watches)
	s.leaveTopicsLocked(c)
	s.mu.Unlock()
	s.notify(peers, c.id, false)
	s.finish(c)
	s.log.Debug("peer left", "peer", c.id.Short(), "why", why)
}

// mayTalk is the one place that decides whether two registered peers may
// learn of each other's presence and exchange messages: each named the
// other in its watch list, or both joined one group topic (members of a
// network, who learn each other's keys from announcements; a topic id is
// derived from the network's secret). A stranger who knows an ID learns
// nothing and can send it nothing. Callers hold s.mu.
func (s *Server) mayTalk(a, b *serverClient) bool {
	if a == b || s.clients[a.id] != a || s.clients[b.id] != b {
		return false
	}
	_, ab := a.watches[b.id]
	_, ba := b.watches[a.id]
	return ab && ba || shareTopic(a, b)
}

// talkPeersLocked lists the registered peers c may talk to.
func (s *Server) talkPeersLocked(c *serverClient) []*serverClient {
	var out []*serverClient
	for k := range c.watches {
		if d := s.clients[k]; d != nil && s.mayTalk(c, d) {
			out = append(out, d)
		}
	}
	return out
}

func (s *Server) notify(peers []*serverClient, id identity.PublicKey, online bool) {
	if len(peers) == 0 {
		return
	}
	b := signalwire.Encode(signalwire.Frame{Type: signalwire.TypePresence, ID: id.String(), Online: online})
	for _, p := range peers {
		s.enqueue(p, b)
	}
}

// enqueue never blocks the caller: a client that does not read its frames
// loses them once its share of the queue budget is used (the sender is
// told, and its retries carry on), the sender is unaffected.
func (s *Server) enqueue(c *serverClient, b []byte) bool {
	n := len(b)
	c.qmu.Lock()
	if c.done || len(c.queue) >= s.cfg.QueuePerPeer || c.qbytes+n > s.cfg.QueueBytesPerPeer || !s.take(c.ip, n) {
		c.qmu.Unlock()
		s.dropped.Add(1)
		return false
	}
	c.queue = append(c.queue, b)
	c.qbytes += n
	start := !c.writing
	c.writing = true
	if start {
		// c is not done, so its serveConn has not returned: the
		// WaitGroup is above zero and Close has not finished waiting.
		s.wg.Add(1)
	}
	c.qmu.Unlock()
	if start {
		go s.writer(c)
	}
	return true
}

// writer sends c's queue until it is empty, then ends; a write that takes
// longer than WriteTimeout (a client that stopped reading, or vanished)
// ends the connection.
func (s *Server) writer(c *serverClient) {
	defer s.wg.Done()
	for {
		c.qmu.Lock()
		if len(c.queue) == 0 || c.done {
			c.writing = false
			s.dropQueueLocked(c)
			c.qmu.Unlock()
			return
		}
		// Everything queued goes in one batch (one write, see
		// batchWriter): a burst of presence or trickled candidates
		// costs one system call.
		batch := c.queue
		c.queue = nil
		c.qmu.Unlock()

		err := s.writeBatch(c, batch)
		n := 0
		for _, b := range batch {
			n += len(b)
		}
		clear(batch)
		c.qmu.Lock()
		c.qbytes -= n
		s.give(c.ip, n)
		if err != nil {
			c.done = true
		}
		c.qmu.Unlock()
		if err != nil {
			// A connection closed under the write (the client left, or
			// the server ended it) is not a slow reader.
			if !errors.Is(err, context.Canceled) && !errors.Is(err, net.ErrClosed) {
				s.note(junkSlowReader, "peer", c.id.Short(), "err", err)
			}
			c.cancel(fmt.Errorf("closed: a write did not finish within %s: %w", s.cfg.WriteTimeout, err))
		}
	}
}

// writeBatch writes frames to c within WriteTimeout.
func (s *Server) writeBatch(c *serverClient, frames [][]byte) error {
	if c.conn.batch == nil { // not hijacked through smallBuffers
		for _, b := range frames {
			ctx, cancel := context.WithTimeout(s.ctx, s.cfg.WriteTimeout)
			err := c.conn.Write(ctx, websocket.MessageText, b)
			cancel()
			if err != nil {
				return err
			}
			s.framesOut.Add(1)
		}
		return nil
	}
	c.conn.batch.begin(s.cfg.WriteTimeout)
	for _, b := range frames {
		// The library only copies into the batch here: no context,
		// no timer; the socket write deadline bounds the batch.
		if err := c.conn.Write(context.Background(), websocket.MessageText, b); err != nil {
			c.conn.batch.end()
			return err
		}
	}
	if err := c.conn.batch.end(); err != nil {
		return err
	}
	s.framesOut.Add(uint64(len(frames)))
	return nil
}

// finish marks c's connection over and frees its queue (the writer, if
// one runs, frees what it holds when its write returns).
func (s *Server) finish(c *serverClient) {
	c.qmu.Lock()
	c.done = true
	if !c.writing {
		s.dropQueueLocked(c)
	}
	c.qmu.Unlock()
}

func (s *Server) dropQueueLocked(c *serverClient) {
	for _, b := range c.queue {
		c.qbytes -= len(b)
		s.give(c.ip, len(b))
	}
	c.queue = nil
}

// take reserves n queue bytes for a client at ip, within the per-address
// and global budgets.
func (s *Server) take(ip netip.Addr, n int) bool {
	s.ipmu.Lock()
	defer s.ipmu.Unlock()
	st := s.perIP[ip]
	if st == nil || st.queued+n > s.cfg.QueueBytesPerIP || s.queued+n > s.cfg.QueueBytesTotal {
		return false
	}
	st.queued += n
	s.queued += n
	return true
}

func (s *Server) give(ip netip.Addr, n int) {
	s.ipmu.Lock()
	defer s.ipmu.Unlock()
	s.queued -= n
	if st := s.perIP[ip]; st != nil {
		st.queued -= n
		s.forgetLocked(ip, st)
	}
}

// admit counts a WebSocket connection from ip against its cap and, when
// it fits, against the WaitGroup Close waits for.
func (s *Server) admit(ip netip.Addr) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.ipmu.Lock()
	defer s.ipmu.Unlock()
	st := s.perIP[ip]
	if st == nil {
		st = &ipState{}
		s.perIP[ip] = st
	}
	if st.conns >= s.cfg.MaxPeersPerIP {
		s.forgetLocked(ip, st)
		return false
	}
	st.conns++
	s.admits.Add(1)
	s.wg.Add(1)
	return true
}

func (s *Server) release(ip netip.Addr) {
	s.ipmu.Lock()
	defer s.ipmu.Unlock()
	if st := s.perIP[ip]; st != nil {
		st.conns--
		s.forgetLocked(ip, st)
	}
}

func (s *Server) forgetLocked(ip netip.Addr, st *ipState) {
	if st.conns <= 0 && st.queued <= 0 {
		delete(s.perIP, ip)
	}
}

// readLoop reads c's frames until its connection ends, and returns why.
func (s *Server) readLoop(ctx context.Context, c *serverClient) error {
	limit := rate.NewLimiter(rate.Limit(s.cfg.FramesPerSecond), 2*s.cfg.FramesPerSecond)
	limited := false
	// A client that keeps sending over twice the limit (its drops exceed
	// the limit again, past a burst of 4 s worth) is closed: reading and
	// dropping its frames costs more than its reconnecting does.
	drops := rate.NewLimiter(rate.Limit(s.cfg.FramesPerSecond), 4*s.cfg.FramesPerSecond)
	// Reads take no context: a context per read costs the library a
	// timer callback each. The connection is closed when ctx ends
	// instead, which ends a read under way.
	stop := context.AfterFunc(ctx, func() { c.conn.CloseNow() })
	defer stop()
	fail := func(err error) error {
		if websocket.CloseStatus(err) == websocket.StatusMessageTooBig {
			s.note(junkOversized, "peer", c.id.Short())
		}
		return err
	}
	for {
		_, r, err := c.conn.Reader(context.Background())
		if err != nil {
			return fail(err)
		}
		c.seen.Store(time.Now().UnixNano())
		s.framesIn.Add(1)
		if !limit.Allow() {
			// Dropped unread: io.Discard reads through a pooled
			// buffer, so a flood over the limit allocates nothing.
			if _, err := io.Copy(io.Discard, r); err != nil {
				return fail(err)
			}
			s.dropped.Add(1)
			s.note(junkRateLimited, "peer", c.id.Short())
			if !drops.Allow() {
				s.note(junkFlooder, "peer", c.id.Short())
				s.closeWithError(ctx, c.conn, signalwire.CodeRateLimited, "more than twice "+strconv.Itoa(s.cfg.FramesPerSecond)+" frames per second for seconds; closing")
				return errFlooder
			}
			if !limited { // one error frame per burst, not one per signalwire.Frame
				limited = true
				s.enqueue(c, signalwire.Encode(signalwire.Frame{Type: signalwire.TypeError, Code: signalwire.CodeRateLimited, Message: "more than " + strconv.Itoa(s.cfg.FramesPerSecond) + " frames per second; frames dropped"}))
			}
			continue
		}
		limited = false
		buf := frameBufs.Get().(*bytes.Buffer)
		if _, err := buf.ReadFrom(r); err != nil {
			putFrameBuf(buf)
			return fail(err)
		}
		select {
		case s.work[c.worker] <- frameJob{c: c, buf: buf}:
		case <-ctx.Done():
			putFrameBuf(buf)
			return ctx.Err()
		}
	}
}

// frameBufs hold frames from the read to the end of their handling (the
// frame is decoded into fresh values, nothing keeps the buffer), so a
// frame costs no allocation for its bytes.
var frameBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func putFrameBuf(b *bytes.Buffer) {
	if b.Cap() > 128<<10 {
		return // a rare large frame: let it go
	}
	b.Reset()
	frameBufs.Put(b)
}

var (
	errFlooder      = errors.New("closed: far over the frame rate limit")
	errReplaced     = errors.New("closed: the ID registered again from another connection")
	errStrangerSpam = errors.New("closed: kept sending to IDs it does not watch")
)

// A client is told why a frame was refused (not watched, peer offline,
// bad frame...) at most refusalsPerSecond times a second, after a burst
// of refusalBurst; further refusals are counted, not answered. A daemon
// sees a few; a client sending to strangers as fast as it can would
// otherwise have the server encode and write an error frame for each.
const (
	refusalsPerSecond = 10
	refusalBurst      = 20
)

// A client may send to IDs it does not watch strangerSendsPerSecond
// times a second after a burst of strangerSendBurst; past that it is
// closed.
const (
	strangerSendsPerSecond = 1
	strangerSendBurst      = 20
)

// refuse answers a refused frame of c's with the error frame f, within
// c's refusal budget.
func (s *Server) refuse(c *serverClient, f signalwire.Frame) {
	if c.refusals != nil && !c.refusals.Allow() {
		s.unanswered.Add(1)
		return
	}
	s.enqueue(c, signalwire.Encode(f))
}

// frameJob is one frame for a frame worker. A client's frames all go to
// one worker, so they are handled in the order they came.
type frameJob struct {
	c   *serverClient
	buf *bytes.Buffer // from frameBufs; the worker puts it back
}

// frameWorkers decode and route frames for all clients.
func (s *Server) frameWorker(ctx context.Context, jobs <-chan frameJob) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-jobs:
			s.handleFrame(j.c, j.buf.Bytes())
			putFrameBuf(j.buf)
		}
	}
}

func (s *Server) handleFrame(c *serverClient, b []byte) {
	f, err := signalwire.Decode(b)
	if err != nil {
		s.note(junkBadFrame, "peer", c.id.Short(), "err", err)
		s.refuse(c, signalwire.Frame{Type: signalwire.TypeError, Code: signalwire.CodeBadFrame, Message: err.Error()})
		return
	}
	switch f.Type {
	case signalwire.TypeWatch:
		s.watch(c, f.IDs)
	case signalwire.TypeSend:
		s.forward(c, f)
	case signalwire.TypeJoin:
		s.join(c, f.Topics)
	case signalwire.TypeAnnounce:
		s.announce(c, f)
	default:
		s.note(junkBadFrame, "peer", c.id.Short(), "type", f.Type)
		s.refuse(c, signalwire.Frame{Type: signalwire.TypeError, Code: signalwire.CodeBadFrame, Message: "unexpected " + f.Type + " frame"})
	}
}

// watch replaces the client's watch list and answers with the presence of
// each watched peer: online only when the two may talk (see mayTalk), so
// a watch of a stranger always says offline. Peers that may talk to c
// now, and could not before, hear that c is online (and the reverse).
func (s *Server) watch(c *serverClient, ids []string) {
	var keys []identity.PublicKey
	for _, id := range ids {
		k, err := identity.ParseID(id)
		if err != nil {
			s.refuse(c, signalwire.Frame{Type: signalwire.TypeError, Code: signalwire.CodeBadFrame, Message: "watch: " + err.Error()})
			continue
		}
		keys = append(keys, k)
	}
	s.mu.Lock()
	if s.clients[c.id] != c {
		// A frame worker got this after c left (or was replaced): no
		// one may hear of it any more.
		s.mu.Unlock()
		return
	}
	before := s.talkPeersLocked(c)
	clear(c.watches)
	for _, k := range keys {
		c.watches[k] = struct{}{}
	}
	after := s.talkPeersLocked(c)
	s.mu.Unlock()

	talk := make(map[identity.PublicKey]bool, len(after))
	for _, p := range after {
		talk[p.id] = true
	}
	for _, k := range keys {
		s.enqueue(c, signalwire.Encode(signalwire.Frame{Type: signalwire.TypePresence, ID: k.String(), Online: talk[k]}))
	}
	var gone, came []*serverClient
	was := make(map[*serverClient]bool, len(before))
	for _, p := range before {
		was[p] = true
		if !talk[p.id] {
			gone = append(gone, p)
		}
	}
	for _, p := range after {
		if !was[p] {
			came = append(came, p)
		}
	}
	s.notify(gone, c.id, false)
	s.notify(came, c.id, true)
}

func (s *Server) forward(c *serverClient, f signalwire.Frame) {
	to, err := identity.ParseID(f.To)
	if err != nil {
		s.refuse(c, signalwire.Frame{Type: signalwire.TypeError, Code: signalwire.CodeBadFrame, Message: "send: " + err.Error()})
		return
	}
	s.mu.Lock()
	_, named := c.watches[to]
	dst := s.clients[to]
	ok := dst != nil && s.mayTalk(c, dst)
	s.mu.Unlock()
	switch {
	case !named:
		s.note(junkStranger, "peer", c.id.Short())
		if c.strangers != nil && !c.strangers.Allow() {
			// Past a burst, a client that keeps sending to IDs it does
			// not watch is closed: a daemon sends only to its peers,
			// and reading and refusing a spammer's frames costs more
			// than its reconnecting (with backoff) does.
			s.note(junkFlooder, "peer", c.id.Short())
			s.enqueue(c, signalwire.Encode(signalwire.Frame{Type: signalwire.TypeError, Code: signalwire.CodeNotWatched, To: f.To, Message: "too many sends to IDs you do not watch; closing"}))
			c.cancel(errStrangerSpam)
			return
		}
		s.refuse(c, signalwire.Frame{Type: signalwire.TypeError, Code: signalwire.CodeNotWatched, To: f.To, Message: "send to an ID you do not watch: put it in your watch list (--peer) first"})
	case !ok:
		// Offline and "has not named you" look the same: a stranger
		// must not learn whether an ID is online.
		s.refuse(c, signalwire.Frame{Type: signalwire.TypeError, Code: signalwire.CodePeerOffline, To: f.To, Message: "peer is not connected (or has not named you)"})
	case !s.enqueue(dst, signalwire.Encode(signalwire.Frame{Type: signalwire.TypeRecv, From: c.id.String(), Payload: f.Payload})):
		s.note(junkQueueFull, "peer", dst.id.Short())
		s.refuse(c, signalwire.Frame{Type: signalwire.TypeError, Code: signalwire.CodePeerBusy, To: f.To, Message: "the peer is not reading its messages fast enough; message dropped"})
	}
}

// sweep pings clients the server has not heard from for PingInterval
// and refreshes TURN credentials at half-life: one goroutine and one
// timer for all clients. The pings leave from short-lived goroutines (at
// most maxProbes at once), so the goroutine that holds an idle client
// only ever reads: answering a client's pings would have it write, and
// its stack would grow to twice the size.
func (s *Server) sweep(ctx context.Context) {
	every := s.cfg.PingInterval / 4
	t := time.NewTicker(every)
	defer t.Stop()
	probes := make(chan struct{}, maxProbes)
	var list []*serverClient
	var lastAdmits uint64
	busy := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		list = list[:0]
		for _, c := range s.clients {
			list = append(list, c)
		}
		s.mu.Unlock()
		// When a burst of connections (a storm of peers, a flood of bad
		// clients) has passed, give its memory back now: a quiet server
		// would not collect for minutes, and its RSS would stay at the
		// burst's peak.
		admits := s.admits.Load()
		switch n := admits - lastAdmits; {
		case n >= burstAdmits:
			busy = true
		case busy && n < burstAdmits/10:
			busy = false
			debug.FreeOSMemory()
		}
		lastAdmits = admits
		now := time.Now()
		for _, c := range list {
			s.check(c, now, probes)
			if s.cfg.TURN != nil && now.Sub(c.iceAt) > s.cfg.TURN.TTL/2 {
				c.iceAt = now
				s.enqueue(c, signalwire.Encode(signalwire.Frame{Type: signalwire.TypeRegistered, ICEServers: c.ice()}))
			}
		}
		clear(list)
	}
}

// burstAdmits connections in one sweep interval are a burst.
const burstAdmits = 1000

// maxProbes bounds the pings being sent at once.
const maxProbes = 512

// probeWait is how long a ping's goroutine waits for the pong. A later
// pong still counts (it sets seen); the goroutine only goes, so that
// pings in flight stay few even when pongs are slow.
const probeWait = 2 * time.Second

// check pings c when it has been silent for PingInterval, and closes it
// when it has not answered within pongTimeout of the ping, unless its
// answer is waiting in its socket unread: a server slowed down by a storm
// of new connections must not drop healthy peers whose pong it reads
// late, but a peer that went away (nothing arrives from it) is closed.
func (s *Server) check(c *serverClient, now time.Time, probes chan struct{}) {
	seen, pinged := time.Unix(0, c.seen.Load()), time.Unix(0, c.pingedAt.Load())
	unread := func() int { return unreadBytes(c.conn.raw) }
	switch liveness(seen, pinged, c.pingedAt.Load() != 0, now, s.cfg.PingInterval, s.pongTimeout(), unread) {
	case pongSeen:
		c.pingedAt.Store(0)
		return
	case pongPending:
		return
	case serverBehind:
		s.behind.Add(1)
		return
	case peerDead:
		silent := now.Sub(seen).Round(time.Second)
		s.note(junkSilent, "peer", c.id.Short(), "silent_for", silent)
		c.cancel(fmt.Errorf("closed: silent for %s and no answer to a ping within %s", silent, s.pongTimeout()))
		return
	case heardRecently:
		return
	}
	if c.probing.Load() {
		return
	}
	select {
	case probes <- struct{}{}:
		c.probing.Store(true)
		c.pingedAt.Store(now.UnixNano())
		s.probe(c, probes)
	default: // enough under way; the next sweep gets to it
	}
}

// verdict is what the sweeper makes of a client's silence.
type verdict int

const (
	heardRecently verdict = iota // heard from within PingInterval: nothing to do
	pingDue                      // silent for PingInterval: ping it
	pongPending                  // pinged, the answer is not due yet
	pongSeen                     // pinged, and heard from since
	serverBehind                 // pinged, no answer read in time, but bytes from it wait unread: keep it
	peerDead                     // pinged, no answer in time and nothing from it: close it
)

func (v verdict) String() string {
	switch v {
	case heardRecently:
		return "heard-recently"
	case pingDue:
		return "ping-due"
	case pongPending:
		return "pong-pending"
	case pongSeen:
		return "pong-seen"
	case serverBehind:
		return "server-behind"
	case peerDead:
		return "peer-dead"
	}
	return "verdict(" + strconv.Itoa(int(v)) + ")"
}

// liveness decides on a client last heard from at seen, pinged (when
// pingOut) at pinged. unread (asked only when it matters) is how many
// bytes from the client wait in its socket, -1 when unknown: a pong that
// the server, busy with a storm, has not read yet is an answer.
func liveness(seen, pinged time.Time, pingOut bool, now time.Time, interval, timeout time.Duration, unread func() int) verdict {
	switch {
	case pingOut && !seen.Before(pinged):
		return pongSeen
	case pingOut && now.Sub(pinged) < timeout:
		return pongPending
	case pingOut && unread() > 0:
		return serverBehind
	case pingOut:
		return peerDead
	case now.Sub(seen) >= interval:
		return pingDue
	}
	return heardRecently
}

// pongTimeout is how long after a ping a silent client is closed:
// WriteTimeout or PingInterval, whichever is longer.
func (s *Server) pongTimeout() time.Duration { return max(s.cfg.WriteTimeout, s.cfg.PingInterval) }

// probe pings c from a short-lived goroutine (so that the goroutine that
// holds an idle client only ever reads); check decides on the answer.
func (s *Server) probe(c *serverClient, probes chan struct{}) {
	c.qmu.Lock()
	if c.done {
		c.qmu.Unlock()
		c.probing.Store(false)
		<-probes
		return
	}
	s.wg.Add(1) // c not done: its hold goroutine still holds the WaitGroup
	c.qmu.Unlock()
	go func() {
		defer s.wg.Done()
		defer func() { <-probes }()
		defer c.probing.Store(false)
		ctx, cancel := context.WithTimeout(s.ctx, probeWait)
		// A ping that cannot be written ends the connection (the library
		// closes it, and the reader goes); a pong later than probeWait
		// still counts, through seen.
		_ = c.conn.Ping(ctx)
		cancel()
	}()
}

// addrKey is the unit the per-address caps count: an IPv4 address, or
// the /64 of an IPv6 address (iplimit.Key).
func addrKey(remote string) netip.Addr {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return netip.Addr{}
	}
	return iplimit.Key(ap.Addr())
}

// iceServers tells a client where STUN and TURN are: the same host it
// reached us at, with TURN credentials made for its ID.
func (s *Server) iceServers(reqHost string, id identity.PublicKey) []signalwire.ICEServer {
	var out []signalwire.ICEServer
	for _, u := range s.cfg.ICEServers {
		out = append(out, signalwire.ICEServer{URL: u})
	}
	host := reqHost
	if h, _, err := net.SplitHostPort(reqHost); err == nil {
		host = h
	}
	if host == "" || len(s.cfg.ICEServers) > 0 {
		return out
	}
	hosts := []string{host}
	if ip, err := netip.ParseAddr(host); err == nil {
		switch ip = ip.Unmap(); {
		case ip.Is4() && s.cfg.Addr6.IsValid():
			hosts = append(hosts, s.cfg.Addr6.String())
		case ip.Is6() && s.cfg.Addr4.IsValid():
			hosts = append(hosts, s.cfg.Addr4.String())
		}
	}
	hp := func(h string, port int) string { return net.JoinHostPort(h, strconv.Itoa(port)) }
	if s.cfg.STUNPort > 0 {
		for _, h := range hosts {
			out = append(out, signalwire.ICEServer{URL: "stun:" + hp(h, s.cfg.STUNPort)})
		}
	}
	if t := s.cfg.TURN; t != nil {
		// coturn's REST format (username "expiry:id", password
		// base64(HMAC-SHA1(secret, username))): punchd's own relay and
		// coturn with use-auth-secret both accept it until expiry.
		user, pass, err := turn.GenerateLongTermTURNRESTCredentials(t.Secret, id.String(), t.TTL)
		if err != nil {
			s.log.Error("make TURN credentials", "err", err)
			return out
		}
		add := func(port int, url string) {
			if port > 0 {
				out = append(out, signalwire.ICEServer{URL: url, Username: user, Credential: pass})
			}
		}
		for _, h := range hosts {
			add(t.UDPPort, "turn:"+hp(h, t.UDPPort)+"?transport=udp")
		}
		for _, h := range hosts {
			add(t.TCPPort, "turn:"+hp(h, t.TCPPort)+"?transport=tcp")
		}
		// TLS on the name the client dialed only: the certificate is
		// for that.
		add(t.TLSPort, "turns:"+hp(host, t.TLSPort)+"?transport=tcp")
	}
	return out
}
