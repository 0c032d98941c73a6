package scenario

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/punchd/punchd/internal/identity"
	"github.com/punchd/punchd/internal/lab"
)

// TestMeshNetwork is the LAN party: eight daemons behind five NAT types
// (two behind one NAT) join one network with one code and no --peer; every pair connects over the path the NATs allow; a
// broadcast and an mDNS query from one member reach all others; a member
// leaves and comes back on its own; a member shut out by a new code can
// reach no one.
func TestMeshNetwork(t *testing.T) {
	lab.RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	m, err := StartMesh(ctx, MeshOptions{Binary: punchdBinary, Members: LANParty(), Dir: t.TempDir(),
		UpArgs: []string{"--metrics-listen", meshMetricsAddr}, RendezvousArgs: []string{"--metrics-listen", meshMetricsAddr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	a := m.Node("a")
	leaver, outcast := m.Node("e"), m.Node("h")
	without := func(skip *Node) []*Node {
		var out []*Node
		for _, n := range m.Nodes {
			if n != skip {
				out = append(out, n)
			}
		}
		return out
	}

	pairs, err := m.WaitConnected(ctx, m.Nodes, 60*time.Second)
	if err != nil {
		t.Fatalf("%v\n%s", err, m.MeshLogs())
	}
	// With 28 pairs checking at once on a loaded machine a pair that can
	// go direct may be relayed first (a relay pair is accepted after
	// 500 ms); relay is a fallback, so the pair must move to direct by
	// itself within seconds. Each pair must end on the grid's path.
	wrong := func(pairs []Pair) (out []string) {
		for _, p := range pairs {
			if !m.PathAsPredicted(p.A, p.B, p.Path) {
				out = append(out, fmt.Sprintf("%s-%s: path %s, want %s", p.A.Name, p.B.Name, p.Path, m.ExpectedPath(p.A, p.B)))
			}
		}
		return out
	}
	for deadline := time.Now().Add(20 * time.Second); len(wrong(pairs)) > 0 && time.Now().Before(deadline); {
		time.Sleep(250 * time.Millisecond)
		if pairs, err = m.WaitConnected(ctx, m.Nodes, 10*time.Second); err != nil {
			t.Fatalf("%v\n%s", err, m.MeshLogs())
		}
	}
	for _, w := range wrong(pairs) {
		t.Error(w)
	}
	for _, n := range m.Nodes {
		pingAll(ctx, t, m, n, m.Nodes)
	}
	st, err := m.PeerStatus(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range st.Peers {
		if !p.Member || !strings.HasPrefix(p.MemberName, "member-") {
			t.Errorf("a's status of %s: member=%v name=%q, want a member with its announced name", p.ID[:8], p.Member, p.MemberName)
		}
	}

	t.Run("metrics of every member and the rendezvous", func(t *testing.T) { checkMeshMetrics(t, m) })

	t.Run("broadcast and mDNS reach every member", func(t *testing.T) {
		others := without(a)
		bcast := lastOf(identity.DefaultOverlayIPv4)
		mdns := netip.MustParseAddr("224.0.0.251")
		query := mdnsQuery(t, "_punchd-lab._udp.local.")
		for _, tt := range []struct {
			name    string
			dst     netip.Addr
			port    int
			payload []byte
			check   func(got []byte) bool
		}{
			{"subnet broadcast", bcast, 0, []byte("lobby?"), func(got []byte) bool { return string(got) == "lobby?" }},
			{"mDNS query", mdns, 5353, query, func(got []byte) bool { return isMDNSQuery(got, "_punchd-lab._udp.local.") }},
		} {
			recvs := make([]*groupReceiver, len(others))
			port := tt.port
			for i, n := range others {
				recvs[i] = listenGroupOn(t, n.Host, tt.dst, port)
				port = recvs[i].port // the broadcast test takes the first one's free port
			}
			send := senderOn(t, a.Host, tt.dst)
			to := &net.UDPAddr{IP: tt.dst.AsSlice(), Port: port}
			for i, n := range others {
				ok := false
				for try := 0; try < 10 && !ok; try++ { // UDP may be lost
					if _, err := send.WriteTo(tt.payload, nil, to); err != nil {
						t.Fatalf("send to %s: %v", to, err)
					}
					got, dst, from, rok := recvs[i].readBytes(300 * time.Millisecond)
					ok = rok && tt.check(got) && dst == tt.dst && from == a.Overlay4
				}
				if !ok {
					t.Errorf("%s from a to %s did not reach %s", tt.name, to, n.Name)
				}
			}
		}
	})

	t.Run("a member leaves and rejoins", func(t *testing.T) {
		if err := m.StopMember(leaver); err != nil {
			t.Fatal(err)
		}
		if err := m.StartMember(leaver, m.Code); err != nil {
			t.Fatal(err)
		}
		if _, err := m.WaitConnected(ctx, m.Nodes, 60*time.Second); err != nil {
			t.Fatalf("after %s rejoined: %v\n%s", leaver.Name, err, m.MeshLogs())
		}
		pingAll(ctx, t, m, leaver, m.Nodes)
	})

	t.Run("a new code shuts a member out", func(t *testing.T) {
		code, err := m.NewCode(ctx)
		if err != nil {
			t.Fatal(err)
		}
		stay := without(outcast)
		for _, n := range stay {
			if err := m.StopMember(n); err != nil {
				t.Fatal(err)
			}
			if err := m.StartMember(n, code); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := m.WaitConnected(ctx, stay, 60*time.Second); err != nil {
			t.Fatalf("on the new code: %v\n%s", err, m.MeshLogs())
		}
		for _, n := range stay {
			st, err := m.PeerStatus(ctx, n)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range st.Peers {
				if p.ID == outcast.ID.String() {
					t.Errorf("%s still lists the shut-out member %s (%s)", n.Name, outcast.Name, p.State)
				}
			}
		}
		// The outcast still has the old roster and tries: nothing may
		// answer. All members at once, 3 s each.
		reached := make(chan string, len(stay))
		var wg sync.WaitGroup
		for _, n := range stay {
			wg.Add(1)
			go func() {
				defer wg.Done()
				pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				defer cancel()
				if _, err := FirstPing(pctx, outcast.Host, n.Overlay4, 50*time.Millisecond); err == nil {
					reached <- n.Name
				}
			}()
		}
		wg.Wait()
		close(reached)
		for name := range reached {
			t.Errorf("the shut-out member %s still reaches %s", outcast.Name, name)
		}
	})
}

// pingAll pings every member of to (but from itself) from from's host.
// meshMetricsAddr is where every process of the mesh serves metrics, each
// in its own namespace.
const meshMetricsAddr = "127.0.0.1:9478"

// checkMeshMetrics scrapes every member and the rendezvous after every
// member pinged every other: each member shows each other one connected,
// with bytes both ways, a handshake, a relay kind that agrees with its
// path, and birthday counts that add up; the rendezvous shows every member
// online, frames both ways and the TURN relay's bytes (h has no UDP: its
// pairs go through TURN over TCP).
func checkMeshMetrics(t *testing.T, m *Mesh) {
	relays := map[string]int{}
	for _, n := range m.Nodes {
		fams := scrapeIn(t, n.Host, meshMetricsAddr)
		checkMetrics(t, fams, []metricCheck{{"punchd_rendezvous_connected", nil, eq(1)}})
		for _, o := range m.Nodes {
			if o == n {
				continue
			}
			p := map[string]string{"peer": o.ID.String()}
			with := func(k, v string) map[string]string { return map[string]string{"peer": o.ID.String(), k: v} }
			checkMetrics(t, fams, []metricCheck{
				{"punchd_peer_state", with("state", "connected"), eq(1)},
				{"punchd_peer_receive_bytes_total", p, gt(0)},
				{"punchd_peer_transmit_bytes_total", p, gt(0)},
				{"punchd_peer_handshake_age_seconds", p, between(0, 180)},
				{"punchd_peer_ice_attempts_total", p, between(1, 100)},
				{"punchd_peer_birthday_attempts_total", p, atLeast(0)},
			})
			relayed, _ := fams.Value("punchd_peer_path", with("path", "relay"))
			turn, _ := fams.Value("punchd_peer_relay", with("relay", "turn"))
			member, _ := fams.Value("punchd_peer_relay", with("relay", "member"))
			if turn+member != relayed {
				t.Errorf("%s's metrics of %s: path relay %v but relay turn %v member %v", n.Name, o.Name, relayed, turn, member)
			}
			switch {
			case turn == 1:
				relays["turn"]++
			case member == 1:
				relays["member"]++
			default:
				relays["direct"]++
			}
			attempts, _ := fams.Value("punchd_peer_birthday_attempts_total", p)
			hits, _ := fams.Value("punchd_peer_birthday_hits_total", p)
			probes, _ := fams.Value("punchd_peer_birthday_probes_total", p)
			if hits > attempts || (hits > 0 && probes == 0) { // an attempt just begun has sent nothing yet
				t.Errorf("%s's birthday metrics of %s: %v attempts, %v hits, %v probes", n.Name, o.Name, attempts, hits, probes)
			}
		}
	}
	t.Logf("paths seen from both ends: %v", relays)
	if relays["turn"] == 0 {
		t.Errorf("no pair relayed by TURN, but h has no UDP")
	}
	rv := scrapeIn(t, m.R, meshMetricsAddr)
	// Members hold an allocation per peer and TURN URL (14 each here):
	// the default quotas leave room for that, so none is refused.
	if quota, _ := rv.Value("punchd_rendezvous_rejected_total", map[string]string{"cause": "turn-quota"}); quota != 0 {
		t.Errorf("TURN allocations refused over quota: %v, want 0 (a member could not get a relay candidate)", quota)
	}
	checkMetrics(t, rv, []metricCheck{
		{"punchd_rendezvous_peers_online", nil, eq(float64(len(m.Nodes)))},
		{"punchd_rendezvous_frames_total", map[string]string{"direction": "in"}, gt(0)},
		{"punchd_rendezvous_frames_total", map[string]string{"direction": "out"}, gt(0)},
		{"punchd_rendezvous_frames_dropped_total", nil, atLeast(0)},
		{"punchd_rendezvous_turn_allocations", nil, atLeast(1)},
		{"punchd_rendezvous_turn_allocations_total", nil, atLeast(1)},
		{"punchd_rendezvous_turn_relayed_bytes_total", map[string]string{"direction": "to_peer"}, gt(0)},
		{"punchd_rendezvous_turn_relayed_bytes_total", map[string]string{"direction": "from_peer"}, gt(0)},
		{"punchd_rendezvous_rejected_total", map[string]string{"cause": "turn-quota"}, atLeast(0)},
		{"punchd_rendezvous_rejected_total", map[string]string{"cause": "stun-rate-limited"}, atLeast(0)},
	})
}

func pingAll(ctx context.Context, t *testing.T, m *Mesh, from *Node, to []*Node) {
	t.Helper()
	for _, n := range to {
		if n == from {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := FirstPing(pctx, from.Host, n.Overlay4, 20*time.Millisecond)
		cancel()
		if err != nil {
			t.Errorf("ping from %s to %s: %v", from.Name, n.Name, err)
		}
	}
}

func (g *groupReceiver) readBytes(timeout time.Duration) ([]byte, netip.Addr, netip.Addr, bool) {
	s, dst, src, ok := g.read(timeout)
	return []byte(s), dst, src, ok
}

// mdnsQuery is a standard mDNS PTR question, built with x/net's DNS
// message package (not by the code under test).
func mdnsQuery(t *testing.T, name string) []byte {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{})
	if err := b.StartQuestions(); err != nil {
		t.Fatal(err)
	}
	if err := b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: dnsmessage.TypePTR, Class: dnsmessage.ClassINET}); err != nil {
		t.Fatal(err)
	}
	msg, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

func isMDNSQuery(b []byte, name string) bool {
	var p dnsmessage.Parser
	if _, err := p.Start(b); err != nil {
		return false
	}
	q, err := p.Question()
	return err == nil && q.Name.String() == name && q.Type == dnsmessage.TypePTR
}
