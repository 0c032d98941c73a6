package scenario

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/punchd/punchd/internal/lab"
)

// TestPeerRelay: two members behind symmetric NATs cannot punch, and the
// rendezvous offers no TURN relay; a public member reaches both directly
// and carries their tunnel ("relay via member-a"). With --no-peer-relay
// the two stay apart.
func TestPeerRelay(t *testing.T) {
	lab.RequireRoot(t)
	members := []MemberSpec{{Name: "a", NAT: lab.NATNone}, {Name: "f", NAT: lab.NATSymmetric}, {Name: "g", NAT: lab.NATSymmetric}}
	for _, tt := range []struct {
		name   string
		upArgs []string
		linked bool
	}{
		{"peer relay", nil, true},
		{"no peer relay", []string{"--no-peer-relay"}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			m, err := StartMesh(ctx, MeshOptions{Binary: punchdBinary, Members: members, Dir: t.TempDir(),
				UpArgs: append([]string{"--metrics-listen", meshMetricsAddr}, tt.upArgs...), RendezvousArgs: []string{"--no-turn"}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { m.Close() })
			a, f, g := m.Node("a"), m.Node("f"), m.Node("g")
			if _, err := m.WaitConnected(ctx, []*Node{a, f}, 30*time.Second); err != nil {
				t.Fatalf("a-f: %v\n%s", err, m.MeshLogs())
			}
			if _, err := m.WaitConnected(ctx, []*Node{a, g}, 30*time.Second); err != nil {
				t.Fatalf("a-g: %v\n%s", err, m.MeshLogs())
			}
			pctx, cancelPing := context.WithTimeout(ctx, 15*time.Second)
			_, err = FirstPing(pctx, f.Host, g.Overlay4, 50*time.Millisecond)
			cancelPing()
			if !tt.linked {
				if err == nil {
					t.Fatalf("f reaches g with --no-peer-relay and no TURN relay\n%s", m.MeshLogs())
				}
				return
			}
			if err != nil {
				t.Fatalf("f -> g through a: %v\n%s", err, m.MeshLogs())
			}
			for _, pair := range [][2]*Node{{f, g}, {g, f}} {
				st, err := m.PeerStatus(ctx, pair[0])
				if err != nil {
					t.Fatal(err)
				}
				found := false
				for _, p := range st.Peers {
					if p.ID != pair[1].ID.String() {
						continue
					}
					found = true
					if p.State != "connected" || p.Path != "relay" || p.RelayVia != "member-a" || !strings.Contains(p.Reason, "relay via member-a") {
						t.Errorf("%s's status of %s: state %s path %s via %q reason %q; want connected, relay via member-a", pair[0].Name, pair[1].Name, p.State, p.Path, p.RelayVia, p.Reason)
					}
				}
				if !found {
					t.Errorf("%s does not list %s", pair[0].Name, pair[1].Name)
				}
				peer := pair[1].ID.String()
				checkMetrics(t, scrapeIn(t, pair[0].Host, meshMetricsAddr), []metricCheck{
					{"punchd_peer_path", map[string]string{"peer": peer, "path": "relay"}, eq(1)},
					{"punchd_peer_relay", map[string]string{"peer": peer, "relay": "member"}, eq(1)},
					{"punchd_peer_relay", map[string]string{"peer": peer, "relay": "turn"}, eq(0)},
					{"punchd_peer_relay_via_info", map[string]string{"peer": peer, "via": "member-a"}, eq(1)},
				})
			}
		})
	}
}
