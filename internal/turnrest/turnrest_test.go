package turnrest

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/punchd/punchd/internal/weborigin"
)

const testKey = "0123456789abcdef0123"

func newTestHandler(t *testing.T, origins []string, keys ...string) *Handler {
	t.Helper()
	al, err := weborigin.Parse(origins)
	if err != nil {
		t.Fatal(err)
	}
	var ks [][]byte
	for _, k := range keys {
		ks = append(ks, []byte(k))
	}
	return New(Config{Secret: "s3cret", Origins: al, APIKeys: ks, STUNPort: 3478, UDPPort: 3478, TCPPort: 3478, TLSPort: 5349, Burst: 100})
}

func TestRequests(t *testing.T) {
	const game = "https://game.example"
	tests := []struct {
		name    string
		origins []string
		method  string
		origin  string
		query   string
		auth    string
		want    int
		cors    string // Access-Control-Allow-Origin expected
	}{
		{"allowed origin", []string{game}, "GET", game, "service=turn&username=alice", "", 200, game},
		{"allowed origin, default port spelled out", []string{game}, "GET", "https://game.example:443", "username=alice", "", 200, "https://game.example:443"},
		{"allowed origin, upper case", []string{game}, "GET", "https://GAME.example", "username=alice", "", 200, "https://GAME.example"},
		{"foreign origin", []string{game}, "GET", "https://evil.example", "username=alice", "", 403, ""},
		{"same host, other scheme", []string{game}, "GET", "http://game.example", "username=alice", "", 403, ""},
		{"same host, other port", []string{game}, "GET", "https://game.example:8443", "username=alice", "", 403, ""},
		{"null origin", []string{game}, "GET", "null", "username=alice", "", 403, ""},
		{"no origin, no key", []string{game}, "GET", "", "username=alice", "", 403, ""},
		{"no origin, bearer key", []string{game}, "GET", "", "username=alice", "Bearer " + testKey, 200, ""},
		{"no origin, query key", []string{game}, "GET", "", "username=alice&key=" + testKey, "", 200, ""},
		{"no origin, wrong key", []string{game}, "GET", "", "username=alice", "Bearer " + testKey + "x", 403, ""},
		{"no origin, key prefix", []string{game}, "GET", "", "username=alice", "Bearer " + testKey[:10], 403, ""},
		{"foreign origin with key", []string{game}, "GET", "https://evil.example", "username=alice", "Bearer " + testKey, 200, ""},
		{"endpoint off without origins", nil, "GET", game, "username=alice", "Bearer " + testKey, 404, ""},
		{"POST", []string{game}, "POST", game, "username=alice", "", 405, ""},
		{"preflight allowed", []string{game}, "OPTIONS", game, "", "", 204, game},
		{"preflight foreign", []string{game}, "OPTIONS", "https://evil.example", "", "", 403, ""},
		{"no username", []string{game}, "GET", game, "service=turn", "", 400, game},
		{"username with colon", []string{game}, "GET", game, "username=a:b", "", 400, game},
		{"username too long", []string{game}, "GET", game, "username=" + strings.Repeat("a", 65), "", 400, game},
		{"username longest", []string{game}, "GET", game, "username=" + strings.Repeat("a", 64), "", 200, game},
		{"username space", []string{game}, "GET", game, "username=a%20b", "", 400, game},
		{"other service", []string{game}, "GET", game, "service=stun&username=alice", "", 400, game},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newTestHandler(t, tt.origins, testKey)
			req := httptest.NewRequest(tt.method, "http://rdv.example:8478/turn-credentials?"+tt.query, nil)
			if tt.origin != "" {
				req.Header.Set("Origin", tt.origin)
			}
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.want, rec.Body.String())
			}
			if got := rec.Header().Get("Access-Control-Allow-Origin"); got != tt.cors {
				t.Errorf("Access-Control-Allow-Origin %q, want %q", got, tt.cors)
			}
			if rec.Code != 200 && strings.Contains(rec.Body.String(), "password") {
				t.Errorf("refused answer carries credentials: %s", rec.Body.String())
			}
			if tt.method == "OPTIONS" && rec.Code == 204 && !strings.Contains(rec.Header().Get("Access-Control-Allow-Methods"), "GET") {
				t.Errorf("preflight allows methods %q", rec.Header().Get("Access-Control-Allow-Methods"))
			}
		})
	}
}

