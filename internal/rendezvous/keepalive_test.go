package rendezvous

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/punchd/punchd/internal/sealed"
	"github.com/punchd/punchd/internal/signalwire"
)

func TestLiveness(t *testing.T) {
	t0 := time.Unix(1000, 0)
	const interval, timeout = 30 * time.Second, 30 * time.Second
	sec := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }
	tests := []struct {
		name         string
		seen, pinged time.Time
		pingOut      bool
		now          time.Time
		unread       int
		want         verdict
	}{
		{"heard 10 s ago", sec(0), time.Time{}, false, sec(10), 0, heardRecently},
		{"silent for the interval", sec(0), time.Time{}, false, sec(30), 0, pingDue},
		{"pinged, heard since", sec(31), sec(30), true, sec(32), 0, pongSeen},
		{"pinged 29 s ago", sec(0), sec(30), true, sec(59), 0, pongPending},
		{"pinged 30 s ago, nothing came", sec(0), sec(30), true, sec(60), 0, peerDead},
		{"pinged 30 s ago, nothing came (cannot tell)", sec(0), sec(30), true, sec(60), -1, peerDead},
		// A storm kept the server from reading the pong: it is there.
		{"pinged 30 s ago, its pong unread", sec(0), sec(30), true, sec(60), 6, serverBehind},
		{"pinged 90 s ago, bytes unread", sec(0), sec(30), true, sec(120), 200, serverBehind},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := liveness(tt.seen, tt.pinged, tt.pingOut, tt.now, interval, timeout, func() int { return tt.unread })
			if got != tt.want {
				t.Fatalf("liveness = %v, want %v", got, tt.want)
			}
		})
	}
}

// unreadBytes sees bytes waiting in the socket, through the connection
// cap's wrapper (what the server's connections are).
func TestUnreadBytes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lim := LimitListener(ln, HTTPLimits{MaxConns: 4})
	defer lim.Close()
	got := make(chan net.Conn, 1)
	go func() {
		c, err := lim.Accept()
		if err == nil {
			got <- c
		}
	}()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server := waitFor(t, got, "accept")
	defer server.Close()
	if n := unreadBytes(server); n != 0 {
		t.Fatalf("nothing sent: unreadBytes = %d, want 0", n)
	}
	client.Write([]byte("pong!"))
	n := 0
	for i := 0; i < 100 && n == 0; i++ { // loopback delivers at once; bounded anyway
		if n = unreadBytes(server); n == 0 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if n != 5 {
		t.Fatalf("5 bytes sent: unreadBytes = %d, want 5", n)
	}
}

// A registered client that stops reading (so never answers a ping) is
// closed after PingInterval and the pong timeout.
func TestDeadPeerIsClosed(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", ServerConfig{Logger: quiet, PingInterval: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, s.url()+"/v1/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	f, err := readFrame(ctx, conn)
	if err != nil || f.Type != signalwire.TypeChallenge {
		t.Fatalf("challenge: %v %v", f.Type, err)
	}
	key := newKey(t)
	proof, err := sealed.Prove(key, f.ServerKey, f.Nonce)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.Write(ctx, websocket.MessageText, signalwire.Encode(signalwire.Frame{Type: signalwire.TypeRegister, ID: key.PublicKey().String(), Proof: proof})); err != nil {
		t.Fatal(err)
	}
	if f, err := readFrame(ctx, conn); err != nil || f.Type != signalwire.TypeRegistered {
		t.Fatalf("registered: %v %v", f.Type, err)
	}
	if s.srv.Online() != 1 {
		t.Fatalf("online: %d, want 1", s.srv.Online())
	}
	// From now on the client reads nothing, so it answers no ping.
	deadline := time.Now().Add(5 * time.Second)
	for s.srv.Online() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("a client that answers no ping is still registered after 5 s (PingInterval 200 ms)")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := s.srv.Stats().Junk[junkSilent.String()]; n != 1 {
		t.Fatalf("silent clients counted: %d, want 1", n)
	}
}
