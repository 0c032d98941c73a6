package turnserver

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/turn/v5"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startTURN(t *testing.T, secret string, log *slog.Logger) *Server {
	t.Helper()
	s, err := ListenServer(ServerConfig{STUNListen: "127.0.0.1:0", TCPListen: "127.0.0.1:0", TURNSecret: secret,
		RelayIP: netip.MustParseAddr("127.0.0.1"), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// allocateUDP makes one UDP allocation with user/pass and returns a
// function that releases it.
func allocateUDP(t *testing.T, s *Server, user, pass string) (release func(), err error) {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: s.Addr().String(), TURNServerAddr: s.Addr().String(),
		Username: user, Password: pass, Realm: Realm, Conn: conn, RTO: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	relay, err := c.AllocateWithContext(ctx)
	if err != nil {
		c.Close()
		conn.Close()
		return nil, err
	}
	return func() {
		relay.Close()
		c.Close()
		conn.Close()
	}, nil
}

// TestCredentialsAtTheServer: what the TURN server accepts, from
// credentials made independently of the rendezvous (pion's generator).
func TestCredentialsAtTheServer(t *testing.T) {
	const secret = "s3cret"
	s := startTURN(t, secret, quietLogger())
	tests := []struct {
		name, secret, user string
		ttl                time.Duration
		ok                 bool
	}{
		{"fresh peer credentials", secret, "peer-id", time.Minute, true},
		{"fresh web credentials", secret, "web-alice", 10 * time.Minute, true},
		{"expired", secret, "web-alice", -time.Second, false},
		{"expired long ago", secret, "web-alice", -24 * time.Hour, false},
		{"other secret", "not-the-secret", "web-alice", time.Minute, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			user, pass, err := turn.GenerateLongTermTURNRESTCredentials(tt.secret, tt.user, tt.ttl)
			if err != nil {
				t.Fatal(err)
			}
			release, err := allocateUDP(t, s, user, pass)
			if (err == nil) != tt.ok {
				t.Fatalf("allocation error %v, want ok=%v", err, tt.ok)
			}
			if release != nil {
				release()
			}
		})
	}
}

// TestAllocationLogAndCount: one info line per allocation naming the user,
// the client, the transport and the relay; the counters follow.
func TestAllocationLogAndCount(t *testing.T) {
	var buf syncBuffer
	s := startTURN(t, "s3cret", slog.New(slog.NewTextHandler(&buf, nil)))
	user, pass, _ := turn.GenerateLongTermTURNRESTCredentials("s3cret", "web-alice", time.Minute)
	release, err := allocateUDP(t, s, user, pass)
	if err != nil {
		t.Fatal(err)
	}
	if a := s.Allocations(); a.Active() != 1 || a.Total() != 1 {
		t.Fatalf("active %d total %d after one allocation", a.Active(), a.Total())
	}
	var line string
	for _, l := range strings.Split(buf.String(), "\n") {
		if strings.Contains(l, `msg="TURN allocation"`) {
			line = l
		}
	}
	for _, want := range []string{"level=INFO", "user=web-alice", "client=127.0.0.1:", "transport=UDP", "relay=127.0.0.1:"} {
		if !strings.Contains(line, want) {
			t.Errorf("allocation line %q lacks %q", line, want)
		}
	}
	release()
	// Over TCP: pion's client on a TCP connection to the TCP listener.
	tcp, err := net.Dial("tcp", s.listeners[0].Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: tcp.RemoteAddr().String(), TURNServerAddr: tcp.RemoteAddr().String(),
		Username: user, Password: pass, Realm: Realm, Conn: turn.NewSTUNConn(tcp)})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	relay, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "transport=TCP") {
		t.Errorf("no allocation line with transport=TCP: %s", buf.String())
	}
	relay.Close()
	c.Close()
	deadline := time.Now().Add(3 * time.Second)
	for i := 0; i < 300 && s.Allocations().Active() != 0 && time.Now().Before(deadline); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if a := s.Allocations(); a.Active() != 0 || a.Total() != 2 {
		t.Fatalf("active %d total %d after release", a.Active(), a.Total())
	}
}

func TestAllocationTransportNames(t *testing.T) {
	a := newAllocations(quietLogger())
	a.addTLS(&net.TCPAddr{IP: net.IPv6zero, Port: 5349})
	client := &net.TCPAddr{IP: net.IPv4(198, 19, 1, 2), Port: 40000}
	tests := []struct {
		src, local net.Addr
		want       string
	}{
		{&net.UDPAddr{IP: net.IPv4(198, 19, 1, 2), Port: 40000}, &net.UDPAddr{IP: net.IPv4(198, 18, 0, 1), Port: 3478}, "UDP"},
		{client, &net.TCPAddr{IP: net.IPv4(198, 18, 0, 1), Port: 3478}, "TCP"},
		{client, &net.TCPAddr{IP: net.IPv4(198, 18, 0, 1), Port: 5349}, "TLS"},
		{client, nil, "TCP"},
	}
	for _, tt := range tests {
		if got := a.transport(tt.src, tt.local); got != tt.want {
			t.Errorf("transport(%v, %v) = %s, want %s", tt.src, tt.local, got, tt.want)
		}
	}
}

// The log is bounded: a flood of allocations logs a burst, then says how
// many lines it left out.
func TestAllocationLogBounded(t *testing.T) {
	var buf syncBuffer
	a := newAllocations(slog.New(slog.NewTextHandler(&buf, nil)))
	src := &net.UDPAddr{IP: net.IPv4(198, 18, 0, 9), Port: 1}
	for range 1000 {
		a.created(src, nil, "web-x", src)
	}
	lines := strings.Count(buf.String(), "TURN allocation")
	if lines > 30 {
		t.Fatalf("%d lines for 1000 allocations at once", lines)
	}
	if a.Total() != 1000 || a.Active() != 1000 {
		t.Fatalf("counted %d/%d", a.Total(), a.Active())
	}
	time.Sleep(300 * time.Millisecond) // refill at least one token (5/s)
	a.created(src, nil, "web-x", src)
	if !strings.Contains(buf.String(), "unlogged_before=") {
		t.Fatal("the next line does not say how many were left out")
	}
}
