package scenario

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/punchd/punchd/internal/lab"
	"github.com/punchd/punchd/internal/metrics/metricstest"
)

// TestMetricsEndpoint: a real `punchd up --metrics-listen` with a live
// tunnel exports its peer's state, path, bytes, handshake age, ICE
// attempts and path changes, in a form Prometheus' own parser reads.
func TestMetricsEndpoint(t *testing.T) {
	lab.RequireRoot(t)
	const metricsAddr = "127.0.0.1:9478" // each daemon has its own namespace
	opts := Options{NATA: lab.NATPortRestricted, NATB: lab.NATPortRestricted, Binary: punchdBinary, Dir: t.TempDir(),
		UpArgs: []string{"--metrics-listen", metricsAddr}}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	pingCtx, cancelPing := context.WithTimeout(ctx, 30*time.Second)
	_, err = FirstPing(pingCtx, r.A.Host, r.B.Overlay4, 20*time.Millisecond)
	cancelPing()
	if err != nil {
		t.Fatalf("A -> B over the overlay: %v\n%s", err, r.Logs())
	}
	// Dial from inside A's namespace, where the daemon listens.
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := r.A.Host.Do(func() (err error) {
				c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		}}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatalf("scrape A: %v", err)
	}
	defer resp.Body.Close()
	fams, err := metricstest.Parse(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	peer := r.B.ID.String()
	checks := []struct {
		name   string
		labels map[string]string
		ok     func(float64) bool
		want   string
	}{
		{"punchd_peer_state", map[string]string{"peer": peer, "state": "connected"}, func(v float64) bool { return v == 1 }, "1"},
		{"punchd_peer_path", map[string]string{"peer": peer, "path": "direct"}, func(v float64) bool { return v == 1 }, "1"},
		{"punchd_peer_receive_bytes_total", map[string]string{"peer": peer}, func(v float64) bool { return v > 0 }, "> 0"},
		{"punchd_peer_transmit_bytes_total", map[string]string{"peer": peer}, func(v float64) bool { return v > 0 }, "> 0"},
		{"punchd_peer_handshake_age_seconds", map[string]string{"peer": peer}, func(v float64) bool { return v >= 0 && v < 120 }, "0..120"},
		{"punchd_peer_ice_attempts_total", map[string]string{"peer": peer}, func(v float64) bool { return v >= 1 }, ">= 1"},
		{"punchd_peer_path_changes_total", map[string]string{"peer": peer}, func(v float64) bool { return v >= 1 }, ">= 1"},
		{"punchd_rendezvous_connected", nil, func(v float64) bool { return v == 1 }, "1"},
	}
	for _, c := range checks {
		v, found := fams.Value(c.name, c.labels)
		if !found || !c.ok(v) {
			t.Errorf("%s%v = %v (found %v), want %s", c.name, c.labels, v, found, c.want)
		}
	}
}
