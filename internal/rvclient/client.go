package rvclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/punchd/punchd/internal/identity"
	"github.com/punchd/punchd/internal/junklog"
	"github.com/punchd/punchd/internal/sealed"
	"github.com/punchd/punchd/internal/signalwire"
)

// Registration is what the server tells a client on (re)registering.
type Registration struct {
	// ICEServers is the server's list after signalwire.SaneICEServers: at most
	// signalwire.MaxSTUNServers STUN and signalwire.MaxTURNServers TURN servers, well-formed.
	ICEServers []signalwire.ICEServer
	// Refused says which of the server's entries were left out, and why.
	Refused []string
}

// ClientConfig configures a Client.
type ClientConfig struct {
	URL    string // http(s):// or ws(s)://; path /v1/ws is added when absent
	Key    identity.PrivateKey
	Logger *slog.Logger
	// Watch lists the peers whose presence we want; SetWatch changes it.
	Watch []identity.PublicKey
	// Accept says whose sealed messages are opened at all; anyone else's
	// are dropped before any cryptography or replay state (and counted).
	// It may change its answer at run time (members of a group learned
	// later) and must be cheap and safe to call from any goroutine; it
	// must not call back into the Client. Nil accepts the Watch list.
	Accept func(identity.PublicKey) bool
	// Topics are the group topics (network.Keys.TopicID) to join; they
	// are joined again on every reconnect, before OnRegistered runs.
	Topics []string
	// Callbacks run on one goroutine, in the order frames arrived.
	OnRegistered func(Registration)
	OnPresence   func(peer identity.PublicKey, online bool)
	OnMessage    func(from identity.PublicKey, payload []byte)
	// OnSealed, when set, takes messages from accepted senders still
	// sealed, in place of OnMessage: the load benchmark measures the
	// server and must not spend its own CPU opening (the server never
	// opens either). A daemon never sets it: nothing would be
	// authenticated or checked for replay.
	OnSealed func(from identity.PublicKey, sealed []byte)
	// OnAnnouncement gets the opaque announcements of joined topics.
	OnAnnouncement func(topic string, payload []byte)
	// OnServerError, when set, gets the server's error frames (a send
	// refused, frames dropped over the rate limit); they are logged at
	// debug level either way.
	OnServerError func(ServerError)
	// HTTPClient, when set, dials the WebSocket (tests and the load
	// benchmark pick source addresses with it); default http.DefaultClient.
	HTTPClient *http.Client
}

const (
	dialTimeout = 10 * time.Second
	backoffMin  = 100 * time.Millisecond
	backoffMax  = 5 * time.Second
	// The keepalive pace scales. An idle client does not ping: the server
	// pings every client it has not heard from for its PingInterval
	// (30 s), which keeps NAT and firewall state too, and the client only
	// checks every clientCheck that it heard from the server within
	// clientSilent; when not, it pings and waits clientIdlePingWait for
	// the pong (a busy server is not a dead one). After Recheck (a tunnel
	// stalled: whatever broke it has likely broken this connection too,
	// and the self-healing needs signaling now) it pings at once and every
	// clientPing for clientFastWindow, each answer due within clientPing:
	// a dead connection is found within seconds while it matters.
	clientCheck        = 10 * time.Second
	clientSilent       = 75 * time.Second
	clientIdlePingWait = 10 * time.Second
	clientPing         = 2 * time.Second
	clientFastWindow   = 30 * time.Second
	maxClientRead      = 256 << 10
)

