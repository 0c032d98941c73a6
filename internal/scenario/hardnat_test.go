package scenario

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/punchd/punchd/internal/control"
	"github.com/punchd/punchd/internal/lab"
)

// TestHardNATDirect: where ICE alone can only relay, punchd still goes
// direct: by birthday punching between a symmetric NAT and a
// port-restricted one, by prediction when the symmetric NAT allocates in
// sequence (in a handful of probes, where the spray takes hundreds). The
// relay answers the first ping meanwhile; the tunnel then carries a
// checksummed transfer over the direct path. One run each: the success
// rate over 20 runs is `punchd-lab hardnat --runs 20`.
func TestHardNATDirect(t *testing.T) {
	lab.RequireRoot(t)
	if testing.Short() {
		t.Skip("lab test: skipped with -short")
	}
	tests := []struct {
		name      string
		a, b      lab.NATType
		upnpA     bool
		via       string
		minProbes int
		maxProbes int
	}{
		{"symmetric x port-restricted by birthday", lab.NATSymmetric, lab.NATPortRestricted, false, "birthday", 1, 2048},
		{"sequential symmetric x port-restricted by prediction", lab.NATPortRestricted, lab.NATSymmetricSequential, false, "prediction", 1, 16},
		// B's status: the path goes to A's mapped address. No probes.
		{"symmetric+miniupnpd x symmetric by port mapping", lab.NATSymmetric, lab.NATSymmetric, true, "port mapping", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.upnpA {
				if err := lab.MiniUPnPdInstalled(); err != nil {
					t.Skip(err)
				}
			}
			// The metrics say how the path was made: attempts and hits
			// of birthday punching (prediction is one), none for a
			// port mapping.
			birthdayWant := map[bool][3]valueCheck{
				true:  {atLeast(1), atLeast(1), atLeast(1)},
				false: {eq(0), eq(0), eq(0)},
			}[tt.via != "port mapping"]
			checkBirthday := func(_ *Run, watch, peer *Node) {
				p := map[string]string{"peer": peer.ID.String()}
				fams := scrapeIn(t, watch.Host, hardNATMetricsAddr)
				a, _ := fams.Value("punchd_peer_birthday_attempts_total", p)
				h, _ := fams.Value("punchd_peer_birthday_hits_total", p)
				n, _ := fams.Value("punchd_peer_birthday_probes_total", p)
				t.Logf("%s's metrics: birthday attempts %v, hits %v, probes %v", watch.Name, a, h, n)
				checkMetrics(t, fams, []metricCheck{
					{"punchd_peer_path", map[string]string{"peer": peer.ID.String(), "path": "direct"}, eq(1)},
					{"punchd_peer_birthday_attempts_total", p, birthdayWant[0]},
					{"punchd_peer_birthday_hits_total", p, birthdayWant[1]},
					{"punchd_peer_birthday_probes_total", p, birthdayWant[2]},
				})
			}
			res, err := hardNATRun(context.Background(), Options{Binary: punchdBinary, NATA: tt.a, NATB: tt.b, UPnPA: tt.upnpA, Dir: t.TempDir(),
				UpArgs: []string{"--metrics-listen", hardNATMetricsAddr}}, checkBirthday)
			t.Logf("%+v", res)
			if err != nil {
				t.Fatal(err)
			}
			if res.FirstPing > 5*time.Second {
				t.Errorf("first ping after %v: the relay should carry it while the punch runs", res.FirstPing)
			}
			if res.Via != tt.via || res.Probes < tt.minProbes || res.Probes > tt.maxProbes {
				t.Fatalf("direct via %q in %d probes, want via %q in %d..%d", res.Via, res.Probes, tt.via, tt.minProbes, tt.maxProbes)
			}
		})
	}
}

const hardNATMetricsAddr = "127.0.0.1:9478" // in each daemon's namespace

// TestBirthdayCaps: with small caps, what the daemons send for birthday
// punching (33-byte datagrams, UDP length 41) is counted by the lab
// routers: never more sprays than sockets, nor probes than the cap, and
// no second attempt within the cooldown after a miss.
func TestBirthdayCaps(t *testing.T) {
	lab.RequireRoot(t)
	if testing.Short() {
		t.Skip("lab test: skipped with -short")
	}
	const sockets, probes, rate = 32, 300, 150
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := Start(ctx, Options{Binary: punchdBinary, NATA: lab.NATSymmetric, NATB: lab.NATPortRestricted, Dir: t.TempDir(),
		UpArgs: []string{"--birthday-sockets", strconv.Itoa(sockets), "--birthday-probes", strconv.Itoa(probes), "--birthday-rate", strconv.Itoa(rate)}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// Installed at once: the hard side waits for a relay to carry the
	// tunnel for 2 s before it sprays.
	fromHard, err := r.rtA.CountForwarded(ctx, "birthday_hard", fmt.Sprintf(`iifname "lan0" ip daddr %s udp length 41`, r.rtB.WANAddr))
	if err != nil {
		t.Fatal(err)
	}
	fromEasy, err := r.rtB.CountForwarded(ctx, "birthday_easy", fmt.Sprintf(`iifname "lan0" ip daddr %s udp length 41`, r.rtA.WANAddr))
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := r.Watch(ctx)
	defer stop()
	st, _, err := r.WaitStatus(wctx, r.A, 60*time.Second, "a birthday attempt's end", func(st control.Status) bool {
		p, ok := OnePeer(st)
		return ok && (p.Via == "birthday" || strings.Contains(p.Reason, "birthday punching missed"))
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, r.Logs())
	}
	p := st.Peers[0]
	// A few more seconds: a repeated attempt would show in the counts.
	time.Sleep(5 * time.Second)
	hard, err := fromHard.Packets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	easy, err := fromEasy.Packets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("path %s via %q (%d probes), reason %q; counted at the routers: %d from the symmetric side, %d from the port-restricted side",
		p.Path, p.Via, p.Probes, p.Reason, hard, easy)
	// After a hit both sides add keepalives (one per 5 s) and the hard
	// side 3 acks: allow for those.
	extra := 0
	if p.Via == "birthday" {
		extra = 3 + 4
	}
	if hard > sockets+extra {
		t.Errorf("symmetric side sent %d birthday packets, cap %d sockets (+%d acks and keepalives)", hard, sockets, extra)
	}
	if easy > probes+extra {
		t.Errorf("port-restricted side sent %d birthday packets, cap %d probes (+%d keepalives)", easy, probes, extra)
	}
	if p.Via == "" && (hard != sockets || easy != probes) {
		t.Errorf("a miss spends exactly the caps once: %d sprays (cap %d), %d probes (cap %d)", hard, sockets, easy, probes)
	}
}
