package rendezvous

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/punchd/punchd/internal/rvclient"
	"github.com/punchd/punchd/internal/signalwire"
)

// dialForChallenge opens a raw WebSocket to s and reads its challenge.
func dialForChallenge(t *testing.T, s *testServer) (context.Context, *websocket.Conn, signalwire.Frame) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	conn, _, err := websocket.Dial(ctx, strings.Replace(s.url(), "http", "ws", 1)+"/v1/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.CloseNow() })
	f, err := readFrame(ctx, conn)
	if err != nil || f.Type != signalwire.TypeChallenge {
		t.Fatalf("challenge: %+v %v", f, err)
	}
	return ctx, conn, f
}

// A punchd of frame version 1 (NaCl box registration and sealing) and one
// of version 2 (Noise) must not half-talk: each side stops at the first
// frame with an error that says to upgrade.
func TestVersionMismatchIsRefusedClearly(t *testing.T) {
	t.Run("old client, new server", func(t *testing.T) {
		s := startServer(t, "127.0.0.1:0", ServerConfig{})
		ctx, conn, _ := dialForChallenge(t, s)
		old := `{"v":1,"type":"register","id":"` + newKey(t).PublicKey().String() + `","proof":"AAAA"}`
		if err := conn.Write(ctx, websocket.MessageText, []byte(old)); err != nil {
			t.Fatal(err)
		}
		f, err := readFrame(ctx, conn)
		if err != nil || f.Type != signalwire.TypeError || f.Code != signalwire.CodeVersion || !strings.Contains(f.Message, "upgrade") {
			t.Fatalf("want a version error saying what to upgrade, got %+v %v", f, err)
		}
		if s.srv.Online() != 0 {
			t.Fatal("version 1 client registered")
		}
	})
	t.Run("new client, old server", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		old := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			conn, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			defer conn.CloseNow()
			_ = conn.Write(r.Context(), websocket.MessageText,
				[]byte(`{"v":1,"type":"challenge","server_key":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","nonce":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}`))
			_, _, _ = conn.Read(r.Context())
		})}
		go old.Serve(ln)
		defer old.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = rvclient.Connect(ctx, rvclient.ClientConfig{URL: "http://" + ln.Addr().String(), Key: newKey(t)})
		if err == nil || !strings.Contains(err.Error(), "frame version 1, this side speaks 2") || !strings.Contains(err.Error(), "upgrade the other side") {
			t.Fatalf("want a clear version error, got %v", err)
		}
	})
}