// Client keeps a registration at the rendezvous alive.
type Client struct {
	cfg  ClientConfig
	url  string
	log  *slog.Logger
	seal *sealed.Sealer
	junk *junklog.Log
	conn atomic.Pointer[websocket.Conn]
	// recheck asks the pinger for a ping now (see Recheck).
	recheck chan struct{}
	// redial asks serve to drop the connection now (see Reconnect).
	redial  chan struct{}
	watchMu sync.Mutex
	watch   []identity.PublicKey // what SetWatch last set
	// heard is when the server last said anything (a signalwire.Frame, a ping).
	heard  atomic.Int64
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// Connect makes the first connection (bounded by ctx and a dial timeout)
// and returns an actionable error when it fails; after that it keeps the
// connection up in the background, reconnecting with backoff, until Close
// (cancelling ctx afterwards does not end it).
func Connect(ctx context.Context, cfg ClientConfig) (*Client, error) {
	u, err := wsURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	c := newClient(cfg, log)
	c.url = u
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	conn, reg, err := c.dial(dctx)
	cancel()
	if err != nil {
		return nil, err
	}
	// ctx bounds only the first connection; the client lives until Close.
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	c.cancel = stop
	c.conn.Store(conn) // Send works as soon as Connect returns
	go func() {
		defer close(c.done)
		c.run(runCtx, conn, reg)
	}()
	return c, nil
}

func newClient(cfg ClientConfig, log *slog.Logger) *Client {
	accept := cfg.Accept
	if accept == nil {
		watch := make(map[identity.PublicKey]bool, len(cfg.Watch))
		for _, k := range cfg.Watch {
			watch[k] = true
		}
		accept = func(k identity.PublicKey) bool { return watch[k] }
	}
	return &Client{cfg: cfg, log: log, seal: sealed.NewSealer(cfg.Key, accept), junk: junklog.New(log, junklog.DefaultEvery),
		recheck: make(chan struct{}, 1), redial: make(chan struct{}, 1), done: make(chan struct{}), watch: slices.Clone(cfg.Watch)}
}

// Junk-log causes: what the client refused, counted (see Dropped).
const (
	JunkUnknownSender = "unknown-sender" // a sealed message from a key we do not accept
	JunkBadSeal       = "bad-seal"       // from an accepted key, but does not open or is malformed
	JunkReplay        = "replay"         // replayed, or its timestamp is too far off
	JunkBadFrame      = "bad-frame"      // a frame from the rendezvous we cannot parse
	JunkBadICEServer  = "bad-ice-server" // ICE server entries left out (see signalwire.SaneICEServers)
)

// Dropped counts what the client refused since start, per cause (the
// Junk* constants).
func (c *Client) Dropped() map[string]uint64 { return c.junk.Counts() }

// wsURL turns what a user types into the WebSocket URL.
func wsURL(raw string) (string, error) {
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("bad rendezvous URL %q: %w", raw, err)
	}
	switch u.Scheme {
	case "http", "ws":
		u.Scheme = "ws"
	case "https", "wss":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("bad rendezvous URL %q: scheme %q, use http:// or https://", raw, u.Scheme)
	}
	if u.Host == "" {
		return "", fmt.Errorf("bad rendezvous URL %q: no host", raw)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/ws"
	}
	return u.String(), nil
}

// dial connects, registers and sends the watch list.
func (c *Client) dial(ctx context.Context) (*websocket.Conn, Registration, error) {
	c.heard.Store(time.Now().UnixNano())
	conn, resp, err := websocket.Dial(ctx, c.url, &websocket.DialOptions{
		HTTPClient: c.cfg.HTTPClient,
		OnPingReceived: func(context.Context, []byte) bool {
			c.heard.Store(time.Now().UnixNano())
			return true
		},
	})
	if err != nil {
		var unknown x509.UnknownAuthorityError
		var verify *tls.CertificateVerificationError
		if errors.As(err, &unknown) || errors.As(err, &verify) {
			// The certificate is checked against the system's roots; a
			// private CA has to be added there or named.
			return nil, Registration{}, fmt.Errorf("rendezvous %s: its TLS certificate is not trusted by this host: %w; "+
				"if a private CA signed it, point SSL_CERT_FILE at the CA's certificate (or add it to the system's roots)", c.url, err)
		}
		if resp != nil && resp.StatusCode == http.StatusServiceUnavailable {
			// The server sheds registrations over its budget before any
			// work: our backoff (with jitter) is the retry it asks for.
			return nil, Registration{}, fmt.Errorf("rendezvous %s is busy (HTTP 503: too many registrations in progress), try again shortly: %w", c.url, err)
		}
		return nil, Registration{}, fmt.Errorf("rendezvous unreachable at %s: %w; is `punchd rendezvous` running and reachable?", c.url, err)
	}
	conn.SetReadLimit(maxClientRead)
	reg, err := c.register(ctx, conn)
	if err != nil {
		conn.Close(websocket.StatusPolicyViolation, "")
		return nil, Registration{}, fmt.Errorf("register at rendezvous %s: %w", c.url, err)
	}
	return conn, reg, nil
}

