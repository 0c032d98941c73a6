package daemon

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/pion/ice/v4"

	"github.com/punchd/punchd/internal/icepeer"
)

// `punchd status --json` keeps the strings scripts parse, now that the
// states, path kinds and candidate types are typed: the expected JSON is
// written out by hand.
func TestPeerStatusJSON(t *testing.T) {
	host := icepeer.Candidate{Type: ice.CandidateTypeHost, Addr: netip.MustParseAddrPort("10.0.0.1:51820")}
	srflx := icepeer.Candidate{Type: ice.CandidateTypeServerReflexive, Addr: netip.MustParseAddrPort("198.18.0.5:40000")}
	relay := icepeer.Candidate{Type: ice.CandidateTypeRelay, Addr: netip.MustParseAddrPort("198.18.0.2:50000"), RelayProtocol: "udp"}
	relay6 := relay
	relay6.RelayOver6 = true
	prflx := icepeer.Candidate{Type: ice.CandidateTypePeerReflexive, Addr: netip.MustParseAddrPort("198.18.0.6:40001")}
	tests := []struct {
		name string
		in   icepeer.PeerStatus
		want []string
	}{
		{"new", icepeer.PeerStatus{State: icepeer.StateNew}, []string{`"state":"new"`, `"path":"none"`}},
		{"waiting", icepeer.PeerStatus{State: icepeer.StateWaiting}, []string{`"state":"waiting"`}},
		{"checking", icepeer.PeerStatus{State: icepeer.StateChecking}, []string{`"state":"checking"`}},
		{"failed", icepeer.PeerStatus{State: icepeer.StateFailed}, []string{`"state":"failed"`}},
		{"disconnected", icepeer.PeerStatus{State: icepeer.StateDisconnected}, []string{`"state":"disconnected"`}},
		{"direct", icepeer.PeerStatus{State: icepeer.StateConnected, Path: icepeer.Path{Direct: prflx.Addr, Local: srflx, Remote: prflx}},
			[]string{`"state":"connected"`, `"path":"direct"`, `"local_candidate":{"type":"srflx","address":"198.18.0.5:40000"}`,
				`"remote_candidate":{"type":"prflx","address":"198.18.0.6:40001"}`}},
		{"relayed", icepeer.PeerStatus{State: icepeer.StateConnected, Reason: "r", Path: icepeer.Path{Direct: relay.Addr, Local: host, Remote: relay}},
			[]string{`"path":"relay"`, `"relay":"198.18.0.2:50000"`, `"local_candidate":{"type":"host"`,
				`"remote_candidate":{"type":"relay","address":"198.18.0.2:50000","relay_protocol":"udp","relay_family":"ipv4"}`}},
		{"relayed over IPv6", icepeer.PeerStatus{State: icepeer.StateConnected, Path: icepeer.Path{Direct: host.Addr, Local: relay6, Remote: host}},
			[]string{`"path":"relay"`, `"local_candidate":{"type":"relay","address":"198.18.0.2:50000","relay_protocol":"udp","relay_family":"ipv6"}`}},
	}
	for _, tt := range tests {
		b, err := json.Marshal(peerStatus(tt.in, nil))
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range tt.want {
			if !strings.Contains(string(b), w) {
				t.Errorf("%s: %s lacks %s", tt.name, b, w)
			}
		}
	}
}
