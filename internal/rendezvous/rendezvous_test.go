package rendezvous

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/punchd/punchd/internal/identity"
	"github.com/punchd/punchd/internal/rvclient"
	"github.com/punchd/punchd/internal/sealed"
	"github.com/punchd/punchd/internal/signalwire"
)

func newKey(t testing.TB) identity.PrivateKey {
	t.Helper()
	k, err := identity.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// testServer serves a Server on a loopback listener it owns, so a test can
// stop it and start another on the same address.
type testServer struct {
	srv  *Server
	http *http.Server
	ln   net.Listener
}

func startServer(t *testing.T, addr string, cfg ServerConfig) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{srv: NewServer(cfg), ln: ln}
	s.http = &http.Server{Handler: s.srv.Handler()}
	go s.http.Serve(ln)
	t.Cleanup(s.stop)
	return s
}

func (s *testServer) stop() {
	s.http.Close()
	s.srv.Close()
}

func (s *testServer) url() string { return "http://" + s.ln.Addr().String() }

type inbox struct {
	msgs     chan [2]any
	presence chan [2]any
	regs     chan rvclient.Registration
}

func newInbox() *inbox {
	return &inbox{msgs: make(chan [2]any, 16), presence: make(chan [2]any, 16), regs: make(chan rvclient.Registration, 16)}
}

