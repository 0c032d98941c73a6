package scenario

import (
	"context"
	"testing"
	"time"

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
			res, err := HardNATRun(context.Background(), Options{Binary: punchdBinary, NATA: tt.a, NATB: tt.b, UPnPA: tt.upnpA, Dir: t.TempDir()})
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
