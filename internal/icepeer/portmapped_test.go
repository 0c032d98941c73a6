package icepeer

import (
	"net/netip"
	"strings"
	"testing"
)

func TestPortMappedCandidate(t *testing.T) {
	ext := netip.MustParseAddrPort("198.18.0.3:41641")
	local := netip.MustParseAddrPort("198.19.1.2:41641")
	raw := portMappedCandidate(ext, local)
	// RFC 8839 candidate-attribute, written out by hand.
	for _, w := range []string{"portmap 1 udp ", " 198.18.0.3 41641 typ srflx raddr 198.19.1.2 rport 41641"} {
		if !strings.Contains(raw, w) {
			t.Errorf("candidate %q lacks %q", raw, w)
		}
	}
	if got := portMappedCandidate(netip.AddrPort{}, local); got != "" {
		t.Errorf("no mapping gave %q", got)
	}
	if got := portMappedCandidate(netip.MustParseAddrPort("[2001:db8::1]:5"), local); got != "" {
		t.Errorf("IPv6 mapping gave %q", got)
	}

	p := NewPeer(PeerConfig{})
	p.noteReflexive(raw, true)
	p.noteReflexive("1 1 udp 1694498815 198.18.0.9 5000 typ srflx raddr 0.0.0.0 rport 0", true)
	p.noteReflexive("2 1 udp 1694498815 198.18.0.4 6000 typ srflx raddr 0.0.0.0 rport 0", false)
	p.noteReflexive("3 1 udp 2130706431 198.19.1.2 6000 typ host", false)
	p.noteReflexive(raw, false) // our own mapping is not our reflexive address
	st := p.Status()
	if st.RemoteMapped != ext || st.RemoteReflexive != netip.MustParseAddrPort("198.18.0.9:5000") ||
		st.LocalReflexive != netip.MustParseAddrPort("198.18.0.4:6000") {
		t.Fatalf("status: mapped %v, remote srflx %v, local srflx %v", st.RemoteMapped, st.RemoteReflexive, st.LocalReflexive)
	}
}
