package rendezvous

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/punchd/punchd/internal/identity"
	"github.com/punchd/punchd/internal/rvclient"
	"github.com/punchd/punchd/internal/sealed"
	"github.com/punchd/punchd/internal/signalwire"
)

const (
	topicA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	topicB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func joinClient(t *testing.T, url string, topics []string) (*rvclient.Client, chan string) {
	t.Helper()
	got := make(chan string, 16)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := rvclient.Connect(ctx, rvclient.ClientConfig{URL: url, Key: newKey(t), Topics: topics,
		OnAnnouncement: func(topic string, b []byte) { got <- topic + ":" + string(b) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, got
}

// waitJoined polls until the server has n members on topic (join frames
// are processed asynchronously after Connect returns).
func waitJoined(t *testing.T, s *Server, topic string, n int) {
	t.Helper()
	for i := 0; i < 100 && s.TopicMembers(topic) != n; i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if got := s.TopicMembers(topic); got != n {
		t.Fatalf("topic has %d members, want %d", got, n)
	}
}

func TestAnnounceFansOutWithinTopic(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", ServerConfig{})
	a, _ := joinClient(t, s.url(), []string{topicA})
	_, gotB := joinClient(t, s.url(), []string{topicA})
	_, gotC := joinClient(t, s.url(), []string{topicA, topicB})
	_, gotD := joinClient(t, s.url(), []string{topicB})
	waitJoined(t, s.srv, topicA, 3)
	waitJoined(t, s.srv, topicB, 2)
	if err := a.Announce(context.Background(), topicA, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	for name, ch := range map[string]chan string{"B": gotB, "C": gotC} {
		if got := waitFor(t, ch, "announcement at "+name); got != topicA+":hello" {
			t.Fatalf("%s got %q", name, got)
		}
	}
	// D is on another topic, A does not hear itself: give the frames
	// time to arrive if they were (wrongly) sent.
	time.Sleep(100 * time.Millisecond)
	if len(gotD) != 0 {
		t.Fatalf("a member of another topic heard %q", <-gotD)
	}
}

// rawClient registers over a bare websocket, so a test can send frames
// a Client never would. It says what a client says on registering: the
// register frame, then its (empty) watch list.
func rawClient(t *testing.T, s *testServer) *websocket.Conn {
	t.Helper()
	ctx, conn, f := dialForChallenge(t, s)
	key := newKey(t)
	proof, err := sealed.Prove(key, f.ServerKey, f.Nonce)
	if err != nil {
		t.Fatal(err)
	}
	reg := signalwire.Frame{Type: signalwire.TypeRegister, ID: key.PublicKey().String(), Proof: proof}
	if err := conn.Write(ctx, websocket.MessageText, signalwire.Encode(reg)); err != nil {
		t.Fatal(err)
	}
	if f, err := readFrame(ctx, conn); err != nil || f.Type != signalwire.TypeRegistered {
		t.Fatalf("registered: %+v %v", f, err)
	}
	if err := conn.Write(ctx, websocket.MessageText, signalwire.Encode(signalwire.Frame{Type: signalwire.TypeWatch})); err != nil {
		t.Fatal(err)
	}
	return conn
}

func readError(t *testing.T, conn *websocket.Conn) signalwire.Frame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		f, err := readFrame(ctx, conn)
		if err != nil {
			t.Fatalf("waiting for an error frame: %v", err)
		}
		if f.Type == signalwire.TypeError {
			return f
		}
	}
}

func TestTopicBounds(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", ServerConfig{MaxTopicMembers: 2, AnnouncesPerSecond: 0.01, AnnounceBurst: 2})
	write := func(conn *websocket.Conn, f signalwire.Frame) {
		t.Helper()
		if err := conn.Write(context.Background(), websocket.MessageText, signalwire.Encode(f)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name  string
		setup func(conn *websocket.Conn)
		send  signalwire.Frame
		code  string
	}{
		{"announce before join", nil, signalwire.Frame{Type: signalwire.TypeAnnounce, Topic: topicB, Payload: []byte("x")}, signalwire.CodeNotJoined},
		{"oversized announcement", nil, signalwire.Frame{Type: signalwire.TypeAnnounce, Topic: topicB, Payload: make([]byte, signalwire.MaxAnnounceBytes+1)}, signalwire.CodeBadFrame},
		{"bad topic", nil, signalwire.Frame{Type: signalwire.TypeJoin, Topics: []string{"xyz"}}, signalwire.CodeBadFrame},
		{"upper-case topic", nil, signalwire.Frame{Type: signalwire.TypeJoin, Topics: []string{strings.ToUpper(topicB)}}, signalwire.CodeBadFrame},
		{"too many topics", nil, signalwire.Frame{Type: signalwire.TypeJoin, Topics: []string{topicA, topicA, topicA, topicA, topicA}}, signalwire.CodeBadFrame},
		{"topic full", func(*websocket.Conn) {
			for range 2 {
				write(rawClient(t, s), signalwire.Frame{Type: signalwire.TypeJoin, Topics: []string{topicA}})
			}
			waitJoined(t, s.srv, topicA, 2)
		}, signalwire.Frame{Type: signalwire.TypeJoin, Topics: []string{topicA}}, signalwire.CodeTopicFull},
		{"announcing too often", func(conn *websocket.Conn) {
			write(conn, signalwire.Frame{Type: signalwire.TypeJoin, Topics: []string{topicB}})
			waitJoined(t, s.srv, topicB, 1)
			write(conn, signalwire.Frame{Type: signalwire.TypeAnnounce, Topic: topicB, Payload: []byte("1")})
			write(conn, signalwire.Frame{Type: signalwire.TypeAnnounce, Topic: topicB, Payload: []byte("2")})
		}, signalwire.Frame{Type: signalwire.TypeAnnounce, Topic: topicB, Payload: []byte("3")}, signalwire.CodeRateLimited},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn := rawClient(t, s)
			if tt.setup != nil {
				tt.setup(conn)
			}
			write(conn, tt.send)
			if f := readError(t, conn); f.Code != tt.code {
				t.Fatalf("error %s (%s), want %s", f.Code, f.Message, tt.code)
			}
		})
	}
	if n := s.srv.TopicMembers(topicA); n != 2 {
		t.Fatalf("topic A has %d members after the full join was refused, want 2", n)
	}
}

func TestLeavingFreesTopic(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", ServerConfig{})
	c, _ := joinClient(t, s.url(), []string{topicA})
	waitJoined(t, s.srv, topicA, 1)
	c.Close()
	waitJoined(t, s.srv, topicA, 0)
	s.srv.mu.Lock()
	n := len(s.srv.topics)
	s.srv.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d topics left after the last member left", n)
	}
}

// Members of one topic may talk before both have named each other: A
// learned B's key from an announcement and watches it, B has not heard of
// A yet. Without the shared topic the send is refused.
func TestTopicMembersMayTalk(t *testing.T) {
	for _, tt := range []struct {
		name   string
		topics []string
		want   bool
	}{
		{"one topic", []string{topicA}, true},
		{"no topic", nil, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t, "127.0.0.1:0", ServerConfig{})
			ka, kb := newKey(t), newKey(t)
			got := make(chan string, 4)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			b, err := rvclient.Connect(ctx, rvclient.ClientConfig{URL: s.url(), Key: kb, Topics: tt.topics,
				Accept:    func(identity.PublicKey) bool { return true },
				OnMessage: func(_ identity.PublicKey, p []byte) { got <- string(p) }})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			a, err := rvclient.Connect(ctx, rvclient.ClientConfig{URL: s.url(), Key: ka, Topics: tt.topics, Watch: []identity.PublicKey{kb.PublicKey()}})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			if len(tt.topics) > 0 {
				waitJoined(t, s.srv, topicA, 2)
			}
			time.Sleep(50 * time.Millisecond) // a's watch frame is handled
			if err := a.Send(ctx, kb.PublicKey(), []byte("offer")); err != nil {
				t.Fatal(err)
			}
			select {
			case m := <-got:
				if !tt.want || m != "offer" {
					t.Fatalf("b got %q; want delivery=%v", m, tt.want)
				}
			case <-time.After(500 * time.Millisecond):
				if tt.want {
					t.Fatal("the send between members of one topic was not delivered")
				}
			}
		})
	}
}