func (c *Client) register(ctx context.Context, conn *websocket.Conn) (Registration, error) {
	f, err := readFrame(ctx, conn)
	if err != nil {
		return Registration{}, err
	}
	if f.Type != signalwire.TypeChallenge {
		return Registration{}, fmt.Errorf("expected a challenge, got %q", f.Type)
	}
	proof, err := sealed.Prove(c.cfg.Key, f.ServerKey, f.Nonce)
	if err != nil {
		return Registration{}, err
	}
	reg := signalwire.Frame{Type: signalwire.TypeRegister, ID: c.cfg.Key.PublicKey().String(), Proof: proof}
	if err := conn.Write(ctx, websocket.MessageText, signalwire.Encode(reg)); err != nil {
		return Registration{}, err
	}
	f, err = readFrame(ctx, conn)
	if err != nil {
		return Registration{}, err
	}
	switch f.Type {
	case signalwire.TypeRegistered:
	case signalwire.TypeError:
		return Registration{}, fmt.Errorf("refused: %s: %s", f.Code, f.Message)
	default:
		return Registration{}, fmt.Errorf("expected registered, got %q", f.Type)
	}
	if err := conn.Write(ctx, websocket.MessageText, c.watchFrame()); err != nil {
		return Registration{}, err
	}
	if len(c.cfg.Topics) > 0 {
		if err := conn.Write(ctx, websocket.MessageText, signalwire.Encode(signalwire.Frame{Type: signalwire.TypeJoin, Topics: c.cfg.Topics})); err != nil {
			return Registration{}, err
		}
	}
	return c.registration(f), nil
}

// registration is what a registered frame says, cut to sane ICE servers.
func (c *Client) registration(f signalwire.Frame) Registration {
	kept, refused := signalwire.SaneICEServers(f.ICEServers)
	if len(refused) > 0 {
		c.junk.Drop(JunkBadICEServer, "left out ICE servers the rendezvous offered", "refused", refused)
	}
	return Registration{ICEServers: kept, Refused: refused}
}

func readFrame(ctx context.Context, conn *websocket.Conn) (signalwire.Frame, error) {
	_, b, err := conn.Read(ctx)
	if err != nil {
		return signalwire.Frame{}, err
	}
	return signalwire.Decode(b)
}

// handleBytes is serve's read path for one frame without the connection
// (the fuzz target's entry). The rendezvous may be hostile: whatever it
// sends costs at most a counter and a rate-limited line.
func (c *Client) handleBytes(b []byte) {
	f, err := signalwire.Decode(b)
	if err != nil {
		c.junk.Drop(JunkBadFrame, "bad frame from the rendezvous", "err", err)
		return
	}
	c.handle(f)
}

// run serves one connection after another until ctx is done.
func (c *Client) run(ctx context.Context, conn *websocket.Conn, reg Registration) {
	backoff := backoffMin
	for {
		c.conn.Store(conn)
		if c.cfg.OnRegistered != nil {
			c.cfg.OnRegistered(reg)
		}
		start := time.Now()
		err := c.serve(ctx, conn)
		c.conn.Store(nil)
		conn.Close(websocket.StatusNormalClosure, "")
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > 30*time.Second {
			backoff = backoffMin
		}
		c.log.Warn("lost the rendezvous; reconnecting (tunnels stay up)", "err", err)
		for {
			// Full jitter keeps a restarted rendezvous from being hit by
			// every client at once.
			wait := backoff/2 + rand.N(backoff/2+1)
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			backoff = min(backoff*2, backoffMax)
			dctx, cancel := context.WithTimeout(ctx, dialTimeout)
			var derr error
			conn, reg, derr = c.dial(dctx)
			cancel()
			if derr == nil {
				c.log.Info("reconnected to the rendezvous")
				break
			}
			c.log.Debug("rendezvous reconnect failed", "err", derr)
		}
	}
}

