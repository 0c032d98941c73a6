package peerjs

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"

	"github.com/punchd/punchd/internal/weborigin"
)

const origin = "https://game.example"

func startServer(t *testing.T, cfg Config) (*Server, string) {
	t.Helper()
	if cfg.Origins == nil {
		al, err := weborigin.Parse([]string{origin})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Origins = al
	}
	s := New(cfg)
	mux := http.NewServeMux()
	mux.Handle(Path+"/", s)
	hs := httptest.NewServer(mux)
	t.Cleanup(func() {
		hs.Close()
		s.Close()
	})
	return s, hs.URL
}

// step is one line of a protocol script: peer who connects (query), sends
// a frame, expects a frame, or expects the server to close.
type step struct {
	who       string
	connect   string // query string of the WebSocket URL
	status    int    // with connect: the HTTP status expected instead of an upgrade
	send      string
	sendRaw   []byte // sent as a binary frame
	want      string // JSON the next frame must equal
	wantClose bool   // the next read fails: the server closed
}

func TestProtocol(t *testing.T) {
	big := `{"type":"OFFER","dst":"b","payload":{"sdp":"` + strings.Repeat("x", 70<<10) + `"}}`
	tests := []struct {
		name  string
		cfg   Config
		steps []step
	}{
		{"open, offer, answer, candidate", Config{}, []step{
			{who: "a", connect: "key=peerjs&id=a&token=ta&version=1.5.5"},
			{who: "a", want: `{"type":"OPEN"}`},
			{who: "b", connect: "key=peerjs&id=b&token=tb"},
			{who: "b", want: `{"type":"OPEN"}`},
			{who: "a", send: `{"type":"OFFER","dst":"b","payload":{"sdp":{"type":"offer","sdp":"v=0"},"type":"data","connectionId":"dc_1"}}`},
			{who: "b", want: `{"type":"OFFER","src":"a","dst":"b","payload":{"sdp":{"type":"offer","sdp":"v=0"},"type":"data","connectionId":"dc_1"}}`},
			{who: "b", send: `{"type":"ANSWER","src":"mallory","dst":"a","payload":{"connectionId":"dc_1"}}`},
			{who: "a", want: `{"type":"ANSWER","src":"b","dst":"a","payload":{"connectionId":"dc_1"}}`},
			{who: "a", send: `{"type":"HEARTBEAT"}`},
			{who: "a", send: `{"type":"CANDIDATE","dst":"b","payload":{"candidate":{"candidate":"candidate:1 1 udp 1 198.18.0.1 5000 typ relay"}}}`},
			{who: "b", want: `{"type":"CANDIDATE","src":"a","dst":"b","payload":{"candidate":{"candidate":"candidate:1 1 udp 1 198.18.0.1 5000 typ relay"}}}`},
		}},
		{"offer to a peer not connected expires; leave to one is ignored", Config{}, []step{
			{who: "a", connect: "key=peerjs&id=a&token=ta"},
			{who: "a", want: `{"type":"OPEN"}`},
			{who: "a", send: `{"type":"LEAVE","dst":"nobody"}`},
			{who: "a", send: `{"type":"EXPIRE","dst":"nobody"}`},
			{who: "a", send: `{"type":"OFFER","dst":"nobody","payload":{}}`},
			{who: "a", want: `{"type":"EXPIRE","src":"nobody","dst":"a"}`},
		}},
		{"leave reaches the peer", Config{}, []step{
			{who: "a", connect: "key=peerjs&id=a&token=ta"},
			{who: "a", want: `{"type":"OPEN"}`},
			{who: "b", connect: "key=peerjs&id=b&token=tb"},
			{who: "b", want: `{"type":"OPEN"}`},
			{who: "a", send: `{"type":"LEAVE","dst":"b"}`},
			{who: "b", want: `{"type":"LEAVE","src":"a","dst":"b"}`},
		}},
		{"leave without dst ends the session", Config{}, []step{
			{who: "a", connect: "key=peerjs&id=a&token=ta"},
			{who: "a", want: `{"type":"OPEN"}`},
			{who: "a", send: `{"type":"LEAVE"}`},
			{who: "a", wantClose: true},
		}},
		{"no parameters", Config{}, []step{
			{who: "a", connect: "key=peerjs&id=a"},
			{who: "a", want: `{"type":"ERROR","payload":{"msg":"No id, token, or key supplied to websocket server"}}`},
			{who: "a", wantClose: true},
		}},
		{"wrong key", Config{}, []step{
			{who: "a", connect: "key=other&id=a&token=t"},
			{who: "a", want: `{"type":"ERROR","payload":{"msg":"Invalid key provided"}}`},
			{who: "a", wantClose: true},
		}},
		{"own key", Config{Key: "game"}, []step{
			{who: "a", connect: "key=game&id=a&token=t"},
			{who: "a", want: `{"type":"OPEN"}`},
		}},
		{"bad id", Config{}, []step{
			{who: "a", connect: "key=peerjs&id=a/../b&token=t"},
			{who: "a", want: `{"type":"ERROR","payload":{"msg":"Invalid id provided"}}`},
			{who: "a", wantClose: true},
		}},
		{"bad token", Config{}, []step{
			{who: "a", connect: "key=peerjs&id=a&token=" + strings.Repeat("t", 65)},
			{who: "a", want: `{"type":"ERROR","payload":{"msg":"Invalid token provided"}}`},
			{who: "a", wantClose: true},
		}},
		{"id taken by another token", Config{}, []step{
			{who: "a", connect: "key=peerjs&id=a&token=t1"},
			{who: "a", want: `{"type":"OPEN"}`},
			{who: "x", connect: "key=peerjs&id=a&token=t2"},
			{who: "x", want: `{"type":"ID-TAKEN","payload":{"msg":"ID is taken"}}`},
			{who: "x", wantClose: true},
		}},
		{"same id and token takes over", Config{}, []step{
			{who: "a", connect: "key=peerjs&id=a&token=t1"},
			{who: "a", want: `{"type":"OPEN"}`},
			{who: "a2", connect: "key=peerjs&id=a&token=t1"},
			{who: "a2", want: `{"type":"OPEN"}`},
			{who: "a", wantClose: true},
			{who: "b", connect: "key=peerjs&id=b&token=tb"},
			{who: "b", want: `{"type":"OPEN"}`},
			{who: "b", send: `{"type":"OFFER","dst":"a","payload":{}}`},
			{who: "a2", want: `{"type":"OFFER","src":"b","dst":"a","payload":{}}`},
		}},
		{"concurrent user limit", Config{MaxPeers: 1}, []step{
			{who: "a", connect: "key=peerjs&id=a&token=ta"},
			{who: "a", want: `{"type":"OPEN"}`},
			{who: "b", connect: "key=peerjs&id=b&token=tb"},
			{who: "b", want: `{"type":"ERROR","payload":{"msg":"Server has reached its concurrent user limit"}}`},
			{who: "b", wantClose: true},
		}},
		{"connections per address", Config{MaxPeersPerIP: 2}, []step{
			{who: "a", connect: "key=peerjs&id=a&token=ta"},
			{who: "b", connect: "key=peerjs&id=b&token=tb"},
			{who: "c", connect: "key=peerjs&id=c&token=tc", status: http.StatusTooManyRequests},
		}},
		{"bad json", Config{}, []step{
			{who: "a", connect: "key=peerjs&id=a&token=ta"},
			{who: "a", want: `{"type":"OPEN"}`},
			{who: "a", send: `{"type":`},
			{who: "a", want: `{"type":"ERROR","payload":{"msg":"bad message: not a JSON message: unexpected EOF"}}`},
			{who: "a", wantClose: true},
		}},
		{"unknown type", Config{}, []step{
			{who: "a", connect: "key=peerjs&id=a&token=ta"},
			{who: "a", want: `{"type":"OPEN"}`},
			{who: "a", send: `{"type":"OPEN"}`},
			{who: "a", want: `{"type":"ERROR","payload":{"msg":"bad message: unknown message type \"OPEN\""}}`},
			{who: "a", wantClose: true},
		}},
		{"binary frame", Config{}, []step{
			{who: "a", connect: "key=peerjs&id=a&token=ta"},
			{who: "a", want: `{"type":"OPEN"}`},
			{who: "a", sendRaw: []byte{1, 2, 3}},
			{who: "a", want: `{"type":"ERROR","payload":{"msg":"binary frames are not part of the protocol"}}`},
			{who: "a", wantClose: true},
		}},
		{"oversized frame", Config{}, []step{
			{who: "a", connect: "key=peerjs&id=a&token=ta"},
			{who: "a", want: `{"type":"OPEN"}`},
			{who: "a", send: big},
			{who: "a", wantClose: true},
		}},
		{"message rate", Config{MessagesPerSecond: 1}, []step{
			{who: "a", connect: "key=peerjs&id=a&token=ta"},
			{who: "a", want: `{"type":"OPEN"}`},
			{who: "a", send: `{"type":"HEARTBEAT"}`},
			{who: "a", send: `{"type":"HEARTBEAT"}`},
			{who: "a", send: `{"type":"HEARTBEAT"}`},
			{who: "a", want: `{"type":"ERROR","payload":{"msg":"more than the allowed messages per second"}}`},
			{who: "a", wantClose: true},
		}},
		{"idle timeout", Config{IdleTimeout: 200 * time.Millisecond}, []step{
			{who: "a", connect: "key=peerjs&id=a&token=ta"},
			{who: "a", want: `{"type":"OPEN"}`},
			{who: "a", wantClose: true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, base := startServer(t, tt.cfg)
			wsBase := "ws" + strings.TrimPrefix(base, "http") + Path + "/peerjs?"
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			conns := map[string]*websocket.Conn{}
			defer func() {
				for _, c := range conns {
					c.CloseNow()
				}
			}()
			for i, st := range tt.steps {
				switch {
				case st.connect != "":
					c, resp, err := websocket.Dial(ctx, wsBase+st.connect, &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {origin}}})
					if st.status != 0 {
						if err == nil || resp == nil || resp.StatusCode != st.status {
							t.Fatalf("step %d: dial %v, want HTTP %d", i, err, st.status)
						}
						continue
					}
					if err != nil {
						t.Fatalf("step %d: dial: %v", i, err)
					}
					conns[st.who] = c
				case st.send != "" || st.sendRaw != nil:
					typ, b := websocket.MessageText, []byte(st.send)
					if st.sendRaw != nil {
						typ, b = websocket.MessageBinary, st.sendRaw
					}
					if err := conns[st.who].Write(ctx, typ, b); err != nil {
						t.Fatalf("step %d: send: %v", i, err)
					}
				case st.want != "":
					_, b, err := conns[st.who].Read(ctx)
					if err != nil {
						t.Fatalf("step %d: %s read: %v, want %s", i, st.who, err, st.want)
					}
					if !jsonEqual(t, b, st.want) {
						t.Fatalf("step %d: %s got %s, want %s", i, st.who, b, st.want)
					}
				case st.wantClose:
					_, b, err := conns[st.who].Read(ctx)
					if err == nil {
						t.Fatalf("step %d: %s got %s, want the connection closed", i, st.who, b)
					}
					if ctx.Err() != nil {
						t.Fatalf("step %d: %s: not closed within the test's time", i, st.who)
					}
				}
			}
		})
	}
}

