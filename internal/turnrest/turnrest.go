// Package turnrest serves GET /turn-credentials, the TURN REST API of
// draft-uberti-behave-turn-rest, for web apps: a page asks for
// short-lived credentials of the rendezvous' own TURN relay and passes
// the iceServers of the answer to RTCPeerConnection (or to a peerjs
// Peer's config). Only pages of the allowed origins (weborigin), and
// server-side callers holding an API key, get any; every address is
// rate-limited.
package turnrest

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/pion/turn/v5"
	"github.com/punchd/punchd/internal/iplimit"
	"github.com/punchd/punchd/internal/junklog"
	"github.com/punchd/punchd/internal/weborigin"
)

// Path is where the endpoint is mounted.
const Path = "/turn-credentials"

// UserPrefix starts the user part of every credential this endpoint
// issues ("<expiry>:web-<name>"), so the TURN server (and its per-user
// quota) can tell web users from `punchd up` daemons, whose user part is
// their peer ID.
const UserPrefix = "web-"

// MaxNameLen bounds the username a page asks for.
const MaxNameLen = 64

// Config configures the endpoint. Zero values get defaults.
type Config struct {
	// Secret is the TURN server's shared secret.
	Secret string
	// TTL of the credentials; default 10 min. A page fetches new ones
	// when it creates a new peer connection.
	TTL time.Duration
	// Origins may ask from a browser. Empty: the endpoint is off (404).
	Origins *weborigin.Allowlist
	// APIKeys admit callers without an allowed Origin (an app's own
	// server): sent as "Authorization: Bearer KEY" or the draft's
	// key=KEY query parameter.
	APIKeys [][]byte
	// Where the relay is reached: STUN and TURN/UDP ports (usually the
	// same), TURN/TCP and TURN/TLS ports; 0 means not offered.
	STUNPort, UDPPort, TCPPort, TLSPort int
	// Host in the URIs; default: the host the request was sent to.
	Host string
	// Per-address rate: Burst requests at once, then one per Interval;
	// defaults 10 and 6 s. TrackedIPs bounds the table (default 10000).
	Burst      int
	Interval   time.Duration
	TrackedIPs int
	Logger     *slog.Logger
}

