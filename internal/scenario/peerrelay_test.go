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
// the two stay apart. With the TURN relay offered but 40 ms away one way
// (lab.AddDelay on the rendezvous host) and the member 2 ms away, the two
// start on the TURN relay and move to the member: its 8 ms round trip
// beats the relay's 160 ms (without the delays both are under a
// millisecond and the choice could go either way).
func TestPeerRelay(t *testing.T) {
	lab.RequireRoot(t)
	for _, tt := range []struct {
		name        string
		upArgs      []string
		rvArgs      []string
		rvDelay     time.Duration
		memberDelay time.Duration
		linked      bool
	}{
		{"peer relay", nil, []string{"--no-turn"}, 0, 0, true},
		{"no peer relay", []string{"--no-peer-relay"}, []string{"--no-turn"}, 0, 0, false},
		{"member nearer than the TURN relay", nil, nil, 40 * time.Millisecond, 2 * time.Millisecond, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			members := []MemberSpec{{Name: "a", NAT: lab.NATNone, Delay: tt.memberDelay}, {Name: "f", NAT: lab.NATSymmetric}, {Name: "g", NAT: lab.NATSymmetric}}
			m, err := StartMesh(ctx, MeshOptions{Binary: punchdBinary, Members: members, Dir: t.TempDir(),
				UpArgs:         append([]string{"--metrics-listen", meshMetricsAddr}, tt.upArgs...),
				RendezvousArgs: tt.rvArgs, RendezvousDelay: tt.rvDelay})
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
			// f-g's own ICE attempt must fail first (7 s), the choosers
			// probe every 2 s, and a WireGuard handshake lost before the
			// member was chosen is retried after 5 s: allow for all of it
			// on a loaded machine.
			pctx, cancelPing := context.WithTimeout(ctx, 30*time.Second)
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
			// The choosers probe every 2 s and smooth the answers: poll,
			// bounded in time and count.
			for _, pair := range [][2]*Node{{f, g}, {g, f}} {
				var last string
				ok := false
				for i := 0; i < 60 && !ok; i++ {
					if i > 0 {
						time.Sleep(500 * time.Millisecond)
					}
					st, err := m.PeerStatus(ctx, pair[0])
					if err != nil {
						t.Fatal(err)
					}
					last = "not listed"
					for _, p := range st.Peers {
						if p.ID != pair[1].ID.String() {
							continue
						}
						last = "state " + p.State + " path " + p.Path + " via " + p.RelayVia + " reason " + p.Reason
						ok = p.State == "connected" && p.Path == "relay" && p.RelayVia == "member-a" && strings.Contains(p.Reason, "relay via member-a")
					}
				}
				if !ok {
					t.Errorf("%s's status of %s within 30 s: %s; want connected, relay via member-a\n%s", pair[0].Name, pair[1].Name, last, m.MeshLogs())
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