func TestResponse(t *testing.T) {
	h := newTestHandler(t, []string{"https://game.example"})
	req := httptest.NewRequest("GET", "http://198.18.0.1:8478/turn-credentials?service=turn&username=alice", nil)
	req.Header.Set("Origin", "https://game.example")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body.String())
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q: credentials must not be cached", cc)
	}
	var resp struct {
		Username   string   `json:"username"`
		Password   string   `json:"password"`
		TTL        int      `json:"ttl"`
		URIs       []string `json:"uris"`
		ICEServers []struct {
			URLs       []string `json:"urls"`
			Username   string   `json:"username"`
			Credential string   `json:"credential"`
		} `json:"iceServers"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	expiry, user, ok := strings.Cut(resp.Username, ":")
	if !ok || user != "web-alice" {
		t.Fatalf("username %q is not <expiry>:web-alice", resp.Username)
	}
	exp, _ := strconv.ParseInt(expiry, 10, 64)
	if d := time.Until(time.Unix(exp, 0)); d > 10*time.Minute || d < 9*time.Minute {
		t.Errorf("expiry %s ahead, want the 10 min default", d)
	}
	if resp.TTL != 600 {
		t.Errorf("ttl %d, want 600", resp.TTL)
	}
	mac := hmac.New(sha1.New, []byte("s3cret"))
	mac.Write([]byte(resp.Username))
	if resp.Password != base64.StdEncoding.EncodeToString(mac.Sum(nil)) {
		t.Error("password is not base64(HMAC-SHA1(secret, username))")
	}
	wantURIs := []string{"turn:198.18.0.1:3478?transport=udp", "turn:198.18.0.1:3478?transport=tcp", "turns:198.18.0.1:5349?transport=tcp"}
	if strings.Join(resp.URIs, " ") != strings.Join(wantURIs, " ") {
		t.Errorf("uris %v, want %v", resp.URIs, wantURIs)
	}
	if len(resp.ICEServers) != 2 || strings.Join(resp.ICEServers[0].URLs, " ") != "stun:198.18.0.1:3478" || resp.ICEServers[0].Username != "" {
		t.Fatalf("iceServers[0] %+v, want the STUN server without credentials", resp.ICEServers)
	}
	if s := resp.ICEServers[1]; strings.Join(s.URLs, " ") != strings.Join(wantURIs, " ") || s.Username != resp.Username || s.Credential != resp.Password {
		t.Errorf("iceServers[1] %+v, want the TURN URIs with the credentials", s)
	}
}

func TestRateLimitPerIP(t *testing.T) {
	al, _ := weborigin.Parse([]string{"https://game.example"})
	h := New(Config{Secret: "s", Origins: al, UDPPort: 3478, Burst: 3, Interval: time.Hour})
	get := func(remote string) int {
		req := httptest.NewRequest("GET", "http://r/turn-credentials?username=a", nil)
		req.Header.Set("Origin", "https://game.example")
		req.RemoteAddr = remote
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	var got []int
	for range 4 {
		got = append(got, get("198.18.0.7:5000"))
	}
	if got[0] != 200 || got[2] != 200 || got[3] != http.StatusTooManyRequests {
		t.Fatalf("statuses %v, want 200 200 200 429", got)
	}
	if c := get("198.18.0.8:5000"); c != 200 {
		t.Fatalf("another address got %d", c)
	}
	if n := h.Rejected()["turn-credentials-rate"]; n != 1 {
		t.Fatalf("rate refusals counted %d, want 1", n)
	}
}

func TestReadAPIKeys(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, content string
		keys          int
		err           bool
	}{
		{"two keys and a comment", "# app servers\n" + testKey + "\n\n" + testKey + "b\n", 2, false},
		{"short key", "short\n", 0, true},
		{"empty", "\n# nothing\n", 0, true},
	}
	for i, tt := range tests {
		p := filepath.Join(dir, strconv.Itoa(i))
		if err := os.WriteFile(p, []byte(tt.content), 0o600); err != nil {
			t.Fatal(err)
		}
		keys, err := ReadAPIKeys(p)
		if (err != nil) != tt.err || len(keys) != tt.keys {
			t.Errorf("%s: %d keys, err %v", tt.name, len(keys), err)
		}
	}
	if _, err := ReadAPIKeys(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file accepted")
	}
}