func (c *Config) defaults() {
	if c.TTL <= 0 {
		c.TTL = 10 * time.Minute
	}
	if c.Burst <= 0 {
		c.Burst = 10
	}
	if c.Interval <= 0 {
		c.Interval = 6 * time.Second
	}
	if c.TrackedIPs <= 0 {
		c.TrackedIPs = 10000
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Handler serves the endpoint.
type Handler struct {
	cfg   Config
	limit *iplimit.Limiter
	junk  *junklog.Log // refusals, counted by cause and logged at a bounded rate
}

// New returns the handler.
func New(cfg Config) *Handler {
	cfg.defaults()
	return &Handler{cfg: cfg, limit: iplimit.New(cfg.Interval, cfg.Burst, cfg.TrackedIPs), junk: junklog.New(cfg.Logger, 0)}
}

// Response is the answer: the draft's fields plus iceServers in the
// shape of RTCConfiguration.iceServers.
type Response struct {
	Username   string      `json:"username"`
	Password   string      `json:"password"`
	TTL        int64       `json:"ttl"`
	URIs       []string    `json:"uris"`
	ICEServers []ICEServer `json:"iceServers"`
}

// ICEServer is one RTCIceServer.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// ReadAPIKeys reads one key per line (blank lines and # comments
// skipped); keys shorter than 16 bytes are refused: they can be guessed.
func ReadAPIKeys(path string) ([][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read --web-api-key-file: %w", err)
	}
	var keys [][]byte
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if len(line) < 16 {
			return nil, fmt.Errorf("--web-api-key-file %s line %d: key shorter than 16 characters; make one with `openssl rand -hex 24`", path, i+1)
		}
		keys = append(keys, []byte(line))
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("--web-api-key-file %s holds no key", path)
	}
	return keys, nil
}

// ValidName reports whether name may be the user part of a credential:
// 1..MaxNameLen characters of A-Z a-z 0-9 . _ - (no ':', which would
// change what the TURN server takes for the user).
func ValidName(name string) bool {
	if name == "" || len(name) > MaxNameLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Origins.Empty() {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	if h.cfg.Origins.Preflight(w, r, "GET, OPTIONS", "Authorization") {
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET, OPTIONS")
		http.Error(w, "use GET", http.StatusMethodNotAllowed)
		return
	}
	verdict := h.cfg.Origins.Check(w, r)
	keyed := h.apiKeyOK(r)
	if !keyed && verdict != weborigin.Allowed {
		cause := "turn-credentials-foreign-origin"
		if verdict == weborigin.NoOrigin {
			cause = "turn-credentials-no-origin-no-key"
		}
		h.refused(r, cause)
		msg := "origin not allowed: the rendezvous' --web-origin does not list it"
		if verdict == weborigin.NoOrigin {
			msg = "no allowed Origin and no valid API key"
		}
		http.Error(w, msg, http.StatusForbidden)
		return
	}
	if !h.limit.Allow(iplimit.RemoteAddr(r)) {
		h.refused(r, "turn-credentials-rate")
		w.Header().Set("Retry-After", strconv.Itoa(int(h.cfg.Interval/time.Second)+1))
		http.Error(w, "too many credential requests from your address; retry later", http.StatusTooManyRequests)
		return
	}
	q := r.URL.Query()
	if s := q.Get("service"); s != "" && s != "turn" {
		http.Error(w, "service must be turn", http.StatusBadRequest)
		return
	}
	name := q.Get("username")
	if !ValidName(name) {
		http.Error(w, "username must be 1-"+strconv.Itoa(MaxNameLen)+" characters of A-Z a-z 0-9 . _ -", http.StatusBadRequest)
		return
	}
	resp, err := h.credentials(name, h.host(r))
	if err != nil {
		h.cfg.Logger.Error("make TURN credentials", "err", err)
		http.Error(w, "cannot make credentials", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

func (h *Handler) refused(r *http.Request, cause string) {
	h.junk.Drop(cause, "TURN credentials refused", "remote", r.RemoteAddr, "origin", r.Header.Get("Origin"))
}

// Rejected counts refused requests by cause (turn-credentials-…).
func (h *Handler) Rejected() map[string]uint64 { return h.junk.Counts() }

// apiKeyOK compares the presented key with every configured one in
// constant time (the loop does not stop at a match).
func (h *Handler) apiKeyOK(r *http.Request) bool {
	if len(h.cfg.APIKeys) == 0 {
		return false
	}
	key := r.URL.Query().Get("key")
	if auth := r.Header.Get("Authorization"); auth != "" {
		if k, ok := strings.CutPrefix(auth, "Bearer "); ok {
			key = k
		}
	}
	if key == "" {
		return false
	}
	ok := 0
	for _, k := range h.cfg.APIKeys {
		ok |= subtle.ConstantTimeCompare(k, []byte(key))
	}
	return ok == 1
}

func (h *Handler) host(r *http.Request) string {
	if h.cfg.Host != "" {
		return h.cfg.Host
	}
	if host, _, err := net.SplitHostPort(r.Host); err == nil {
		return host
	}
	return r.Host
}

var errNoRelay = errors.New("no TURN port configured")

func (h *Handler) credentials(name, host string) (Response, error) {
	c := h.cfg
	if c.UDPPort == 0 && c.TCPPort == 0 && c.TLSPort == 0 {
		return Response{}, errNoRelay
	}
	user, pass, err := turn.GenerateLongTermTURNRESTCredentials(c.Secret, UserPrefix+name, c.TTL)
	if err != nil {
		return Response{}, err
	}
	hp := func(port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }
	var uris []string
	if c.UDPPort > 0 {
		uris = append(uris, "turn:"+hp(c.UDPPort)+"?transport=udp")
	}
	if c.TCPPort > 0 {
		uris = append(uris, "turn:"+hp(c.TCPPort)+"?transport=tcp")
	}
	if c.TLSPort > 0 {
		uris = append(uris, "turns:"+hp(c.TLSPort)+"?transport=tcp")
	}
	resp := Response{Username: user, Password: pass, TTL: int64(c.TTL / time.Second), URIs: uris}
	if c.STUNPort > 0 {
		resp.ICEServers = append(resp.ICEServers, ICEServer{URLs: []string{"stun:" + hp(c.STUNPort)}})
	}
	resp.ICEServers = append(resp.ICEServers, ICEServer{URLs: uris, Username: user, Credential: pass})
	return resp, nil
}
