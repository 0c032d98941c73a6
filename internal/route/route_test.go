package route

import (
	"net/netip"
	"testing"
)

func TestSource(t *testing.T) {
	// Loopback destinations are answered from loopback: the kernel's
	// choice, checked against what it must be.
	tests := []struct {
		dst  string
		want string
	}{
		{"127.0.0.1:9", "127.0.0.1"},
		{"127.0.0.2:9", "127.0.0.1"},
		{"[::1]:9", "::1"},
	}
	for _, tt := range tests {
		got := Source(netip.MustParseAddrPort(tt.dst))
		if tt.dst == "[::1]:9" && !got.IsValid() {
			t.Log("no IPv6 loopback here")
			continue
		}
		if got != netip.MustParseAddr(tt.want) {
			t.Errorf("Source(%s) = %v, want %s", tt.dst, got, tt.want)
		}
	}
	if got := Source(netip.AddrPort{}); got.IsValid() {
		t.Errorf("Source(zero) = %v, want none", got)
	}
}
