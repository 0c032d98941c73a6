package tunnel

import (
	"net"
	"testing"
	"time"

	"github.com/punchd/punchd/internal/identity"
)

// relayTrio: A and B have no path to each other, M has direct paths to
// both; A and B send to each other through M.
type relayTrio struct {
	a, m, b    *Bind
	ka, km, kb identity.PublicKey
	recvB      *receiver
	recvA      *receiver
	recvM      *receiver
}

func newRelayTrio(t *testing.T, relayOn bool) *relayTrio {
	a, afns := openLoopback(t)
	m, mfns := openLoopback(t)
	b, bfns := openLoopback(t)
	tr := &relayTrio{a: a, m: m, b: b, ka: key(t), km: key(t), kb: key(t)}
	tr.recvA, tr.recvM, tr.recvB = startReceiver(t, afns[0]), startReceiver(t, mfns[0]), startReceiver(t, bfns[0])
	m.SetPath(tr.ka, Path{Direct: netipAddrPort(t, a)})
	m.SetPath(tr.kb, Path{Direct: netipAddrPort(t, b)})
	m.SetPeerRelay(relayOn)
	a.SetPath(tr.km, Path{Direct: netipAddrPort(t, m)})
	b.SetPath(tr.km, Path{Direct: netipAddrPort(t, m)})
	a.SetVia(tr.kb, tr.km)
	b.SetVia(tr.ka, tr.km)
	return tr
}

func TestPeerRelayCarriesWireGuard(t *testing.T) {
	tr := newRelayTrio(t, true)
	ep, err := tr.a.ParseEndpoint(tr.a.EndpointFor(tr.kb))
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.a.Send([][]byte{marked(7)}, ep); err != nil {
		t.Fatal(err)
	}
	pkts, eps := tr.recvB.waitFor(t, 1)
	if marker(pkts[0]) != 7 || len(pkts[0]) != len(marked(7)) {
		t.Fatalf("B got %x, want the WireGuard packet as sent", pkts[0])
	}
	if pe, ok := eps[0].(*peerEndpoint); !ok || pe.key != tr.ka {
		t.Fatalf("B's packet came from %v, want A's logical endpoint (it was relayed by M)", eps[0].DstToString())
	}
	// And back: B answers A through M.
	epA, _ := tr.b.ParseEndpoint(tr.b.EndpointFor(tr.ka))
	if err := tr.b.Send([][]byte{marked(8)}, epA); err != nil {
		t.Fatal(err)
	}
	if pkts, _ := tr.recvA.waitFor(t, 1); marker(pkts[0]) != 8 {
		t.Fatalf("A got %x", pkts[0])
	}
	if got := tr.m.PeerRelayStats().Forwarded; got != 2 {
		t.Fatalf("M forwarded %d datagrams, want 2", got)
	}
	if pkts, _ := tr.recvM.waitFor(t, 0); len(pkts) != 0 {
		t.Fatalf("M's own WireGuard got %d relayed packets", len(pkts))
	}
}

func TestPeerRelayProbe(t *testing.T) {
	tr := newRelayTrio(t, true)
	got := make(chan ProbeResult, 4)
	tr.a.SetProbeHandler(func(r ProbeResult) { got <- r })
	if err := tr.a.Probe(tr.kb, tr.km); err != nil {
		t.Fatal(err)
	}
	if err := tr.a.Probe(tr.km, identity.PublicKey{}); err != nil { // M over A's own path
		t.Fatal(err)
	}
	seen := map[[2]identity.PublicKey]bool{}
	for range 2 {
		select {
		case r := <-got:
			if r.RTT <= 0 || r.RTT > 5*time.Second {
				t.Fatalf("probe RTT %s", r.RTT)
			}
			seen[[2]identity.PublicKey{r.Peer, r.Via}] = true
		case <-time.After(5 * time.Second):
			t.Fatal("probe not answered")
		}
	}
	if !seen[[2]identity.PublicKey{tr.kb, tr.km}] || !seen[[2]identity.PublicKey{tr.km, {}}] {
		t.Fatalf("probe results %v, want B via M and M direct", seen)
	}
}

// What M refuses: relaying while off, frames from strangers, frames for
// peers it has no direct path to.
func TestPeerRelayRefuses(t *testing.T) {
	frame := func(kind byte, to identity.PublicKey) []byte {
		id := idOf(to)
		return append(append([]byte{peerRelayMagic, kind, 0, 0}, id[:]...), marked(1)...)
	}
	tests := []struct {
		name  string
		setup func(tr *relayTrio) (from *Bind, pkt []byte)
	}{
		{"relaying off", func(tr *relayTrio) (*Bind, []byte) {
			tr.m.SetPeerRelay(false)
			return tr.a, frame(relayKindFwd, tr.kb)
		}},
		{"from a stranger", func(tr *relayTrio) (*Bind, []byte) {
			c, _ := openLoopback(t)
			return c, frame(relayKindFwd, tr.kb)
		}},
		{"to a peer without a direct path", func(tr *relayTrio) (*Bind, []byte) {
			k := key(t)
			tr.m.SetPassive(k, false) // known, no path
			return tr.a, frame(relayKindFwd, k)
		}},
		{"to an unknown key", func(tr *relayTrio) (*Bind, []byte) { return tr.a, frame(relayKindFwd, key(t)) }},
		{"back to the sender", func(tr *relayTrio) (*Bind, []byte) { return tr.a, frame(relayKindFwd, tr.ka) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newRelayTrio(t, true)
			from, pkt := tt.setup(tr)
			mAddr := net.UDPAddrFromAddrPort(netipAddrPort(t, tr.m))
			if _, err := from.sock.Load().udp.WriteToUDP(pkt, mAddr); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(2 * time.Second)
			for tr.m.PeerRelayStats().Refused == 0 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if st := tr.m.PeerRelayStats(); st.Refused != 1 || st.Forwarded != 0 {
				t.Fatalf("M: %+v, want 1 refused, 0 forwarded", st)
			}
		})
	}
}
