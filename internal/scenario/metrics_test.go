package scenario

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/punchd/punchd/internal/lab"
	"github.com/punchd/punchd/internal/metrics/metricstest"
)

// TestMetricsEndpoint: a real `punchd up --metrics-listen` with a live
// tunnel exports its peer's state, path, relay kind, bytes, handshake age,
// ICE attempts, path changes and birthday use, and the real `punchd
// rendezvous --metrics-listen` its peers, frames, TURN allocations,
// relayed bytes and refusals, both scraped over HTTP during the run and
// read with Prometheus' own text parser. Two cases: a direct path, and a
// path forced through the rendezvous' TURN relay (relayed bytes > 0).
func TestMetricsEndpoint(t *testing.T) {
	lab.RequireRoot(t)
	const metricsAddr = "127.0.0.1:9478" // each process has its own namespace
	for _, tt := range []struct {
		name   string
		nat    lab.NATType
		upArgs []string
		relay  bool
	}{
		{"direct", lab.NATPortRestricted, nil, false},
		{"turn relay", lab.NATNone, []string{"--force-relay"}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			opts := Options{NATA: tt.nat, NATB: tt.nat, Binary: punchdBinary, Dir: t.TempDir(),
				UpArgs:         append([]string{"--metrics-listen", metricsAddr}, tt.upArgs...),
				RendezvousArgs: []string{"--metrics-listen", metricsAddr}}
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
			peer := r.B.ID.String()
			want := func(path string) map[string]string { return map[string]string{"peer": peer, "path": path} }
			relayIs := func(kind string) map[string]string { return map[string]string{"peer": peer, "relay": kind} }
			pathNow, turnNow := "direct", 0.0
			if tt.relay {
				pathNow, turnNow = "relay", 1
			}
			p := map[string]string{"peer": peer}
			checkMetrics(t, scrapeIn(t, r.A.Host, metricsAddr), []metricCheck{
				{"punchd_peer_state", map[string]string{"peer": peer, "state": "connected"}, eq(1)},
				{"punchd_peer_path", want(pathNow), eq(1)},
				{"punchd_peer_relay", relayIs("turn"), eq(turnNow)},
				{"punchd_peer_relay", relayIs("member"), eq(0)},
				{"punchd_peer_receive_bytes_total", p, gt(0)},
				{"punchd_peer_transmit_bytes_total", p, gt(0)},
				{"punchd_peer_handshake_age_seconds", p, between(0, 120)},
				{"punchd_peer_ice_attempts_total", p, between(1, 10)}, // a count, not the attempt's random name
				{"punchd_peer_path_changes_total", p, atLeast(1)},
				// Neither pair needs birthday punching: present, and 0.
				{"punchd_peer_birthday_attempts_total", p, eq(0)},
				{"punchd_peer_birthday_hits_total", p, eq(0)},
				{"punchd_peer_birthday_probes_total", p, eq(0)},
				{"punchd_rendezvous_connected", nil, eq(1)},
				{"punchd_queue_drops_total", map[string]string{"queue": "relay"}, atLeast(0)},
			})
			relayed := atLeast(0)
			if tt.relay {
				relayed = gt(0)
			}
			checkMetrics(t, scrapeIn(t, r.R, metricsAddr), []metricCheck{
				{"punchd_rendezvous_peers_online", nil, eq(2)},
				{"punchd_rendezvous_frames_total", map[string]string{"direction": "in"}, gt(0)},
				{"punchd_rendezvous_frames_total", map[string]string{"direction": "out"}, gt(0)},
				{"punchd_rendezvous_frames_dropped_total", nil, eq(0)},
				// Each daemon holds a TURN allocation (ICE gathers a relay
				// candidate) whether it uses it or not.
				{"punchd_rendezvous_turn_allocations", nil, atLeast(2)},
				{"punchd_rendezvous_turn_allocations_total", nil, atLeast(2)},
				{"punchd_rendezvous_turn_relayed_bytes_total", map[string]string{"direction": "to_peer"}, relayed},
				{"punchd_rendezvous_turn_relayed_bytes_total", map[string]string{"direction": "from_peer"}, relayed},
				{"punchd_rendezvous_rejected_total", map[string]string{"cause": "turn-quota"}, eq(0)},
				{"punchd_rendezvous_rejected_total", map[string]string{"cause": "stun-rate-limited"}, eq(0)},
			})
		})
	}
}

type metricCheck struct {
	name   string
	labels map[string]string
	ok     valueCheck
}

type valueCheck struct {
	fn   func(float64) bool
	want string
}

func eq(w float64) valueCheck {
	return valueCheck{func(v float64) bool { return v == w }, "== " + ftoa(w)}
}
func gt(w float64) valueCheck {
	return valueCheck{func(v float64) bool { return v > w }, "> " + ftoa(w)}
}
func atLeast(w float64) valueCheck {
	return valueCheck{func(v float64) bool { return v >= w }, ">= " + ftoa(w)}
}
func between(lo, hi float64) valueCheck {
	return valueCheck{func(v float64) bool { return v >= lo && v <= hi }, ftoa(lo) + ".." + ftoa(hi)}
}

func ftoa(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

func checkMetrics(t *testing.T, fams metricstest.Families, checks []metricCheck) {
	t.Helper()
	for _, c := range checks {
		v, found := fams.Value(c.name, c.labels)
		if !found || !c.ok.fn(v) {
			t.Errorf("%s%v = %v (found %v), want %s", c.name, c.labels, v, found, c.ok.want)
		}
	}
}

// scrapeIn fetches http://addr/metrics from inside h's namespace (where
// the process listens) and parses it with Prometheus' text parser.
func scrapeIn(t *testing.T, h *lab.Host, addr string) metricstest.Families {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := h.Do(func() (err error) {
				c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		}}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", addr, err)
	}
	defer resp.Body.Close()
	fams, err := metricstest.Parse(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}