// serve reads frames until the connection fails; a pinger notices a
// silently dead server (no RST) within a few seconds, or at once after
// Recheck.
func (c *Client) serve(ctx context.Context, conn *websocket.Conn) error {
	select {
	case <-c.redial: // asked for before this connection was made: moot
	default:
	}
	ctx, cancel := context.WithCancel(ctx)
	var pinger sync.WaitGroup
	defer func() {
		cancel()
		pinger.Wait()
	}()
	pinger.Add(1)
	go func() {
		defer pinger.Done()
		c.keepalive(ctx, conn, &c.heard, cancel)
	}()
	for {
		f, err := readFrame(ctx, conn)
		c.heard.Store(time.Now().UnixNano())
		if err != nil {
			if errors.Is(err, signalwire.ErrBadFrame) {
				c.junk.Drop(JunkBadFrame, "bad frame from the rendezvous", "err", err)
				continue
			}
			return err
		}
		c.handle(f)
	}
}

// keepalive checks the connection at the pace described at clientCheck
// and calls fail when a ping is not answered in time.
func (c *Client) keepalive(ctx context.Context, conn *websocket.Conn, heard *atomic.Int64, fail func()) {
	t := time.NewTimer(jitter(clientCheck))
	defer t.Stop()
	var fastUntil time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-c.recheck:
			fastUntil = time.Now().Add(clientFastWindow)
		case <-c.redial:
			c.log.Debug("reconnecting to the rendezvous: the network changed")
			fail()
			return
		}
		now := time.Now()
		fast := now.Before(fastUntil)
		if fast || now.Sub(time.Unix(0, heard.Load())) > clientSilent {
			wait := clientIdlePingWait
			if fast {
				wait = clientPing
			}
			pctx, pcancel := context.WithTimeout(ctx, wait)
			err := conn.Ping(pctx)
			pcancel()
			if err != nil {
				c.log.Debug("rendezvous ping failed", "err", err, "waited", wait)
				fail()
				return
			}
			heard.Store(time.Now().UnixNano())
		}
		next := jitter(clientCheck)
		if time.Now().Before(fastUntil) {
			next = clientPing
		}
		t.Reset(next)
	}
}

// jitter spreads d over [0.8d, d] so that clients started together do
// not check together.
func jitter(d time.Duration) time.Duration {
	return d - rand.N(d/5+1)
}

