package metrics

import (
	"context"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/punchd/punchd/internal/metrics/metricstest"
)

// scrape serves reg on loopback, fetches /metrics like Prometheus would and
// parses it with Prometheus' own text parser.
func scrape(t *testing.T, reg *prometheus.Registry) metricstest.Families {
	t.Helper()
	addr, stop, err := Serve("127.0.0.1:0", reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	defer stop() // idempotent
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr.String()+"/metrics", nil)
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %s", resp.Status)
	}
	fams, err := metricstest.Parse(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

func TestDaemonMetrics(t *testing.T) {
	hs := time.Now().Add(-90 * time.Second)
	reg := NewDaemonRegistry(func() DaemonSample {
		return DaemonSample{
			Peers: []PeerSample{
				{ID: "peerA", Alias: "alice", State: "connected", Path: "direct", RxBytes: 1000, TxBytes: 2000, LastHandshake: hs, ICEAttempts: 2, PathChanges: 3,
					BirthdayAttempts: 4, BirthdayHits: 1, BirthdayProbes: 900},
				{ID: "peerB", State: "checking", Path: "none"},
				{ID: "peerC", State: "connected", Path: "relay", Relay: "member", RelayVia: "carol"},
				{ID: "peerD", State: "connected", Path: "relay", Relay: "turn"},
			},
			RendezvousConnected: true,
			SignalingRefused:    map[string]uint64{"unknown-sender": 7, "replay": 1},
			RelayQueueDrops:     5,
		}
	})
	fams := scrape(t, reg)
	a := map[string]string{"peer": "peerA", "alias": "alice"}
	with := func(m map[string]string, k, v string) map[string]string {
		out := map[string]string{k: v}
		for kk, vv := range m {
			out[kk] = vv
		}
		return out
	}
	b := map[string]string{"peer": "peerB", "alias": ""}
	pc := map[string]string{"peer": "peerC"}
	pd := map[string]string{"peer": "peerD"}
	cases := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"punchd_peer_state", with(a, "state", "connected"), 1},
		{"punchd_peer_state", with(a, "state", "checking"), 0},
		{"punchd_peer_state", with(b, "state", "checking"), 1},
		{"punchd_peer_path", with(a, "path", "direct"), 1},
		{"punchd_peer_path", with(a, "path", "relay"), 0},
		{"punchd_peer_path", with(b, "path", "none"), 1},
		{"punchd_peer_receive_bytes_total", a, 1000},
		{"punchd_peer_transmit_bytes_total", a, 2000},
		{"punchd_peer_ice_attempts_total", a, 2},
		{"punchd_peer_path_changes_total", a, 3},
		{"punchd_peer_birthday_attempts_total", a, 4},
		{"punchd_peer_birthday_hits_total", a, 1},
		{"punchd_peer_birthday_probes_total", a, 900},
		{"punchd_peer_birthday_attempts_total", b, 0},
		{"punchd_peer_relay", with(a, "relay", "turn"), 0},
		{"punchd_peer_relay", with(a, "relay", "member"), 0},
		{"punchd_peer_relay", with(pc, "relay", "member"), 1},
		{"punchd_peer_relay", with(pc, "relay", "turn"), 0},
		{"punchd_peer_relay_via_info", with(pc, "via", "carol"), 1},
		{"punchd_peer_relay", with(pd, "relay", "turn"), 1},
		{"punchd_peer_relay", with(pd, "relay", "member"), 0},
		{"punchd_rendezvous_connected", nil, 1},
		{"punchd_signaling_refused_total", map[string]string{"cause": "unknown-sender"}, 7},
		{"punchd_signaling_refused_total", map[string]string{"cause": "replay"}, 1},
		{"punchd_queue_drops_total", map[string]string{"queue": "relay"}, 5},
		{"punchd_queue_drops_total", map[string]string{"queue": "stun"}, 0},
	}
	for _, c := range cases {
		got, ok := fams.Value(c.name, c.labels)
		if !ok || got != c.want {
			t.Errorf("%s%v = %v (found %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	if age, ok := fams.Value("punchd_peer_handshake_age_seconds", a); !ok || age < 89 || age > 120 {
		t.Errorf("handshake age %v (found %v), want about 90 s", age, ok)
	}
	if _, ok := fams.Value("punchd_peer_handshake_age_seconds", b); ok {
		t.Error("handshake age for a peer that never shook hands")
	}
	if _, ok := fams.Value("punchd_peer_relay_via_info", pd); ok {
		t.Error("relay via for a peer relayed by TURN")
	}
	if _, ok := fams["go_goroutines"]; !ok {
		t.Error("no Go runtime metrics")
	}
}

func TestRendezvousMetrics(t *testing.T) {
	fams := scrape(t, NewRendezvousRegistry(func() RendezvousSample {
		return RendezvousSample{Online: 42, FramesDropped: 9, Rejected: map[string]uint64{"auth-failed": 3}, TURNAllocations: 5, TURNAllocationsTotal: 17, PeerJSOnline: 4,
			FramesIn: 100, FramesOut: 120, RelayedToPeers: 3000, RelayedFromPeers: 2500}
	}))
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"punchd_rendezvous_peers_online", nil, 42},
		{"punchd_rendezvous_frames_dropped_total", nil, 9},
		{"punchd_rendezvous_rejected_total", map[string]string{"cause": "auth-failed"}, 3},
		{"punchd_rendezvous_turn_allocations", nil, 5},
		{"punchd_rendezvous_turn_allocations_total", nil, 17},
		{"punchd_rendezvous_peerjs_online", nil, 4},
		{"punchd_rendezvous_frames_total", map[string]string{"direction": "in"}, 100},
		{"punchd_rendezvous_frames_total", map[string]string{"direction": "out"}, 120},
		{"punchd_rendezvous_turn_relayed_bytes_total", map[string]string{"direction": "to_peer"}, 3000},
		{"punchd_rendezvous_turn_relayed_bytes_total", map[string]string{"direction": "from_peer"}, 2500},
	} {
		if got, ok := fams.Value(c.name, c.labels); !ok || got != c.want {
			t.Errorf("%s%v = %v (found %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
}

func TestServeBadAddress(t *testing.T) {
	if _, _, err := Serve("256.0.0.1:1", prometheus.NewRegistry(), nil); err == nil {
		t.Fatal("bad address accepted")
	}
}
