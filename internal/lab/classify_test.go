package lab

import (
	"testing"
	"time"
)

// The lab's NATs must be what they claim, as judged by a third party:
// coturn's RFC 5780 NAT discovery (turnutils_natdiscovery) against a coturn
// with an alternate address, run from a host behind each NAT type.
func TestNATTypesMatchCoturnDiscovery(t *testing.T) {
	RequireRoot(t)
	if err := CoturnInstalled(); err != nil {
		t.Skip(err)
	}
	tests := []struct {
		nat                NATType
		mapping, filtering string // as natdiscovery names them; "" = blocked
	}{
		{NATNone, "independent", "independent"},
		{NATFullCone, "independent", "independent"},
		{NATRestricted, "independent", "address dependent"},
		{NATPortRestricted, "independent", "address and port dependent"},
		{NATSymmetric, "address and port dependent", "address and port dependent"},
		{NATSymmetricSequential, "address and port dependent", "address and port dependent"},
		{NATUDPBlocked, "", ""},
	}
	for _, tt := range tests {
		t.Run(string(tt.nat), func(t *testing.T) {
			t.Parallel()
			ctx, l := newTestLab(t, 90*time.Second)
			srv, err := l.AddPublicHost("stun", 1)
			if err != nil {
				t.Fatal(err)
			}
			var r *Router
			if tt.nat != NATNone {
				if r, err = l.AddNAT("nat", tt.nat); err != nil {
					t.Fatal(err)
				}
			}
			client, err := l.AddHost("client", r)
			if err != nil {
				t.Fatal(err)
			}
			coturn, err := StartCoturn(ctx, srv)
			if err != nil {
				t.Fatal(err)
			}
			defer coturn.Stop()

			d := NATDiscovery(ctx, client, srv.Addr.String())
			t.Logf("%s\nturnutils_natdiscovery -m -f %s (from %s):\n%s", l.Describe(), srv.Addr, client.Addr, d.Output)
			if tt.mapping == "" {
				// UDP blocked: no binding response at all, in either test.
				if !d.Blocked() {
					t.Fatalf("udp-blocked: natdiscovery should time out in both tests, got mapping %q filtering %q:\n%s", d.Mapping, d.Filtering, d.Output)
				}
				return
			}
			if d.Mapping != tt.mapping || d.Filtering != tt.filtering {
				t.Fatalf("%s: natdiscovery says mapping %q, filtering %q; want %q, %q\n%s",
					tt.nat, d.Mapping, d.Filtering, tt.mapping, tt.filtering, d.Output)
			}
			// The address the server saw: the host itself without NAT,
			// the router's WAN address behind one; with an endpoint-
			// independent mapping also the host's own port (masquerade
			// preserves it), which is what makes the lab's EIM NATs
			// behave like home routers.
			if d.ReflexiveIP == "" {
				t.Fatalf("no reflexive address in natdiscovery output:\n%s", d.Output)
			}
			wantIP := client.Addr
			if r != nil {
				wantIP = r.WANAddr
			}
			if d.ReflexiveIP != wantIP.String() {
				t.Errorf("reflexive address %s:%s, want IP %s", d.ReflexiveIP, d.ReflexivePort, wantIP)
			}
			if tt.mapping == "independent" && d.ReflexivePort != d.LocalPort {
				t.Errorf("mapping moved the port: reflexive %s, local %s", d.ReflexivePort, d.LocalPort)
			}
		})
	}
}
