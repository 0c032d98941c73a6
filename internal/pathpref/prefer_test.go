package pathpref

import (
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/pion/ice/v4"
)

func testCandidate(t *testing.T, typ string, port int) ice.Candidate {
	t.Helper()
	return testCandidatePrio(t, typ, port, 2130706431)
}

// testCandidatePrio makes a candidate with a given priority; for relays
// the middle 16 bits say how the relay is reached (pion: 3 UDP, 1 TCP,
// 0 TLS).
func testCandidatePrio(t *testing.T, typ string, port int, prio uint32) ice.Candidate {
	t.Helper()
	raw := fmt.Sprintf("candidate:%d 1 udp %d 198.18.0.%d %d typ %s", port, prio, port%200+1, port, typ)
	if typ != "host" {
		raw += " raddr 0.0.0.0 rport 0"
	}
	c, err := ice.UnmarshalCandidate(raw)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func testPairOf(t *testing.T, local, remote string, port int) *ice.CandidatePair {
	return &ice.CandidatePair{Local: testCandidate(t, local, port), Remote: testCandidate(t, remote, port+1)}
}

// answeredNow marks p as having answered a check just now.
func answeredNow(p *ice.CandidatePair) *ice.CandidatePair {
	p.UpdateRoundTripTime(time.Millisecond)
	return p
}

func TestPathPreferenceChoose(t *testing.T) {
	// Ages are relative to the peer's first check (d.begun).
	type step struct {
		at   time.Duration
		sel  string // "", "direct", "relay"
		want int    // index into pairs, -1 for none
	}
	tests := []struct {
		name  string
		pairs func(t *testing.T) []*ice.CandidatePair // answered ones answer at begun
		steps []step
	}{
		{
			name: "selected direct pair is left alone",
			pairs: func(t *testing.T) []*ice.CandidatePair {
				return []*ice.CandidatePair{answeredNow(testPairOf(t, "host", "srflx", 10))}
			},
			steps: []step{{at: time.Second, sel: "direct", want: -1}},
		},
		{
			name: "pion's own nomination gets the first moments",
			pairs: func(t *testing.T) []*ice.CandidatePair {
				return []*ice.CandidatePair{answeredNow(testPairOf(t, "host", "srflx", 10))}
			},
			steps: []step{{at: nominationGrace / 2, want: -1}, {at: nominationGrace, want: 0}},
		},
		{
			name: "an answering direct pair beats a selected relay, once per interval",
			pairs: func(t *testing.T) []*ice.CandidatePair {
				return []*ice.CandidatePair{answeredNow(testPairOf(t, "srflx", "srflx", 10))}
			},
			steps: []step{
				{at: 200 * time.Millisecond, sel: "relay", want: 0},
				{at: 200*time.Millisecond + nominateEvery/2, sel: "relay", want: -1},
				{at: 200*time.Millisecond + nominateEvery, sel: "relay", want: 0},
			},
		},
		{
			name: "best rank wins: host-srflx over prflx-srflx",
			pairs: func(t *testing.T) []*ice.CandidatePair {
				return []*ice.CandidatePair{
					answeredNow(testPairOf(t, "prflx", "srflx", 10)),
					answeredNow(testPairOf(t, "host", "srflx", 20)),
				}
			},
			steps: []step{{at: 200 * time.Millisecond, sel: "relay", want: 1}},
		},
		{
			name: "checking with nothing nominated after the grace: probe quickly",
			pairs: func(t *testing.T) []*ice.CandidatePair {
				return []*ice.CandidatePair{testPairOf(t, "host", "srflx", 10), testPairOf(t, "host", "prflx", 20)}
			},
			steps: []step{
				{at: nominationGrace / 2, want: -1},
				{at: nominationGrace, want: 0},
				{at: nominationGrace + nominateEvery/2, want: -1},
				{at: nominationGrace + nominateEvery, want: 1},
			},
		},
		{
			name: "relayed with no fresh direct pair: probe them in turn",
			pairs: func(t *testing.T) []*ice.CandidatePair {
				return []*ice.CandidatePair{testPairOf(t, "host", "srflx", 10), testPairOf(t, "host", "host", 20)}
			},
			steps: []step{
				{at: time.Second, sel: "relay", want: 0},
				{at: time.Second + probeEvery/2, sel: "relay", want: -1},
				{at: time.Second + probeEvery, sel: "relay", want: 1},
				{at: time.Second + 2*probeEvery, sel: "relay", want: 0},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pairs := tt.pairs(t)
			d := New(quietLogger())
			d.begun = time.Now()
			for _, p := range pairs {
				d.track(p)
			}
			relay := testPairOf(t, "host", "relay", 100)
			direct := testPairOf(t, "host", "srflx", 200)
			for i, s := range tt.steps {
				var sel *ice.CandidatePair
				switch s.sel {
				case "direct":
					sel = direct
				case "relay":
					sel = relay
				}
				got, why := d.choose(d.begun.Add(s.at), sel)
				var want *ice.CandidatePair
				if s.want >= 0 {
					want = pairs[s.want]
				}
				if got != want {
					t.Fatalf("step %d (at %v, selected %q): chose %v (%q), want %v", i, s.at, s.sel, got, why, want)
				}
				if got != nil && why == "" {
					t.Errorf("step %d: nomination without a reason", i)
				}
			}
		})
	}
}

// Tracked: what a path may move to, each once: direct pairs, pairs
// through relays over UDP, pairs with TURN over TCP or TLS at one end
// only; not pairs with TURN over TCP or TLS at both ends.
func TestPathPreferenceTracks(t *testing.T) {
	d := New(quietLogger())
	direct := testPairOf(t, "host", "srflx", 10)
	udpRelay := &ice.CandidatePair{Local: testCandidatePrio(t, "relay", 20, prioRelayUDP), Remote: testCandidate(t, "srflx", 21)}
	oneTCP := &ice.CandidatePair{Local: testCandidatePrio(t, "relay", 30, prioRelayUDP), Remote: testCandidatePrio(t, "relay", 31, prioRelayTCP)}
	d.track(direct)
	d.track(direct) // the same pair again
	d.track(udpRelay)
	d.track(oneTCP)
	d.track(&ice.CandidatePair{Local: testCandidatePrio(t, "relay", 40, prioRelayTCP), Remote: testCandidatePrio(t, "relay", 41, prioRelayTLS)})
	if len(d.pairs) != 3 || d.pairs[0] != direct || d.pairs[1] != udpRelay || d.pairs[2] != oneTCP {
		t.Fatalf("tracked %v, want the direct pair, the UDP relay pair and the one-TCP-end pair, once each", d.pairs)
	}
	for i := range 2 * maxTrackedPairs {
		d.track(testPairOf(t, "srflx", "prflx", 1000+2*i))
	}
	if len(d.pairs) != maxTrackedPairs {
		t.Fatalf("tracked %d pairs, want at most %d", len(d.pairs), maxTrackedPairs)
	}
}

// Relay priorities as pion gives them: type preference 0, the relay's
// transport as local preference, component 1.
const (
	prioRelayUDP = 3<<8 | 255
	prioRelayTCP = 1<<8 | 255
	prioRelayTLS = 0<<8 | 255
)

func TestPairClass(t *testing.T) {
	host := testCandidate(t, "host", 10)
	udp := testCandidatePrio(t, "relay", 20, prioRelayUDP)
	tcp := testCandidatePrio(t, "relay", 30, prioRelayTCP)
	tls := testCandidatePrio(t, "relay", 40, prioRelayTLS)
	tests := []struct {
		local, remote ice.Candidate
		want          pathClass
	}{
		{host, testCandidate(t, "srflx", 11), classDirect},
		{host, udp, classUDPRelay},
		{udp, udp, classUDPRelay},
		{udp, tcp, classTCPRelay},
		{tls, host, classTCPRelay},
		{tcp, tcp, classTCPRelays},
		{tls, tcp, classTCPRelays},
		{nil, host, classNone},
	}
	for i, tt := range tests {
		if got := pairClass(tt.local, tt.remote); got != tt.want {
			t.Errorf("case %d: pairClass(%v, %v) = %d, want %d", i, tt.local, tt.remote, got, tt.want)
		}
	}
}

// A path through TURN over TCP, when a relay over UDP answers, moves to
// UDP; never the other way; and a direct pair beats both.
func TestRelayOverUDPPreferred(t *testing.T) {
	tcpPair := &ice.CandidatePair{Local: testCandidatePrio(t, "relay", 30, prioRelayTCP), Remote: testCandidate(t, "srflx", 31)}
	udpPair := answeredNow(&ice.CandidatePair{Local: testCandidatePrio(t, "relay", 40, prioRelayUDP), Remote: testCandidate(t, "srflx", 41)})
	d := New(quietLogger())
	d.begun = time.Now().Add(-time.Second)
	d.track(tcpPair) // not tracked: nothing to move to
	d.track(udpPair)
	if got, why := d.choose(time.Now(), tcpPair); got != udpPair || why == "" {
		t.Fatalf("selected TCP relay: chose %v (%q), want the UDP relay pair", got, why)
	}
	d.lastNominated = time.Time{}
	if got, _ := d.choose(time.Now(), udpPair); got != nil && pairClass(got.Local, got.Remote) != classDirect {
		t.Fatalf("selected UDP relay: chose %v, want nothing but a direct pair", got)
	}
	direct := answeredNow(testPairOf(t, "host", "srflx", 50))
	d.track(direct)
	d.lastNominated, d.lastProbe = time.Time{}, time.Time{}
	if got, _ := d.choose(time.Now(), tcpPair); got != direct {
		t.Fatalf("direct and UDP relay both answer: chose %v, want the direct pair", got)
	}
}

func TestIsDirect(t *testing.T) {
	for _, tt := range []struct {
		local, remote string
		want          bool
	}{
		{"host", "host", true},
		{"srflx", "prflx", true},
		{"host", "relay", false},
		{"relay", "srflx", false},
		{"relay", "relay", false},
	} {
		p := testPairOf(t, tt.local, tt.remote, 10)
		if got := isDirect(p.Local, p.Remote); got != tt.want {
			t.Errorf("isDirect(%s, %s) = %v, want %v", tt.local, tt.remote, got, tt.want)
		}
	}
	if isDirect(nil, testCandidate(t, "host", 1)) {
		t.Error("a pair without a local candidate is not direct")
	}
}

// After a path broke, the peer's checks never arrive on a direct pair; the
// probes must still cover every signalled remote address, once each, from
// a local candidate on the shared socket, and never a relay.
func TestPathPreferenceProbeTargets(t *testing.T) {
	d := New(quietLogger())
	checked := testPairOf(t, "host", "prflx", 10) // learned from the peer's checks
	d.track(checked)
	d.AddLocal(testCandidate(t, "relay", 30))
	d.AddLocal(testCandidate(t, "srflx", 31))
	d.AddLocal(testCandidate(t, "host", 32))
	d.AddRemote(testCandidate(t, "relay", 40))
	srflx := testCandidate(t, "srflx", 41)
	d.AddRemote(srflx)
	d.AddRemote(testCandidate(t, "srflx", 41)) // the same address again
	d.AddRemote(checked.Remote)                // already covered by the checked pair
	host := testCandidate(t, "host", 42)
	d.AddRemote(host)

	got := d.probeTargets(classNone)
	if len(got) != 3 {
		t.Fatalf("%d probe targets %v, want 3 (the checked pair, srflx, host)", len(got), got)
	}
	if got[0] != checked {
		t.Errorf("first target %v, want the pair the peer checked", got[0])
	}
	for i, want := range []ice.Candidate{srflx, host} {
		p := got[i+1]
		if !p.Remote.Equal(want) {
			t.Errorf("target %d remote %v, want %v", i+1, p.Remote, want)
		}
		if p.Local.Type() != ice.CandidateTypeHost {
			t.Errorf("target %d local %v, want our host candidate", i+1, p.Local)
		}
	}
	for _, p := range got {
		if !isDirect(p.Local, p.Remote) {
			t.Errorf("probe target %v involves a relay", p)
		}
	}
}

// One end has no UDP (its relay is reached over TCP): the other end,
// which has UDP, must not stay on its own TURN-over-TCP allocation,
// whichever end controls. In the lab (full-cone x udp-blocked, the
// udp-blocked end controlling) the pair through the peer's TCP allocation
// won on priority: learned first as peer-reflexive, it outranked the
// peer's server-reflexive one. The better pair answered before pion
// nominated the other, or never again once a pair is selected (nobody
// checks the others then): either way we move to it, by a nomination.
func TestRelayOverUDPAtOneEnd(t *testing.T) {
	ourTCP := testCandidatePrio(t, "relay", 10, prioRelayTCP)
	peerTCP := testCandidatePrio(t, "relay", 11, prioRelayTCP)
	tests := []struct {
		name     string
		selected *ice.CandidatePair
		upTo     func() *ice.CandidatePair
	}{
		{"we have UDP", &ice.CandidatePair{Local: testCandidatePrio(t, "relay", 20, prioRelayTCP), Remote: peerTCP},
			func() *ice.CandidatePair {
				return &ice.CandidatePair{Local: testCandidatePrio(t, "relay", 30, prioRelayUDP), Remote: peerTCP}
			}},
		{"the peer has UDP", &ice.CandidatePair{Local: ourTCP, Remote: testCandidatePrio(t, "relay", 21, prioRelayTCP)},
			func() *ice.CandidatePair {
				return &ice.CandidatePair{Local: ourTCP, Remote: testCandidate(t, "srflx", 31)}
			}},
	}
	direct := testPairOf(t, "host", "host", 50) // never answers: one end has no UDP
	for _, tt := range tests {
		for _, answered := range []bool{true, false} {
			d := New(quietLogger())
			d.begun = time.Now().Add(-time.Second)
			up := tt.upTo()
			if answered {
				answeredNow(up)
			}
			d.track(tt.selected)
			d.track(up)
			d.track(direct)
			if got, why := d.choose(time.Now(), tt.selected); got != up || why == "" {
				t.Fatalf("%s, answered %v: on TURN over TCP at both ends, chose %v (%q), want %v", tt.name, answered, got, why, up)
			}
			// On it, nothing relayed is better; only direct pairs are tried.
			d.lastNominated, d.lastProbe = time.Time{}, time.Time{}
			if got, _ := d.choose(time.Now(), up); got != nil && got != direct {
				t.Fatalf("%s, answered %v: on the better pair, chose %v, want nothing but the direct pair", tt.name, answered, got)
			}
		}
	}

	// Never back onto TCP at both ends, and a pair with TCP at one end is
	// no upgrade from another such pair.
	oneTCP := tests[0].upTo()
	d := New(quietLogger())
	d.begun = time.Now().Add(-time.Second)
	d.track(answeredNow(&ice.CandidatePair{Local: testCandidatePrio(t, "relay", 40, prioRelayTLS), Remote: testCandidatePrio(t, "relay", 41, prioRelayUDP)}))
	d.track(answeredNow(tests[0].selected))
	if got, _ := d.choose(time.Now(), oneTCP); got != nil {
		t.Fatalf("on a one-TCP-end pair, chose %v, want nothing", got)
	}
	// While checking with nothing selected, relayed pairs are no probes:
	// a direct pair that answers later would lose to them.
	for _, p := range d.probeTargets(classNone) {
		if !isDirect(p.Local, p.Remote) {
			t.Fatalf("probe target %v while checking is relayed", p)
		}
	}
}

// While checking, a pair with TURN over TCP/TLS at one end that answers is
// left to pion (a direct pair may answer next); a selected one with TCP at
// both ends is left for it.
func TestTCPRelayNotNominatedWhileChecking(t *testing.T) {
	d := New(quietLogger())
	d.begun = time.Now().Add(-time.Second)
	oneTCP := answeredNow(&ice.CandidatePair{Local: testCandidatePrio(t, "relay", 10, prioRelayTCP), Remote: testCandidate(t, "srflx", 11)})
	d.track(oneTCP)
	if got, why := d.choose(time.Now(), nil); got == oneTCP {
		t.Fatalf("checking: nominated %v (%q), want it left to pion", got, why)
	}
	d.lastNominated, d.lastProbe = time.Time{}, time.Time{}
	bothTCP := &ice.CandidatePair{Local: testCandidatePrio(t, "relay", 20, prioRelayTCP), Remote: testCandidatePrio(t, "relay", 21, prioRelayTLS)}
	if got, _ := d.choose(time.Now(), bothTCP); got != oneTCP {
		t.Fatalf("on TCP at both ends: chose %v, want %v", got, oneTCP)
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
