package rendezvous

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/turn/v5"
	"golang.org/x/time/rate"

	"github.com/punchd/punchd/internal/identity"
)

// ServerConfig configures the signaling server. Zero limits get defaults.
type ServerConfig struct {
	Logger *slog.Logger
	// STUNPort, when > 0, is announced to clients as
	// stun:<the host they dialed>:<port>.
	STUNPort int
	// ICEServers, when set, is announced instead.
	ICEServers []string
	// TURN, when set, is announced with per-peer credentials.
	TURN *TURNConfig

	MaxFrameBytes   int // default 64 KiB
	QueuePerPeer    int // frames waiting for a slow client; default 256
	MaxPeersPerIP   int // default 64
	FramesPerSecond int // per connection, sustained; default 100 (burst 2x)
	// RegisterTimeout bounds the handshake; default 10 s.
	RegisterTimeout time.Duration
	// PingInterval finds dead connections; default 15 s.
	PingInterval time.Duration
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
	if c.MaxFrameBytes <= 0 {
		c.MaxFrameBytes = 64 << 10
	}
	if c.QueuePerPeer <= 0 {
		c.QueuePerPeer = 256
	}
	if c.MaxPeersPerIP <= 0 {
		c.MaxPeersPerIP = 64
	}
	if c.FramesPerSecond <= 0 {
		c.FramesPerSecond = 100
	}
	if c.RegisterTimeout <= 0 {
		c.RegisterTimeout = 10 * time.Second
	}
	if c.PingInterval <= 0 {
		c.PingInterval = 15 * time.Second
	}
	if c.TURN != nil && c.TURN.TTL <= 0 {
		c.TURN.TTL = 12 * time.Hour
	}
}

// Server routes sealed messages between registered peers.
type Server struct {
	cfg ServerConfig
	log *slog.Logger

	mu       sync.Mutex
	clients  map[identity.PublicKey]*serverClient
	watchers map[identity.PublicKey]map[*serverClient]struct{}
	perIP    map[string]int
	closed   bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	dropped atomic.Uint64 // frames dropped for slow clients
}

type serverClient struct {
	id      identity.PublicKey
	conn    *websocket.Conn
	out     chan []byte
	watches map[identity.PublicKey]struct{}
	cancel  context.CancelFunc
	ice     func() []ICEServer // this client's ICE servers, fresh credentials each call
}

// NewServer returns a server; mount Handler on an HTTP server.
func NewServer(cfg ServerConfig) *Server {
	cfg.defaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		cfg:      cfg,
		log:      cfg.Logger,
		clients:  make(map[identity.PublicKey]*serverClient),
		watchers: make(map[identity.PublicKey]map[*serverClient]struct{}),
		perIP:    make(map[string]int),
		ctx:      ctx,
		cancel:   cancel,
	}
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
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}

// Online reports how many peers are registered.
func (s *Server) Online() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.clients)
}

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	ip := remoteIP(r)
	if !s.admitIP(ip) {
		http.Error(w, "too many connections from your address", http.StatusTooManyRequests)
		return
	}
	defer s.releaseIP(ip)
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		s.log.Debug("websocket accept", "remote", r.RemoteAddr, "err", err)
		return
	}
	conn.SetReadLimit(int64(s.cfg.MaxFrameBytes))
	s.wg.Add(1)
	defer s.wg.Done()
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()

	id, err := s.handshake(ctx, conn)
	if err != nil {
		s.log.Debug("registration failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	c := &serverClient{id: id, conn: conn, out: make(chan []byte, s.cfg.QueuePerPeer), watches: map[identity.PublicKey]struct{}{}, cancel: cancel,
		ice: func() []ICEServer { return s.iceServers(r, id) }}
	// "registered" must be the first frame the client sees: once register
	// makes c visible, other peers' messages may be queued for it.
	c.enqueue(s, encodeFrame(frame{Type: typeRegistered, ICEServers: c.ice()}))
	if !s.register(c) {
		conn.Close(websocket.StatusGoingAway, "server shutting down")
		return
	}
	defer s.unregister(c)
	s.log.Info("peer registered", "peer", id.Short(), "remote", r.RemoteAddr)

	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.writeLoop(ctx, c)
	}()
	s.readLoop(ctx, c)
}