func jsonEqual(t *testing.T, got []byte, want string) bool {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		return false
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad expectation %s", want)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	return string(gb) == string(wb)
}

func TestHTTP(t *testing.T) {
	tests := []struct {
		name, method, path, origin string
		want                       int
		cors                       string
		isUUID                     bool
	}{
		{"id with key", "GET", "/peerjs/peerjs/id?ts=1&version=1.5.5", origin, 200, origin, true},
		{"id without key", "GET", "/peerjs/id", origin, 200, origin, true},
		{"id without origin", "GET", "/peerjs/peerjs/id", "", 200, "", true},
		{"id from a foreign origin", "GET", "/peerjs/peerjs/id", "https://evil.example", 403, "", false},
		{"id with another key", "GET", "/peerjs/other/id", origin, 404, origin, false},
		{"peers", "GET", "/peerjs/peerjs/peers", origin, 401, origin, false},
		{"websocket from a foreign origin", "GET", "/peerjs/peerjs?key=peerjs&id=a&token=t", "https://evil.example", 403, "", false},
		{"preflight", "OPTIONS", "/peerjs/peerjs/id", origin, 204, origin, false},
		{"preflight foreign", "OPTIONS", "/peerjs/peerjs/id", "https://evil.example", 403, "", false},
		{"POST", "POST", "/peerjs/peerjs/id", origin, 405, origin, false},
		{"info", "GET", "/peerjs", origin, 200, origin, false},
	}
	_, base := startServer(t, Config{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, base+tt.path, nil)
			if tt.origin != "" {
				req.Header.Set("Origin", tt.origin)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.want, body)
			}
			if got := resp.Header.Get("Access-Control-Allow-Origin"); got != tt.cors {
				t.Errorf("Access-Control-Allow-Origin %q, want %q", got, tt.cors)
			}
			if tt.isUUID {
				if _, err := uuid.Parse(string(body)); err != nil || !ValidID(string(body)) {
					t.Errorf("id %q is not a UUID the client accepts", body)
				}
			}
		})
	}
}

