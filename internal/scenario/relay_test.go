package scenario

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/punchd/punchd/internal/lab"
)

// Relays other than the default: Debian's coturn as an external relay with
// use-auth-secret (interop), and punchd's own relay over TLS when UDP is
// blocked and TURN over TCP is out of reach.
func TestRelayVariants(t *testing.T) {
	lab.RequireRoot(t)
	tests := []struct {
		name string
		opts Options
		// host whose own relay must carry the path (A or B)
		relayOnA bool
	}{
		{"coturn", Options{NATA: lab.NATSymmetric, NATB: lab.NATSymmetric, Relay: "coturn"}, false},
		{"tls", Options{NATA: lab.NATUDPBlocked, NATB: lab.NATPortRestricted, Relay: "tls"}, true},
		// Signaling and TURN over TLS on port 443 alone, for a host
		// behind a firewall that passes nothing else.
		{"443", Options{NATA: lab.NATHTTPSOnly, NATB: lab.NATPortRestricted, Relay: "443"}, true},
		// coturn offering TLS only, both sides UDP-blocked: relay to relay
		// over TLS through a third-party server.
		{"coturn-tls", Options{NATA: lab.NATUDPBlocked, NATB: lab.NATUDPBlocked, Relay: "coturn-tls"}, true},
		// --force-relay relays even where a direct path is trivial.
		{"forced", Options{NATA: lab.NATNone, NATB: lab.NATNone, UpArgs: []string{"--force-relay"}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if strings.HasPrefix(tt.opts.Relay, "coturn") {
				if _, err := exec.LookPath("turnserver"); err != nil {
					t.Skip("coturn not installed (make test as root installs it)")
				}
			}
			opts := tt.opts
			opts.Binary, opts.Dir = punchdBinary, t.TempDir()
			startCtx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			r, err := Start(startCtx, opts)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close() })
			ctx, stop := r.Watch(startCtx)
			defer stop()
			pingCtx, cancelPing := context.WithTimeout(ctx, 30*time.Second)
			at, err := FirstPing(pingCtx, r.A.Host, r.B.Overlay4, 10*time.Millisecond)
			cancelPing()
			if err != nil {
				t.Fatalf("no ping through the %s relay: %v\n%s", tt.name, err, r.Logs())
			}
			t.Logf("%s: first ping after %s", tt.name, at.Sub(r.Started).Round(time.Millisecond))
			if _, err := Transfer(ctx, r.A.Host, r.B.Host, r.B.Overlay4, 4<<20); err != nil {
				t.Fatalf("transfer: %v\n%s", err, r.Logs())
			}
			st, err := r.Status(ctx, r.A)
			if err != nil {
				t.Fatal(err)
			}
			p := st.Peers[0]
			if p.Path != "relay" || !strings.HasPrefix(p.Relay, r.RelayIP().String()+":") {
				t.Fatalf("A: path %s via %q, want relay via %s (%+v)", p.Path, p.Relay, r.RelayIP(), p)
			}
			if tt.relayOnA && (p.LocalCandidate == nil || p.LocalCandidate.Type != "relay") {
				t.Fatalf("A (UDP blocked) must hold the relay itself, over TLS: local %+v", p.LocalCandidate)
			}
			if tt.relayOnA && tt.opts.NATA == lab.NATUDPBlocked && p.LocalCandidate.RelayProtocol != "tls" {
				t.Fatalf("A (UDP blocked) reaches its relay over %q, want tls", p.LocalCandidate.RelayProtocol)
			}
			if tt.opts.Relay == "443" {
				if p.LocalCandidate.RelayProtocol != "tls" {
					t.Fatalf("A (https-only) reaches its relay over %q, want tls (%+v)", p.LocalCandidate.RelayProtocol, p.LocalCandidate)
				}
				untrustedCA(ctx, t, r)
			}
			out, err := r.Ping(ctx, r.A, r.B, 2)
			if err != nil || strings.Count(out, " via relay (") != 2 || !strings.Contains(out, " relay "+r.RelayIP().String()+":") {
				t.Fatalf("punchd ping B from A: want 2 replies via relay %s, got (%v):\n%s", r.RelayIP(), err, out)
			}
		})
	}
}

// untrustedCA: without the lab's CA (no SSL_CERT_FILE) a daemon refuses
// the rendezvous and says how to trust a private CA. Run on B's host, on
// another interface and state directory than B's daemon.
func untrustedCA(ctx context.Context, t *testing.T, r *Run) {
	t.Helper()
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	cmd := r.B.Host.Command(cctx, punchdBinary, "up", "--rendezvous", r.rvURL, "--peer", r.A.ID.String(),
		"--interface", "punch9", "--state-dir", t.TempDir())
	cmd.Env = withoutEnv(os.Environ(), "SSL_CERT_FILE")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "not trusted") || !strings.Contains(string(out), "SSL_CERT_FILE") {
		t.Fatalf("punchd up without the lab CA: want a certificate error naming SSL_CERT_FILE, got %v:\n%s", err, out)
	}
}

func withoutEnv(env []string, name string) []string {
	var out []string
	for _, e := range env {
		if !strings.HasPrefix(e, name+"=") {
			out = append(out, e)
		}
	}
	return out
}
