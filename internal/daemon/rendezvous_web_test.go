package daemon

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/punchd/punchd/internal/rendezvous"
)

func TestWebHandler(t *testing.T) {
	const game = "https://game.example"
	keyFile := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(keyFile, []byte("0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	turn := &rendezvous.TURNConfig{Secret: "s", UDPPort: 3478, TCPPort: 3478}
	signaling := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(299) })
	tests := []struct {
		name    string
		cfg     RendezvousConfig
		turn    *rendezvous.TURNConfig
		path    string
		auth    string
		want    int
		wantErr bool
	}{
		{"off: credentials", RendezvousConfig{}, turn, "/turn-credentials?username=a", "", 299, false},
		{"off: peerjs", RendezvousConfig{}, turn, "/peerjs/peerjs/id", "", 299, false},
		{"on: credentials", RendezvousConfig{WebOrigins: []string{game}}, turn, "/turn-credentials?username=a", "", 200, false},
		{"on: peerjs", RendezvousConfig{WebOrigins: []string{game}}, turn, "/peerjs/peerjs/id", "", 200, false},
		{"on: our own signaling still there", RendezvousConfig{WebOrigins: []string{game}}, turn, "/v1/ws", "", 299, false},
		{"no TURN: no credentials", RendezvousConfig{WebOrigins: []string{game}}, nil, "/turn-credentials?username=a", "", 404, false},
		{"no TURN: peerjs still", RendezvousConfig{WebOrigins: []string{game}}, nil, "/peerjs/peerjs/id", "", 200, false},
		{"api key file", RendezvousConfig{WebOrigins: []string{game}, WebAPIKeyFile: keyFile}, turn, "/turn-credentials?username=a", "Bearer 0123456789abcdef0123", 200, false},
		{"bad origin", RendezvousConfig{WebOrigins: []string{"game.example"}}, turn, "", "", 0, true},
		{"missing key file", RendezvousConfig{WebOrigins: []string{game}, WebAPIKeyFile: keyFile + ".missing"}, turn, "", "", 0, true},
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			web, err := newWebApps(tt.cfg, signaling, 3478, tt.turn, log)
			if tt.wantErr {
				if err == nil {
					t.Fatal("accepted")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer web.Close()
			req := httptest.NewRequest("GET", "http://r:8478"+tt.path, nil)
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			} else {
				req.Header.Set("Origin", game)
			}
			rec := httptest.NewRecorder()
			web.Handler.ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Fatalf("%s: %d, want %d: %s", tt.path, rec.Code, tt.want, rec.Body.String())
			}
		})
	}
}
