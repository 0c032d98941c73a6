package webrtclab

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pion/turn/v5"

	"github.com/punchd/punchd/internal/lab"
	"github.com/punchd/punchd/internal/turnrest"
)

const labSecret = "webrtc-lab-secret"

// setup builds punchd, installs the peerjs client and starts the lab, or
// skips with the reason.
func setup(t *testing.T, nats ...lab.NATType) *Lab {
	t.Helper()
	if testing.Short() {
		t.Skip("browser lab test: skipped with -short")
	}
	lab.RequireRoot(t)
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("browser lab test needs Debian's chromium: run `make test` as root (scripts/lab-deps.sh installs it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	bundle, err := InstallPeerJS(ctx, CacheDir())
	if err != nil {
		t.Skipf("browser lab test needs the peerjs client from npm: %v", err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "punchd")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/punchd/punchd/cmd/punchd").CombinedOutput(); err != nil {
		t.Fatalf("build punchd: %v\n%s", err, out)
	}
	l, err := Start(ctx, Options{Punchd: bin, Chromium: chromium, PeerJS: bundle, Dir: dir, NATs: nats,
		RendezvousArgs: []string{"--turn-secret", labSecret}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("rendezvous log:\n%s", l.RendezvousLog())
			logs, _ := filepath.Glob(filepath.Join(dir, "chromium-*.log"))
			for _, p := range logs {
				b, _ := os.ReadFile(p)
				t.Logf("%s:\n%s", filepath.Base(p), lastLines(string(b), 30))
			}
		}
		l.Close()
	})
	return l
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestPeerJSAcrossNATs is issue 11's acceptance test: two headless
// Chromium pages with the npm peerjs client, each behind its own NAT,
// whose only servers are one `punchd rendezvous` (signaling at /peerjs,
// credentials from /turn-credentials). Behind symmetric NATs the data
// channel opens through the embedded TURN (also over TCP with a relay-only
// policy) and never with STUN alone, which is the failure punchd started
// from; behind port-restricted NATs it opens directly.
func TestPeerJSAcrossNATs(t *testing.T) {
	l := setup(t, lab.NATSymmetric, lab.NATPortRestricted)
	tests := []struct {
		name   string
		c      Case
		opens  bool
		relay  bool   // the selected pair has a relay candidate
		relayP string // and the local one is relayed over this transport
	}{
		{"symmetric, STUN and TURN", Case{NAT: lab.NATSymmetric, ICE: "turn"}, true, true, ""},
		{"symmetric, STUN only", Case{NAT: lab.NATSymmetric, ICE: "stun", Wait: 8 * time.Second}, false, false, ""},
		{"symmetric, TURN over TCP only, relay policy", Case{NAT: lab.NATSymmetric, ICE: "relay-tcp"}, true, true, "tcp"},
		{"port-restricted, STUN and TURN", Case{NAT: lab.NATPortRestricted, ICE: "turn"}, true, false, ""},
	}
	for _, tt := range tests {
		t.Run(strings.ReplaceAll(tt.name, " ", "_"), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			r, err := l.Run(ctx, tt.c)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("opened %v in %.0f ms, ICE %s, pair %s", r.Opened, r.OpenMs, r.ICEState, r.Pair)
			if r.Opened != tt.opens {
				t.Fatalf("data channel opened = %v, want %v (ICE state %q)", r.Opened, tt.opens, r.ICEState)
			}
			if !tt.opens {
				return
			}
			if !r.Echo {
				t.Fatal("no echo")
			}
			if r.Pair == nil {
				t.Fatal("getStats() has no selected candidate pair")
			}
			if r.Pair.Relayed() != tt.relay {
				t.Fatalf("selected pair %s: relayed = %v, want %v", r.Pair, r.Pair.Relayed(), tt.relay)
			}
			if tt.relay && (r.Pair.Local.Type != "relay" && r.Pair.Remote.Type != "relay") {
				t.Fatalf("selected pair %s has no relay candidate", r.Pair)
			}
			if tt.relayP != "" && (r.Pair.Local.Type != "relay" || r.Pair.Local.RelayProtocol != tt.relayP) {
				t.Fatalf("local candidate %s, want a relay reached over %s", r.Pair.Local, tt.relayP)
			}
			if !tt.relay && (r.Pair.Local.Type == "host" || r.Pair.Remote.Type == "host") {
				// Both pages are behind NATs: a direct pair is made of
				// their public mappings (srflx/prflx), never host addresses.
				t.Fatalf("selected pair %s uses a host candidate across two NATs", r.Pair)
			}
		})
	}

	t.Run("allocations_logged", func(t *testing.T) {
		// The pages' allocations, over UDP and (relay-tcp) TCP, each an
		// info line naming the web user and the relay address.
		var udp, tcp bool
		for _, line := range strings.Split(l.RendezvousLog(), "\n") {
			if !strings.Contains(line, `msg="TURN allocation"`) || !strings.Contains(line, "user=web-") || !strings.Contains(line, "relay="+l.R.Addr.String()+":") {
				continue
			}
			udp = udp || strings.Contains(line, "transport=UDP")
			tcp = tcp || strings.Contains(line, "transport=TCP")
		}
		if !udp || !tcp {
			t.Fatalf("allocation lines over UDP %v, TCP %v; want both", udp, tcp)
		}
	})

	t.Run("foreign_origin", func(t *testing.T) {
		for _, path := range []string{"/turn-credentials?service=turn&username=x", "/peerjs/peerjs/id"} {
			code, body := l.get(t, l.pairs[lab.NATSymmetric][0], path, "http://evil.example")
			if code != http.StatusForbidden || strings.Contains(body, "password") {
				t.Errorf("%s from a foreign origin: %d %q, want 403 without credentials", path, code, body)
			}
		}
	})

	t.Run("expired_credentials_refused_by_TURN", func(t *testing.T) {
		h := l.pairs[lab.NATSymmetric][0]
		code, body := l.get(t, h, "/turn-credentials?service=turn&username=fresh", l.PageOrigin())
		var fresh turnrest.Response
		if code != 200 || json.Unmarshal([]byte(body), &fresh) != nil {
			t.Fatalf("fresh credentials: %d %s", code, body)
		}
		// The same secret, the same user part, an expiry in the past.
		user, pass, err := turn.GenerateLongTermTURNRESTCredentials(labSecret, turnrest.UserPrefix+"stale", -time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.allocate(h, fresh.Username, fresh.Password); err != nil {
			t.Fatalf("fresh credentials refused (the test cannot tell expiry from anything else): %v", err)
		}
		if err := l.allocate(h, user, pass); err == nil {
			t.Fatal("the TURN server granted an allocation with expired credentials")
		}
	})
}

// get does an HTTP GET of the rendezvous from inside h's namespace. The
// connection is dialed on Do's thread: net/http would dial from another
// goroutine, in the test's own namespace.
func (l *Lab) get(t *testing.T, h *lab.Host, path, origin string) (int, string) {
	t.Helper()
	var code int
	var body string
	err := h.Do(func() error {
		conn, err := net.DialTimeout("tcp", net.JoinHostPort(l.R.Addr.String(), fmt.Sprint(signalPort)), 5*time.Second)
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		req, _ := http.NewRequest("GET", l.RendezvousURL()+path, nil)
		req.Header.Set("Origin", origin)
		req.Close = true
		if err := req.Write(conn); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		code, body = resp.StatusCode, string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return code, body
}

// allocate asks the rendezvous' TURN server for a UDP allocation from
// inside h's namespace.
func (l *Lab) allocate(h *lab.Host, user, pass string) error {
	return h.Do(func() error {
		conn, err := net.ListenPacket("udp4", "0.0.0.0:0")
		if err != nil {
			return err
		}
		defer conn.Close()
		server := net.JoinHostPort(l.R.Addr.String(), fmt.Sprint(stunPort))
		c, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: server, TURNServerAddr: server, Conn: conn, Username: user, Password: pass, RTO: 200 * time.Millisecond})
		if err != nil {
			return err
		}
		defer c.Close()
		if err := c.Listen(); err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		relay, err := c.AllocateWithContext(ctx)
		if err != nil {
			return err
		}
		return relay.Close()
	})
}
