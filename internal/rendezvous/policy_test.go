package rendezvous

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/punchd/punchd/internal/identity"
	"github.com/punchd/punchd/internal/rvclient"
	"github.com/punchd/punchd/internal/signalwire"
)

// Presence and forwarding only between IDs that both named each other: a
// stranger who knows an ID (watches it, sends to it) learns nothing and
// delivers nothing, and is told why in an error frame.
func TestStrangersLearnNothing(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", ServerConfig{})
	ka, kb, kx := newKey(t), newKey(t), newKey(t)
	ina, inb, inx := newInbox(), newInbox(), newInbox()
	a := connect(t, s.url(), ka, []identity.PublicKey{kb.PublicKey()}, ina)
	connect(t, s.url(), kb, []identity.PublicKey{ka.PublicKey()}, inb)
	waitPresence(t, ina, kb.PublicKey(), true)

	errs := make(chan rvclient.ServerError, 16)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// x watches a, whom a never named.
	x, err := rvclient.Connect(ctx, rvclient.ClientConfig{URL: s.url(), Key: kx, Watch: []identity.PublicKey{ka.PublicKey()},
		OnPresence:    func(p identity.PublicKey, on bool) { inx.presence <- [2]any{p, on} },
		OnMessage:     func(from identity.PublicKey, b []byte) { inx.msgs <- [2]any{from, string(b)} },
		OnServerError: func(e rvclient.ServerError) { errs <- e },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	if p := waitFor(t, inx.presence, "x's presence of a"); p[0].(identity.PublicKey) != ka.PublicKey() || p[1].(bool) {
		t.Fatalf("a stranger's watch learnt %v", p)
	}
	for _, tc := range []struct {
		to   identity.PublicKey
		code string
	}{
		{ka.PublicKey(), signalwire.CodePeerOffline}, // watched by x, but a did not name x
		{kb.PublicKey(), signalwire.CodeNotWatched},  // not even watched by x
	} {
		if err := x.Send(ctx, tc.to, []byte("hello from a stranger")); err != nil {
			t.Fatal(err)
		}
		if e := waitFor(t, errs, "error frame"); e.Code != tc.code || e.To != tc.to.String() {
			t.Errorf("send to %s: got %+v, want code %s", tc.to.Short(), e, tc.code)
		}
	}
	// a hears nothing of x; a message between a and b still flows.
	if err := a.Send(ctx, kb.PublicKey(), []byte("ok")); err != nil {
		t.Fatal(err)
	}
	if m := waitFor(t, inb.msgs, "a's message"); m[1].(string) != "ok" {
		t.Fatalf("got %v", m)
	}
	select {
	case m := <-ina.msgs:
		t.Fatalf("a got a stranger's message %v", m)
	case p := <-ina.presence:
		t.Fatalf("a heard of a stranger: %v", p)
	default:
	}

	// Once a names x too, both hear of each other.
	// (Watch changes need a new client: Watch is fixed per Client.)
	a.Close()
	waitPresence(t, inb, ka.PublicKey(), false)
	ina2 := newInbox()
	connect(t, s.url(), ka, []identity.PublicKey{kb.PublicKey(), kx.PublicKey()}, ina2)
	waitPresence(t, ina2, kx.PublicKey(), true)
	waitPresence(t, inx, ka.PublicKey(), true)
}

func TestAddrKey(t *testing.T) {
	for _, tc := range []struct{ remote, want string }{
		{"192.0.2.7:4000", "192.0.2.7"},
		{"[::ffff:192.0.2.7]:4000", "192.0.2.7"},
		{"[2001:db8:1:2:aaaa:bbbb:cccc:dddd]:4000", "2001:db8:1:2::"},
		{"[2001:db8:1:2::1]:1", "2001:db8:1:2::"},
		{"[2001:db8:1:3::1]:1", "2001:db8:1:3::"},
	} {
		if got := addrKey(tc.remote); got != netip.MustParseAddr(tc.want) {
			t.Errorf("addrKey(%s) = %s, want %s", tc.remote, got, tc.want)
		}
	}
}

// The server's junk goes through one rate-limited log: a flood of two
// causes makes two lines, and every cause has a name.
func TestJunkLogIsRateLimited(t *testing.T) {
	var mu sync.Mutex
	var lines []string
	h := slog.NewTextHandler(writerFunc(func(b []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, string(b))
		return len(b), nil
	}), nil)
	s := NewServer(ServerConfig{Logger: slog.New(h)})
	defer s.Close()
	for i := 0; i < 1000; i++ {
		s.note(junkRateLimited, "peer", "x")
		s.note(junkBadFrame)
	}
	if len(lines) != 2 {
		t.Fatalf("%d log lines for 2000 junk frames of 2 causes, want 2:\n%s", len(lines), strings.Join(lines, ""))
	}
	if got := s.Stats().Junk; got["rate-limited"] != 1000 || got["bad-frame"] != 1000 {
		t.Fatalf("totals %v", got)
	}
	for c := junkCause(0); c < junkCauses; c++ {
		if c.String() == "unknown" || c.message() == "junk" {
			t.Errorf("cause %d has no name or message", c)
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// The HTTP side holds no more than MaxConns connections, closes idle
// keep-alive ones and refuses oversized headers.
func TestHTTPLimits(t *testing.T) {
	lim := HTTPLimits{MaxConns: 100, IdleTimeout: 2 * time.Second, ReadHeaderTimeout: time.Second}
	srv := NewServer(ServerConfig{Logger: quiet})
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := NewHTTPServer(srv.Handler(), lim)
	go hs.Serve(LimitListener(ln, lim))
	defer hs.Close()

	get := func(c net.Conn, wait time.Duration) error {
		c.SetDeadline(time.Now().Add(wait))
		if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New(resp.Status)
		}
		return nil
	}
	conns := make([]net.Conn, 300)
	for i := range conns {
		if conns[i], err = net.Dial("tcp", ln.Addr().String()); err != nil {
			t.Fatal(err)
		}
		defer conns[i].Close()
	}
	var wg sync.WaitGroup
	answered := make([]bool, len(conns))
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answered[i] = get(c, time.Second) == nil
		}()
	}
	wg.Wait()
	n := 0
	for _, a := range answered {
		if a {
			n++
		}
	}
	if n != lim.MaxConns {
		t.Fatalf("%d of %d connections served at once, want the cap %d", n, len(conns), lim.MaxConns)
	}
	// The served ones now sit idle on keep-alive; the server closes them.
	for i, c := range conns {
		if !answered[i] {
			continue
		}
		c.SetReadDeadline(time.Now().Add(lim.IdleTimeout + 2*time.Second))
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("idle keep-alive connection: read %v, want EOF (closed by the server)", err)
		}
	}

	// Headers over the cap get 431.
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 64<<10)+"\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("64 KiB of headers: %v %v, want 431", resp, err)
	}
}
