package rendezvous

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/punchd/punchd/internal/identity"
	"github.com/punchd/punchd/internal/rvclient"
)

// upgrade sends a WebSocket upgrade request on a new connection and
// returns the response status; on 101 it also reads the first frame (the
// challenge) and returns the connection open, so that its registration
// stays in progress.
func upgrade(t *testing.T, addr string) (int, http.Header, net.Conn) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET /v1/ws HTTP/1.1\r\nHost: "+addr+"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		c.Close()
		t.Fatalf("upgrade: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		c.Close()
		return resp.StatusCode, resp.Header, nil
	}
	if _, err := r.ReadByte(); err != nil { // the challenge frame
		c.Close()
		t.Fatalf("no challenge: %v", err)
	}
	c.SetDeadline(time.Time{})
	t.Cleanup(func() { c.Close() })
	return resp.StatusCode, resp.Header, c
}

// TestHandshakeBudget: registrations in progress are bounded by
// MaxHandshakes; one over the budget gets 503 with Retry-After before
// the upgrade (no challenge, no cryptography), and a slot given back
// admits the next client.
func TestHandshakeBudget(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", ServerConfig{Logger: quiet, MaxHandshakes: 2, HandshakeWait: 50 * time.Millisecond})
	addr := s.ln.Addr().String()
	var holders []net.Conn
	for i := range 2 {
		code, _, c := upgrade(t, addr)
		if code != http.StatusSwitchingProtocols {
			t.Fatalf("registration %d of 2 in progress: HTTP %d, want 101", i+1, code)
		}
		holders = append(holders, c)
	}
	code, hdr, _ := upgrade(t, addr)
	if code != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" {
		t.Fatalf("third registration in progress with MaxHandshakes 2: HTTP %d (Retry-After %q), want 503 with Retry-After", code, hdr.Get("Retry-After"))
	}
	if n := s.srv.Stats().Junk[junkBusy.String()]; n != 1 {
		t.Fatalf("busy refusals counted: %d, want 1", n)
	}
	// The client says what 503 means.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_, err := rvclient.Connect(ctx, rvclient.ClientConfig{URL: s.url(), Key: newKey(t), Logger: quiet})
	cancel()
	if err == nil || !strings.Contains(err.Error(), "busy") || !strings.Contains(err.Error(), "503") {
		t.Fatalf("Connect over the budget: %v, want an error saying the rendezvous is busy (503)", err)
	}
	// A holder gives up: its slot admits a real client (the server sees
	// the close at once, but give it a bounded number of tries).
	holders[0].Close()
	var c *rvclient.Client
	for i := 0; i < 50 && c == nil; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err = rvclient.Connect(ctx, rvclient.ClientConfig{URL: s.url(), Key: newKey(t), Logger: quiet})
		cancel()
		if c == nil {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if c == nil {
		t.Fatalf("a slot given back did not admit a client: %v", err)
	}
	c.Close()
	// A registered client holds no slot: with holders[1] still holding
	// one, the other is free.
	code, _, _ = upgrade(t, addr)
	if code != http.StatusSwitchingProtocols {
		t.Fatalf("after a client registered: HTTP %d, want 101 (registered peers must not hold handshake slots)", code)
	}
}

// A refused registration gives its slot back before its close handshake:
// a client that sends junk and never answers the close (the server waits
// up to closeHandshakeWait for it) does not hold a slot meanwhile.
func TestRefusedRegistrationFreesSlot(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", ServerConfig{Logger: quiet, MaxHandshakes: 1, HandshakeWait: 10 * time.Millisecond})
	addr := s.ln.Addr().String()
	code, _, c := upgrade(t, addr)
	if code != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: HTTP %d", code)
	}
	// The rest of the challenge frame, then a junk text frame (masked,
	// as clients must).
	c.SetDeadline(time.Now().Add(5 * time.Second))
	junk := []byte("{")
	frame := append([]byte{0x81, 0x80 | byte(len(junk)), 1, 2, 3, 4}, junk[0]^1)
	if _, err := c.Write(frame); err != nil {
		t.Fatal(err)
	}
	// Wait for the server's answer (the error frame) without answering
	// its close.
	buf := make([]byte, 4096)
	got := ""
	for !strings.Contains(got, `"error"`) {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("no error frame for a junk registration: %v", err)
		}
		got += string(buf[:n])
	}
	code, _, _ = upgrade(t, addr)
	if code != http.StatusSwitchingProtocols {
		t.Fatalf("next registration while the refused one's close is pending: HTTP %d, want 101 (the slot was not given back)", code)
	}
}

// Refusals are answered within a budget: 150 sends to a watched peer
// that is offline get at most refusalBurst error frames (and a few for
// the time they took), and the rest are counted.
func TestRefusalsAreBounded(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", ServerConfig{Logger: quiet})
	var mu sync.Mutex
	errs := 0
	presence := make(chan struct{}, 4)
	key := newKey(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	marker := newKey(t).PublicKey()
	offline := newKey(t).PublicKey()
	c, err := rvclient.Connect(ctx, rvclient.ClientConfig{URL: s.url(), Key: key, Logger: quiet, Watch: []identity.PublicKey{offline},
		OnServerError: func(rvclient.ServerError) { mu.Lock(); errs++; mu.Unlock() },
		OnPresence: func(p identity.PublicKey, _ bool) {
			if p == marker {
				presence <- struct{}{}
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const sends = 150
	for range sends {
		if err := c.SendSealed(ctx, offline, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	// The watch's answer comes after every send was handled (one
	// worker per client, in order).
	if err := c.SetWatch(ctx, []identity.PublicKey{offline, marker}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, presence, "presence after the sends")
	mu.Lock()
	got := errs
	mu.Unlock()
	if got < refusalBurst || got > refusalBurst+refusalsPerSecond*5 {
		t.Fatalf("%d sends to an offline peer got %d error frames, want about %d (the refusal budget)", sends, got, refusalBurst)
	}
	if n := s.srv.Stats().Unanswered; n != uint64(sends-got) {
		t.Fatalf("unanswered refusals counted: %d, want %d", n, sends-got)
	}
}

// A client that keeps sending to IDs it does not watch is closed past a
// burst of strangerSendBurst.
func TestStrangerSpammerIsClosed(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", ServerConfig{Logger: quiet})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := rvclient.Connect(ctx, rvclient.ClientConfig{URL: s.url(), Key: newKey(t), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	stranger := newKey(t).PublicKey()
	for range strangerSendBurst + 10 {
		if err := c.SendSealed(ctx, stranger, []byte("x")); err != nil {
			break // closed under the sends
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.srv.Stats().Junk[junkFlooder.String()] == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d sends to a stranger at once: the client was not closed", strangerSendBurst+10)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := s.srv.Stats().Junk[junkStranger.String()]; n < strangerSendBurst {
		t.Fatalf("sends to strangers counted: %d, want at least %d", n, strangerSendBurst)
	}
}
