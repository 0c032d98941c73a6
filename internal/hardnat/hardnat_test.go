package hardnat

import (
	"testing"

	"github.com/punchd/punchd/internal/natkind"
)

func TestHardRole(t *testing.T) {
	tests := []struct {
		local, remote natkind.NATType
		want          string
	}{
		{natkind.TypeSymmetric, natkind.TypePortRestricted, "hard"},
		{natkind.TypePortRestricted, natkind.TypeSymmetric, "easy"},
		{natkind.TypeSymmetric, natkind.TypeSymmetric, ""}, // 2^32: relay unless a port mapping
		{natkind.TypeSymmetric, natkind.TypeFullCone, ""},  // ICE goes direct by itself
		{natkind.TypePortRestricted, natkind.TypePortRestricted, ""},
		{natkind.TypeSymmetric, natkind.TypeUDPBlocked, ""},
		{natkind.TypeSymmetric, natkind.TypeUnknown, ""},
		{natkind.TypeSymmetric, "", ""}, // the peer has not said
	}
	for _, tt := range tests {
		if got := Role(tt.local, tt.remote); got != tt.want {
			t.Errorf("Role(%s, %s) = %q, want %q", tt.local, tt.remote, got, tt.want)
		}
	}
}