func connect(t *testing.T, url string, key identity.PrivateKey, watch []identity.PublicKey, in *inbox) *rvclient.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := rvclient.Connect(ctx, rvclient.ClientConfig{
		URL: url, Key: key, Watch: watch,
		OnRegistered: func(r rvclient.Registration) { in.regs <- r },
		OnPresence:   func(p identity.PublicKey, on bool) { in.presence <- [2]any{p, on} },
		OnMessage:    func(from identity.PublicKey, b []byte) { in.msgs <- [2]any{from, string(b)} },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func waitFor[T any](t *testing.T, ch chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
	var zero T
	return zero
}

func waitPresence(t *testing.T, in *inbox, peer identity.PublicKey, online bool) {
	t.Helper()
	for i := 0; i < 10; i++ {
		p := waitFor(t, in.presence, "presence")
		if p[0].(identity.PublicKey) == peer && p[1].(bool) == online {
			return
		}
	}
	t.Fatalf("no presence %v for peer", online)
}

// readFrame reads one frame from a raw WebSocket, as a client would.
func readFrame(ctx context.Context, conn *websocket.Conn) (signalwire.Frame, error) {
	_, b, err := conn.Read(ctx)
	if err != nil {
		return signalwire.Frame{}, err
	}
	return signalwire.Decode(b)
}

func TestExchangeAndPresence(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", ServerConfig{STUNPort: 3478})
	ka, kb := newKey(t), newKey(t)
	ina, inb := newInbox(), newInbox()
	a := connect(t, s.url(), ka, []identity.PublicKey{kb.PublicKey()}, ina)
	reg := waitFor(t, ina.regs, "registration")
	if len(reg.ICEServers) != 1 || reg.ICEServers[0].URL != "stun:127.0.0.1:3478" {
		t.Fatalf("ICE servers %v", reg.ICEServers)
	}
	waitPresence(t, ina, kb.PublicKey(), false)
	b := connect(t, s.url(), kb, []identity.PublicKey{ka.PublicKey()}, inb)
	waitPresence(t, ina, kb.PublicKey(), true)
	waitPresence(t, inb, ka.PublicKey(), true)

	ctx := context.Background()
	if err := a.Send(ctx, kb.PublicKey(), []byte("offer from a")); err != nil {
		t.Fatal(err)
	}
	m := waitFor(t, inb.msgs, "message")
	if m[0].(identity.PublicKey) != ka.PublicKey() || m[1].(string) != "offer from a" {
		t.Fatalf("got %v", m)
	}
	if err := b.Send(ctx, ka.PublicKey(), []byte("answer from b")); err != nil {
		t.Fatal(err)
	}
	if m := waitFor(t, ina.msgs, "reply"); m[1].(string) != "answer from b" {
		t.Fatalf("got %v", m)
	}
	// Two messages in and out at least (watches and presence besides); the
	// writer counts just after its write returns, so poll a little.
	for i := 0; ; i++ {
		st := s.srv.Stats()
		if st.FramesIn >= 2 && st.FramesOut >= 2 {
			break
		}
		if i == 100 {
			t.Fatalf("frames in %d, out %d; want >= 2 each", st.FramesIn, st.FramesOut)
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.Close()
	waitPresence(t, ina, kb.PublicKey(), false)
	if !a.Connected() {
		t.Fatal("a not connected")
	}
	if err := b.Close(); err != nil {
		t.Fatal("second Close", err)
	}
}

func TestRegistrationNeedsTheKey(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", ServerConfig{})
	ctx, conn, f := dialForChallenge(t, s)
	// Claim someone else's ID, prove with our own key.
	victim, mine := newKey(t), newKey(t)
	proof, err := sealed.Prove(mine, f.ServerKey, f.Nonce)
	if err != nil {
		t.Fatal(err)
	}
	reg := signalwire.Frame{Type: signalwire.TypeRegister, ID: victim.PublicKey().String(), Proof: proof}
	if err := conn.Write(ctx, websocket.MessageText, signalwire.Encode(reg)); err != nil {
		t.Fatal(err)
	}
	f, err = readFrame(ctx, conn)
	if err != nil || f.Type != signalwire.TypeError || f.Code != signalwire.CodeAuth {
		t.Fatalf("want auth error, got %+v %v", f, err)
	}
	if s.srv.Online() != 0 {
		t.Fatal("impostor registered")
	}
}

func TestLimits(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", ServerConfig{MaxFrameBytes: 1024, MaxPeersPerIP: 2})
	k := newKey(t)
	in := newInbox()
	c := connect(t, s.url(), k, nil, in)
	// An oversized frame closes that connection; the client reconnects.
	// (The write itself may fail: the server closes as soon as it has
	// read the frame's header.)
	big := make([]byte, 4096)
	_ = c.Send(context.Background(), newKey(t).PublicKey(), big)
	waitFor(t, in.regs, "first registration")
	waitFor(t, in.regs, "re-registration after the oversized frame")

	// A third connection from one address is refused.
	connect(t, s.url(), newKey(t), nil, newInbox())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := rvclient.Connect(ctx, rvclient.ClientConfig{URL: s.url(), Key: newKey(t)})
	if err == nil || !strings.Contains(err.Error(), "429") {
		t.Fatalf("third connection from one IP: %v", err)
	}
}

func TestBadFramesGetErrors(t *testing.T) {
	for _, in := range []string{"", "{", `{"v":2,"type":"send"}`, `{"v":1,"type":"nope"}`, `{"v":1,"type":"send","to":"x"}`, `{"v":1,"type":"watch","ids":["bad"]}`} {
		if f, err := signalwire.Decode([]byte(in)); err == nil && f.Type != signalwire.TypeWatch {
			t.Errorf("signalwire.Decode(%q) accepted", in)
		}
	}
}

func TestReconnectAfterServerRestart(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", ServerConfig{})
	addr := s.ln.Addr().String()
	ka, kb := newKey(t), newKey(t)
	ina, inb := newInbox(), newInbox()
	a := connect(t, s.url(), ka, []identity.PublicKey{kb.PublicKey()}, ina)
	connect(t, s.url(), kb, []identity.PublicKey{ka.PublicKey()}, inb)
	waitFor(t, ina.regs, "registration")
	s.stop()
	deadline := time.Now().Add(5 * time.Second)
	for a.Connected() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if a.Connected() {
		t.Fatal("client did not notice the server went away")
	}
	if err := a.Send(context.Background(), kb.PublicKey(), []byte("x")); !errors.Is(err, rvclient.ErrNotConnected) {
		t.Fatalf("send while down: %v", err)
	}
	startServer(t, addr, ServerConfig{})
	waitFor(t, ina.regs, "re-registration")
	waitFor(t, inb.regs, "first registration of b")
	waitFor(t, inb.regs, "re-registration of b")
	waitPresence(t, ina, kb.PublicKey(), true)
	if err := a.Send(context.Background(), kb.PublicKey(), []byte("after restart")); err != nil {
		t.Fatal(err)
	}
	if m := waitFor(t, inb.msgs, "message after restart"); m[1].(string) != "after restart" {
		t.Fatalf("got %v", m)
	}
}

func TestTURNCredentials(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", ServerConfig{STUNPort: 3478, TURN: &TURNConfig{Secret: "s3cret", UDPPort: 3478, TCPPort: 3478, TLSPort: 5349, TTL: time.Hour}})
	k := newKey(t)
	in := newInbox()
	connect(t, s.url(), k, nil, in)
	reg := waitFor(t, in.regs, "registration")
	want := []string{"stun:127.0.0.1:3478", "turn:127.0.0.1:3478?transport=udp", "turn:127.0.0.1:3478?transport=tcp", "turns:127.0.0.1:5349?transport=tcp"}
	if len(reg.ICEServers) != len(want) {
		t.Fatalf("ICE servers %+v", reg.ICEServers)
	}
	for i, w := range want {
		if reg.ICEServers[i].URL != w {
			t.Errorf("server %d = %s, want %s", i, reg.ICEServers[i].URL, w)
		}
	}
	turn := reg.ICEServers[1]
	expiry, id, ok := strings.Cut(turn.Username, ":")
	if !ok || id != k.PublicKey().String() {
		t.Fatalf("username %q is not expiry:id", turn.Username)
	}
	if exp, err := strconv.ParseInt(expiry, 10, 64); err != nil || time.Until(time.Unix(exp, 0)) > time.Hour || time.Until(time.Unix(exp, 0)) < 50*time.Minute {
		t.Fatalf("expiry %q not about an hour ahead", expiry)
	}
	// The password is what coturn's use-auth-secret computes.
	mac := hmac.New(sha1.New, []byte("s3cret"))
	mac.Write([]byte(turn.Username))
	if turn.Credential != base64.StdEncoding.EncodeToString(mac.Sum(nil)) {
		t.Fatal("credential is not HMAC-SHA1(secret, username)")
	}
}

// Sealed ahead with Seal and sent later with SendSealed, a message opens
// at a normal peer; a client with OnSealed gets the very bytes sent,
// unopened (that it gets them only from senders it accepts is
// rvclient's TestOnSealedOnlyFromAccepted: the server passes no
// stranger's message on).
func TestSealAheadAndUnopened(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", ServerConfig{})
	ka, kb := newKey(t), newKey(t)
	ina, inb := newInbox(), newInbox()
	a := connect(t, s.url(), ka, []identity.PublicKey{kb.PublicKey()}, ina)
	b := connect(t, s.url(), kb, []identity.PublicKey{ka.PublicKey()}, inb)
	waitPresence(t, ina, kb.PublicKey(), true)
	sealed, err := a.Seal(kb.PublicKey(), []byte("offer sealed ahead"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := a.SendSealed(ctx, kb.PublicKey(), sealed); err != nil {
		t.Fatal(err)
	}
	if m := waitFor(t, inb.msgs, "message"); m[1].(string) != "offer sealed ahead" {
		t.Fatalf("got %v", m)
	}
	b.Close()

	// b again, now taking messages unopened; only accepted senders'
	// (here a's) are handed over.
	raw := make(chan []byte, 4)
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := rvclient.Connect(cctx, rvclient.ClientConfig{
		URL: s.url(), Key: kb, Watch: []identity.PublicKey{ka.PublicKey()},
		OnMessage: func(identity.PublicKey, []byte) { t.Error("OnMessage called although OnSealed is set") },
		OnSealed:  func(_ identity.PublicKey, b []byte) { raw <- b },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitPresence(t, ina, kb.PublicKey(), true)
	if err := a.SendSealed(ctx, kb.PublicKey(), sealed); err != nil {
		t.Fatal(err)
	}
	if got := waitFor(t, raw, "sealed message"); !bytes.Equal(got, sealed) {
		t.Fatalf("OnSealed got %d bytes, not the %d sent", len(got), len(sealed))
	}
}

// A client that dialed an IP literal is also told the STUN/TURN host's
// address of the other family; one that dialed a name is not (the name
// stands for both). TLS stays on what the client dialed (its certificate).
func TestICEServersBothFamilies(t *testing.T) {
	v4, v6 := netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("2001:db8::7")
	for _, tt := range []struct {
		name, host string
		want       []string
	}{
		{"dialed IPv4", "198.51.100.7:8478", []string{
			"stun:198.51.100.7:3478", "stun:[2001:db8::7]:3478",
			"turn:198.51.100.7:3478?transport=udp", "turn:[2001:db8::7]:3478?transport=udp",
			"turn:198.51.100.7:3478?transport=tcp", "turn:[2001:db8::7]:3478?transport=tcp",
			"turns:198.51.100.7:5349?transport=tcp"}},
		{"dialed IPv6", "[2001:db8::7]:8478", []string{
			"stun:[2001:db8::7]:3478", "stun:198.51.100.7:3478",
			"turn:[2001:db8::7]:3478?transport=udp", "turn:198.51.100.7:3478?transport=udp",
			"turn:[2001:db8::7]:3478?transport=tcp", "turn:198.51.100.7:3478?transport=tcp",
			"turns:[2001:db8::7]:5349?transport=tcp"}},
		{"dialed a name", "rv.example:8478", []string{
			"stun:rv.example:3478", "turn:rv.example:3478?transport=udp",
			"turn:rv.example:3478?transport=tcp", "turns:rv.example:5349?transport=tcp"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := NewServer(ServerConfig{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), STUNPort: 3478, Addr4: v4, Addr6: v6,
				TURN: &TURNConfig{Secret: "s", UDPPort: 3478, TCPPort: 3478, TLSPort: 5349, TTL: time.Hour}})
			defer s.Close()
			got := s.iceServers(tt.host, newKey(t).PublicKey())
			var urls []string
			for _, g := range got {
				urls = append(urls, g.URL)
			}
			if !slices.Equal(urls, tt.want) {
				t.Fatalf("ICE servers\n%q\nwant\n%q", urls, tt.want)
			}
			// All of them survive the daemon's sanity check.
			if kept, refused := signalwire.SaneICEServers(got); len(kept) != len(got) {
				t.Fatalf("the daemon keeps %d of %d: %v", len(kept), len(got), refused)
			}
		})
	}
}
