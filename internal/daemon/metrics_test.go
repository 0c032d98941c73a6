package daemon

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/punchd/punchd/internal/identity"
	"github.com/punchd/punchd/internal/metrics/metricstest"
	"github.com/punchd/punchd/internal/rvclient"
)

func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// A real `punchd rendezvous` with --metrics-listen: a registered peer shows
// in punchd_rendezvous_peers_online, as Prometheus' parser reads it.
func TestRendezvousMetricsEndpoint(t *testing.T) {
	metricsAddr := freeLoopbackAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ready := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- RunRendezvous(ctx, RendezvousConfig{
			Listen: "127.0.0.1:0", MetricsListen: metricsAddr, NoTURN: true,
			Logger: slog.New(slog.DiscardHandler), Ready: func(a net.Addr) { ready <- a },
		})
	}()
	var signal net.Addr
	select {
	case signal = <-ready:
	case err := <-done:
		t.Fatal(err)
	}
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	key, err := identity.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	c, err := rvclient.Connect(ctx, rvclient.ClientConfig{URL: "http://" + signal.String(), Key: key, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+metricsAddr+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	fams, err := metricstest.Parse(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := fams.Value("punchd_rendezvous_peers_online", nil); !ok || v != 1 {
		t.Fatalf("peers online: %v (found %v), want 1", v, ok)
	}
}