func TestOffWithoutOrigins(t *testing.T) {
	s := New(Config{})
	defer s.Close()
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", "/peerjs/peerjs/id", nil))
	if rec.Code != 404 {
		t.Fatalf("status %d without --web-origin, want 404", rec.Code)
	}
}

// A peer that does not read holds at most QueueBytesPerPeer; what does not
// fit is dropped and the sender hears EXPIRE.
func TestQueueBound(t *testing.T) {
	s := New(Config{QueueBytesPerPeer: 1000})
	defer s.Close()
	slow := &client{id: "slow", wake: make(chan struct{}, 1)}
	sender := &client{id: "a", wake: make(chan struct{}, 1)}
	s.peers["slow"], s.peers["a"] = slow, sender
	m := Message{Type: TypeCandidate, Dst: "slow", Src: "a", Payload: json.RawMessage(`{"c":"` + strings.Repeat("x", 200) + `"}`)}
	for range 10 {
		s.forward(sender, m)
	}
	if slow.queued > 1000 {
		t.Fatalf("slow peer holds %d bytes, bound 1000", slow.queued)
	}
	// Each forwarded frame is 260 bytes:
	// {"type":"CANDIDATE","src":"a","dst":"slow","payload": (51) + the
	// payload (208) + "}", so three fit in 1000.
	if got := s.stats.Forwarded.Load(); got != 3 {
		t.Errorf("forwarded %d, want 3 of 260 bytes in 1000", got)
	}
	if got := s.stats.Dropped.Load(); got != 7 {
		t.Errorf("dropped %d, want 7", got)
	}
	if got := s.Rejected()["peerjs-queue-full"]; got != 7 {
		t.Errorf("queue-full counted %d, want 7", got)
	}
	q := sender.take()
	if len(q) != 7 || !jsonEqual(t, q[0], `{"type":"EXPIRE","src":"slow","dst":"a"}`) {
		t.Fatalf("sender got %d messages (%q), want 7 EXPIREs", len(q), q)
	}
}

// Open sockets, registered or not, are bounded in total: MaxPeers plus a
// tenth (and one), so a full server can still tell newcomers it is full.
func TestOpenSocketsBounded(t *testing.T) {
	s := New(Config{MaxPeers: 20, MaxPeersPerIP: 1000})
	defer s.Close()
	ip := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}) }
	admitted := 0
	for i := range 100 {
		if s.admitIP(ip(i)) {
			admitted++
		}
	}
	if admitted != 23 {
		t.Fatalf("admitted %d sockets, want 20 + 2 + 1", admitted)
	}
	s.releaseIP(ip(0))
	if !s.admitIP(ip(200)) {
		t.Fatal("no room after a socket closed")
	}
}