func (c *Client) handle(f signalwire.Frame) {
	switch f.Type {
	case signalwire.TypePresence:
		k, err := identity.ParseID(f.ID)
		if err == nil && c.cfg.OnPresence != nil {
			c.cfg.OnPresence(k, f.Online)
		}
	case signalwire.TypeRecv:
		from, err := identity.ParseID(f.From)
		if err != nil {
			c.junk.Drop(JunkBadFrame, "bad frame from the rendezvous", "err", err)
			return
		}
		if c.cfg.OnSealed != nil {
			if !c.seal.Accepts(from) {
				c.junk.Drop(JunkUnknownSender, "dropped messages from keys that are not our peers", "from", from.Short())
				return
			}
			c.cfg.OnSealed(from, f.Payload)
			return
		}
		payload, err := c.seal.Open(from, f.Payload, time.Now())
		switch {
		case err == nil:
		case errors.Is(err, sealed.ErrUnknownSender):
			c.junk.Drop(JunkUnknownSender, "dropped messages from keys that are not our peers", "from", from.Short())
			return
		case errors.Is(err, sealed.ErrReplay):
			c.junk.Drop(JunkReplay, "dropped a replayed or stale message", "from", from.Short(), "err", err)
			return
		default:
			c.junk.Drop(JunkBadSeal, "dropped a message that does not open", "from", from.Short(), "err", err)
			return
		}
		if c.cfg.OnMessage != nil {
			c.cfg.OnMessage(from, payload)
		}
	case signalwire.TypeAnnounced:
		if c.cfg.OnAnnouncement != nil && slices.Contains(c.cfg.Topics, f.Topic) {
			c.cfg.OnAnnouncement(f.Topic, f.Payload)
		}
	case signalwire.TypeRegistered:
		// A refresh: new TURN credentials before the old ones expire.
		reg := c.registration(f)
		if c.cfg.OnRegistered != nil {
			c.cfg.OnRegistered(reg)
		}
	case signalwire.TypeError:
		c.log.Debug("rendezvous error", "code", f.Code, "message", f.Message, "to", f.To)
		if c.cfg.OnServerError != nil {
			c.cfg.OnServerError(ServerError{Code: f.Code, To: f.To, Message: f.Message})
		}
	}
}

// ServerError is an error frame from the server: Code is one of the
// signalwire codes ("not-watched", "peer-offline", "rate-limited", ...),
// To the peer a refused send was for.
type ServerError struct {
	Code, To, Message string
}

// ErrNotConnected is returned by Send while reconnecting.
var ErrNotConnected = errors.New("not connected to the rendezvous")

// Send seals payload for peer and hands it to the rendezvous.
func (c *Client) Send(ctx context.Context, to identity.PublicKey, payload []byte) error {
	if c.conn.Load() == nil {
		return ErrNotConnected
	}
	sealed, err := c.Seal(to, payload)
	if err != nil {
		return err
	}
	return c.SendSealed(ctx, to, sealed)
}

// Seal seals payload for peer now, for SendSealed later (within the
// replay window of two minutes, or the peer refuses it as stale): the
// load benchmark seals ahead of its timed phase, so that what it times is
// the server and not its own cryptography.
func (c *Client) Seal(to identity.PublicKey, payload []byte) ([]byte, error) {
	return c.seal.Seal(to, payload, time.Now())
}

// SendSealed hands a payload Seal made for peer to the rendezvous.
func (c *Client) SendSealed(ctx context.Context, to identity.PublicKey, sealed []byte) error {
	conn := c.conn.Load()
	if conn == nil {
		return ErrNotConnected
	}
	return conn.Write(ctx, websocket.MessageText, signalwire.Encode(signalwire.Frame{Type: signalwire.TypeSend, To: to.String(), Payload: sealed}))
}

// Recheck makes the client ping the rendezvous now instead of at the next
// interval, and reconnect if that fails: the daemon calls it when a tunnel
// path goes silent, since whatever broke the path (a NAT that forgot its
// mappings, a network change) has likely broken this connection too. For
// clientFastWindow after it the client keeps pinging every clientPing, so
// a connection that dies while the tunnel heals is found within seconds;
// otherwise it relies on the server's pings (see clientCheck). It never
// blocks.
func (c *Client) Recheck() {
	select {
	case c.recheck <- struct{}{}:
	default: // one is pending already
	}
}

// Reconnect drops the current connection and dials again at once: the
// daemon calls it when the host's addresses changed, since a connection
// from an address the host no longer has is dead, and a ping would take
// its timeout to say so. It never blocks.
func (c *Client) Reconnect() {
	select {
	case c.redial <- struct{}{}:
	default: // one is pending already
	}
}

// Connected reports whether the client is registered right now.
func (c *Client) Connected() bool { return c.conn.Load() != nil }

// Close ends the connection and the reconnect loop; idempotent.
func (c *Client) Close() error {
	c.once.Do(func() {
		if c.cancel != nil {
			c.cancel()
			<-c.done
		}
	})
	return nil
}
