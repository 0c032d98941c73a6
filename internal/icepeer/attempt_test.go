package icepeer

import (
	"net"
	"testing"

	"github.com/punchd/punchd/internal/identity"
)

func TestCandidateFilters(t *testing.T) {
	prod := &Peer{cfg: PeerConfig{ExcludeInterfaces: []string{"punch0"}}}
	test := &Peer{cfg: PeerConfig{ExcludeInterfaces: []string{"punch0"}, AllowLoopback: true}}
	ips := []struct {
		ip         string
		prod, test bool
	}{
		{"192.0.2.1", true, true},
		{"2001:db8::1", true, true},
		{"127.0.0.1", false, true},
		{"::1", false, true},
		{"0.0.0.0", false, false},
		{"224.0.0.251", false, false},
	}
	for _, tt := range ips {
		ip := net.ParseIP(tt.ip)
		if got := prod.ipAllowed(ip); got != tt.prod {
			t.Errorf("ipAllowed(%s) = %v, want %v", tt.ip, got, tt.prod)
		}
		if got := test.ipAllowed(ip); got != tt.test {
			t.Errorf("with AllowLoopback: ipAllowed(%s) = %v, want %v", tt.ip, got, tt.test)
		}
	}
	if prod.interfaceAllowed("punch0") || test.interfaceAllowed("punch0") {
		t.Error("excluded interface allowed")
	}
	if lo := loopbackName(t); lo != "" {
		if prod.interfaceAllowed(lo) || !test.interfaceAllowed(lo) {
			t.Errorf("loopback %s: allowed %v without and %v with AllowLoopback", lo, prod.interfaceAllowed(lo), test.interfaceAllowed(lo))
		}
	}
}

func loopbackName(t *testing.T) string {
	ifs, err := net.Interfaces()
	if err != nil {
		t.Logf("no interface list: %v", err)
		return ""
	}
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagLoopback != 0 {
			return ifi.Name
		}
	}
	return ""
}

// The peer's role is identity.ControlsICE's answer (which the daemon also
// reads, through Controlling, to make the controlled side's Bind passive):
// the larger key controls, and the two ends never take the same role.
func TestRoles(t *testing.T) {
	small, large := identity.PublicKey{0x01}, identity.PublicKey{0x02}
	a := NewPeer(PeerConfig{Local: large, Remote: small})
	b := NewPeer(PeerConfig{Local: small, Remote: large})
	if !a.Controlling() || b.Controlling() {
		t.Fatalf("larger key controlling %v, smaller %v; want true, false", a.Controlling(), b.Controlling())
	}
	for range 20 {
		k1, _ := identity.GeneratePrivateKey()
		k2, _ := identity.GeneratePrivateKey()
		a := NewPeer(PeerConfig{Local: k1.PublicKey(), Remote: k2.PublicKey()})
		b := NewPeer(PeerConfig{Local: k2.PublicKey(), Remote: k1.PublicKey()})
		if a.Controlling() == b.Controlling() {
			t.Fatal("both ends took the same role")
		}
		if a.Controlling() != identity.ControlsICE(k1.PublicKey(), k2.PublicKey()) {
			t.Fatal("the peer's role is not identity.ControlsICE's")
		}
	}
}

func TestCredentials(t *testing.T) {
	u, p := randomCredentials()
	if len(u) != 16 || len(p) != 32 {
		t.Fatalf("credentials %q/%q: want 16/32 characters", u, p)
	}
	if u2, _ := randomCredentials(); u2 == u {
		t.Fatal("credentials repeat")
	}
	if g := randomGen(); g == 0 || g >= 1<<53 {
		t.Fatalf("gen %d outside 1..2^53", g)
	}
}