// handshake runs the challenge-response; see auth.go.
func (s *Server) handshake(ctx context.Context, conn *websocket.Conn) (identity.PublicKey, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RegisterTimeout)
	defer cancel()
	ch, err := newChallenge()
	if err != nil {
		conn.Close(websocket.StatusInternalError, "")
		return identity.PublicKey{}, err
	}
	if err := conn.Write(ctx, websocket.MessageText, encodeFrame(frame{Type: typeChallenge, ServerKey: ch.key.Public, Nonce: ch.nonce[:]})); err != nil {
		return identity.PublicKey{}, err
	}
	_, b, err := conn.Read(ctx)
	if err != nil {
		return identity.PublicKey{}, err
	}
	f, err := decodeFrame(b)
	if err == nil && f.Type != typeRegister {
		err = errors.New("expected a register frame")
	}
	if err != nil {
		code := codeBadFrame
		if errors.Is(err, errVersion) {
			code = codeVersion
		}
		s.closeWithError(ctx, conn, code, err.Error())
		return identity.PublicKey{}, err
	}
	id, err := identity.ParseID(f.ID)
	if err != nil {
		s.closeWithError(ctx, conn, codeAuth, err.Error())
		return identity.PublicKey{}, err
	}
	if err := ch.verify(id, f.Proof); err != nil {
		s.closeWithError(ctx, conn, codeAuth, err.Error())
		return identity.PublicKey{}, err
	}
	return id, nil
}

func (s *Server) closeWithError(ctx context.Context, conn *websocket.Conn, code, msg string) {
	_ = conn.Write(ctx, websocket.MessageText, encodeFrame(frame{Type: typeError, Code: code, Message: msg}))
	conn.Close(websocket.StatusPolicyViolation, code)
}

func (s *Server) register(c *serverClient) bool {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	old := s.clients[c.id]
	s.clients[c.id] = c
	watchers := s.watcherList(c.id)
	s.mu.Unlock()
	if old != nil {
		// The newest registration wins: a restarted daemon must not wait
		// for its dead connection to time out.
		old.enqueue(s, encodeFrame(frame{Type: typeError, Code: codeReplaced, Message: "this ID registered again from another connection"}))
		old.cancel()
	}
	s.notify(watchers, c.id, true)
	return true
}

func (s *Server) unregister(c *serverClient) {
	s.mu.Lock()
	for w := range c.watches {
		s.unwatchLocked(c, w)
	}
	var watchers []*serverClient
	if s.clients[c.id] == c {
		delete(s.clients, c.id)
		watchers = s.watcherList(c.id)
	}
	s.mu.Unlock()
	s.notify(watchers, c.id, false)
	s.log.Info("peer left", "peer", c.id.Short())
}

func (s *Server) watcherList(id identity.PublicKey) []*serverClient {
	var out []*serverClient
	for w := range s.watchers[id] {
		out = append(out, w)
	}
	return out
}

func (s *Server) notify(watchers []*serverClient, id identity.PublicKey, online bool) {
	b := encodeFrame(frame{Type: typePresence, ID: id.String(), Online: online})
	for _, w := range watchers {
		w.enqueue(s, b)
	}
}

func (s *Server) unwatchLocked(c *serverClient, id identity.PublicKey) {
	if m := s.watchers[id]; m != nil {
		delete(m, c)
		if len(m) == 0 {
			delete(s.watchers, id)
		}
	}
	delete(c.watches, id)
}

// enqueue never blocks the caller: a client that does not read its frames
// loses them (and is told by the peer's retries), the sender is unaffected.
func (c *serverClient) enqueue(s *Server, b []byte) {
	select {
	case c.out <- b:
	default:
		s.dropped.Add(1)
	}
}

func (s *Server) writeLoop(ctx context.Context, c *serverClient) {
	ping := time.NewTicker(s.cfg.PingInterval)
	defer ping.Stop()
	var refresh <-chan time.Time
	if s.cfg.TURN != nil {
		t := time.NewTicker(s.cfg.TURN.TTL / 2)
		defer t.Stop()
		refresh = t.C
	}
	for {
		select {
		case <-refresh:
			c.enqueue(s, encodeFrame(frame{Type: typeRegistered, ICEServers: c.ice()}))
		case <-ctx.Done():
			c.conn.Close(websocket.StatusGoingAway, "")
			return
		case b := <-c.out:
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := c.conn.Write(wctx, websocket.MessageText, b)
			cancel()
			if err != nil {
				c.cancel()
				return
			}
		case <-ping.C:
			pctx, cancel := context.WithTimeout(ctx, s.cfg.PingInterval)
			err := c.conn.Ping(pctx)
			cancel()
			if err != nil {
				s.log.Debug("peer ping failed", "peer", c.id.Short(), "err", err)
				c.cancel()
				return
			}
		}
	}
}

