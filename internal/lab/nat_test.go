package lab

import (
	"context"
	"net/netip"
	"strings"
	"testing"
)

func TestRuleset(t *testing.T) {
	host := netip.MustParseAddr("198.19.1.2")
	tests := []struct {
		nat      NATType
		want     []string
		wantNot  []string
		wantsErr bool
	}{
		{NATFullCone, []string{"dnat to 198.19.1.2", "ct state new meta l4proto udp accept"}, []string{"random"}, false},
		{NATRestricted, []string{"udp dport . ip saddr @contacted dnat to 198.19.1.2", "update @contacted"}, []string{"random"}, false},
		{NATPortRestricted, []string{"masquerade\n", "ct state new drop"}, []string{"dnat to", "random"}, false},
		{NATSymmetric, []string{"masquerade random,fully-random"}, []string{"dnat to"}, false},
		{NATUDPBlocked, []string{"meta l4proto udp drop"}, []string{"dnat to"}, false},
		{NATNone, nil, nil, true},
		{"bogus", nil, nil, true},
	}
	for _, tt := range tests {
		t.Run(string(tt.nat), func(t *testing.T) {
			rs, err := ruleset(tt.nat, host)
			if tt.wantsErr {
				if err == nil {
					t.Fatal("want error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// Every recipe drops unsolicited inbound before conntrack
			// confirms it (the lab gotcha in DESIGN).
			if !strings.Contains(rs, "priority -150") || !strings.Contains(rs, `iifname "eth0" ct state new drop`) {
				t.Errorf("recipe lacks the early drop:\n%s", rs)
			}
			for _, w := range tt.want {
				if !strings.Contains(rs, w) {
					t.Errorf("recipe lacks %q:\n%s", w, rs)
				}
			}
			for _, w := range tt.wantNot {
				if strings.Contains(rs, w) {
					t.Errorf("recipe has %q:\n%s", w, rs)
				}
			}
		})
	}
}

func TestNATTypeValidate(t *testing.T) {
	for _, n := range AllNATTypes() {
		if err := n.Validate(); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
	if err := NATType("cone").Validate(); err == nil || !strings.Contains(err.Error(), "port-restricted") {
		t.Errorf("unknown type: %v", err)
	}
}

func TestLabLifecycle(t *testing.T) {
	RequireRoot(t)
	ctx := context.Background()
	l, err := New(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := l.AddNAT("nat", NATPortRestricted)
	if err != nil {
		t.Fatal(err)
	}
	h, err := l.AddHost("h", r)
	if err != nil {
		t.Fatal(err)
	}
	if !r.LAN.Contains(h.Addr) {
		t.Fatalf("host %v not in LAN %v", h.Addr, r.LAN)
	}
	if out, err := h.Command(ctx, "ip", "route", "get", r.WANAddr.String()).CombinedOutput(); err != nil {
		t.Fatalf("no route from host to its router's WAN side: %v %s", err, out)
	}
	if _, err := l.AddNAT("x", NATNone); err == nil {
		t.Fatal("router of type none accepted")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := h.Command(ctx, "true").Run(); err == nil {
		t.Fatal("namespace still exists after Close")
	}
}