func (s *Server) readLoop(ctx context.Context, c *serverClient) {
	limit := rate.NewLimiter(rate.Limit(s.cfg.FramesPerSecond), 2*s.cfg.FramesPerSecond)
	for {
		_, b, err := c.conn.Read(ctx)
		if err != nil {
			if websocket.CloseStatus(err) == websocket.StatusMessageTooBig {
				s.log.Info("peer sent an oversized frame", "peer", c.id.Short())
			}
			return
		}
		if !limit.Allow() {
			c.enqueue(s, encodeFrame(frame{Type: typeError, Code: codeRateLimited, Message: "more than " + strconv.Itoa(s.cfg.FramesPerSecond) + " frames per second; frame dropped"}))
			continue
		}
		f, err := decodeFrame(b)
		if err != nil {
			c.enqueue(s, encodeFrame(frame{Type: typeError, Code: codeBadFrame, Message: err.Error()}))
			continue
		}
		switch f.Type {
		case typeWatch:
			s.watch(c, f.IDs)
		case typeSend:
			s.forward(c, f)
		default:
			c.enqueue(s, encodeFrame(frame{Type: typeError, Code: codeBadFrame, Message: "unexpected " + f.Type + " frame"}))
		}
	}
}

// watch replaces the client's watch list and answers with the current
// presence of each watched peer.
func (s *Server) watch(c *serverClient, ids []string) {
	var keys []identity.PublicKey
	for _, id := range ids {
		k, err := identity.ParseID(id)
		if err != nil {
			c.enqueue(s, encodeFrame(frame{Type: typeError, Code: codeBadFrame, Message: "watch: " + err.Error()}))
			continue
		}
		keys = append(keys, k)
	}
	s.mu.Lock()
	for w := range c.watches {
		s.unwatchLocked(c, w)
	}
	online := make([]bool, len(keys))
	for i, k := range keys {
		c.watches[k] = struct{}{}
		if s.watchers[k] == nil {
			s.watchers[k] = make(map[*serverClient]struct{})
		}
		s.watchers[k][c] = struct{}{}
		_, online[i] = s.clients[k]
	}
	s.mu.Unlock()
	for i, k := range keys {
		c.enqueue(s, encodeFrame(frame{Type: typePresence, ID: k.String(), Online: online[i]}))
	}
}

func (s *Server) forward(c *serverClient, f frame) {
	to, err := identity.ParseID(f.To)
	if err != nil {
		c.enqueue(s, encodeFrame(frame{Type: typeError, Code: codeBadFrame, Message: "send: " + err.Error()}))
		return
	}
	s.mu.Lock()
	dst := s.clients[to]
	s.mu.Unlock()
	if dst == nil {
		c.enqueue(s, encodeFrame(frame{Type: typeError, Code: codePeerOffline, To: f.To, Message: "peer is not connected"}))
		return
	}
	dst.enqueue(s, encodeFrame(frame{Type: typeRecv, From: c.id.String(), Payload: f.Payload}))
}

func (s *Server) admitIP(ip string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.perIP[ip] >= s.cfg.MaxPeersPerIP {
		return false
	}
	s.perIP[ip]++
	return true
}

func (s *Server) releaseIP(ip string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perIP[ip]--; s.perIP[ip] <= 0 {
		delete(s.perIP, ip)
	}
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// iceServers tells a client where STUN and TURN are: the same host it
// reached us at, with TURN credentials made for its ID.
func (s *Server) iceServers(r *http.Request, id identity.PublicKey) []ICEServer {
	var out []ICEServer
	for _, u := range s.cfg.ICEServers {
		out = append(out, ICEServer{URL: u})
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(r.Host); err == nil {
		host = h
	}
	if host == "" || len(s.cfg.ICEServers) > 0 {
		return out
	}
	hp := func(port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }
	if s.cfg.STUNPort > 0 {
		out = append(out, ICEServer{URL: "stun:" + hp(s.cfg.STUNPort)})
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
				out = append(out, ICEServer{URL: url, Username: user, Credential: pass})
			}
		}
		add(t.UDPPort, "turn:"+hp(t.UDPPort)+"?transport=udp")
		add(t.TCPPort, "turn:"+hp(t.TCPPort)+"?transport=tcp")
		add(t.TLSPort, "turns:"+hp(t.TLSPort)+"?transport=tcp")
	}
	return out
}
