package lab

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestRulesetUPnP(t *testing.T) {
	rs, err := ruleset(NATPortRestricted, netip.MustParseAddr("198.19.1.2"),
		RouterOptions{UPnP: true, STUN: []netip.Addr{netip.MustParseAddr("198.18.0.7"), netip.MustParseAddr("198.18.0.8")}})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{
		"priority dstnat + 10", // after miniupnpd's DNAT
		`iifname "eth0" ct state new ct status dnat accept`,
		"ip saddr { 198.18.0.7, 198.18.0.8 } udp sport { 3478, 3479 } fib daddr type local accept",
		`iifname "eth0" ct state new drop`,
	} {
		if !strings.Contains(rs, w) {
			t.Errorf("UPnP recipe lacks %q:\n%s", w, rs)
		}
	}
}

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
		{NATSymmetricSequential, []string{"udp masquerade to :numgen inc mod 4096 map { 0 : 20000, 1 : 20001,", "4095 : 24095 }"}, []string{"dnat to", "random"}, false},
		{NATUDPBlocked, []string{"meta l4proto udp drop"}, []string{"dnat to"}, false},
		{NATHTTPSOnly, []string{"ct state new tcp dport != 443 drop", "ct state new meta l4proto != tcp drop"}, []string{"dnat to", "random"}, false},
		{NATNone, nil, nil, true},
		{"bogus", nil, nil, true},
	}
	for _, tt := range tests {
		t.Run(string(tt.nat), func(t *testing.T) {
			rs, err := ruleset(tt.nat, host, RouterOptions{})
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
			// confirms it (the lab gotcha in docs/architecture.md).
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
	for _, n := range knownNATTypes() {
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
	pub, err := l.AddPublicHost("pub", 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(pub.Extra) != 1 || pub.Extra[0] == pub.Addr {
		t.Fatalf("extra addresses %v for %v", pub.Extra, pub.Addr)
	}
	if d, err := h.Ping(ctx, pub.Addr, 2*time.Second); err != nil {
		t.Fatalf("NATed host cannot ping a public one: %v\n%s", err, l.Describe())
	} else if d <= 0 || d > 2*time.Second {
		t.Fatalf("ping took %v", d)
	}
	if _, err := pub.Ping(ctx, pub.Extra[0], time.Second); err != nil {
		t.Fatalf("ping own extra address: %v", err)
	}
	// Routers answer nothing unsolicited from the internet, not even ping,
	// and Ping gives up on time.
	start := time.Now()
	if _, err := pub.Ping(ctx, r.WANAddr, 300*time.Millisecond); err == nil {
		t.Fatal("router answered an unsolicited ping on its WAN address")
	} else if el := time.Since(start); el > 1500*time.Millisecond {
		t.Fatalf("Ping with a 300ms timeout took %v", el)
	}
	desc := l.Describe()
	for _, w := range []string{"port-restricted", r.WANAddr.String(), h.Addr.String(), pub.Extra[0].String(), h.NS} {
		if !strings.Contains(desc, w) {
			t.Errorf("Describe lacks %q:\n%s", w, desc)
		}
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
	if _, err := l.AddPublicHost("late", 0); err == nil {
		t.Fatal("AddPublicHost after Close succeeded")
	}
	if _, err := os.Stat(markerPath(l.id)); !os.IsNotExist(err) {
		t.Fatalf("marker left after Close: %v", err)
	}
}

// A lab whose owner died (marker with a dead PID) is removed by the next
// New, namespaces and marker.
func TestStaleLabRemoved(t *testing.T) {
	RequireRoot(t)
	ctx := context.Background()
	l, err := New(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	h, err := l.AddPublicHost("h", 0)
	if err != nil {
		t.Fatal(err)
	}
	// Pretend the owner is a process that has exited.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := strconv.Itoa(cmd.Process.Pid) + " 1\n"
	if err := os.WriteFile(markerPath(l.id), []byte(dead), 0o644); err != nil {
		t.Fatal(err)
	}
	l2, err := New(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l2.Close() })
	if err := h.Command(ctx, "true").Run(); err == nil {
		t.Fatal("stale namespace survived New")
	}
	if _, err := os.Stat(markerPath(l.id)); !os.IsNotExist(err) {
		t.Fatalf("stale marker survived New: %v", err)
	}
	// Our own live lab is kept.
	if _, err := os.Stat(markerPath(l2.id)); err != nil {
		t.Fatalf("live marker: %v", err)
	}
}

func TestCloseWithoutRoot(t *testing.T) {
	var nilLab *Lab
	if err := nilLab.Close(); err != nil {
		t.Fatal(err)
	}
	l := &Lab{}
	for i := 0; i < 2; i++ {
		if err := l.Close(); err != nil {
			t.Fatalf("Close #%d of an empty lab: %v", i+1, err)
		}
	}
	if _, err := l.AddPublicHost("x", 0); err == nil {
		t.Fatal("AddPublicHost on a closed lab succeeded")
	}
}

func TestLabID(t *testing.T) {
	tests := map[string]string{
		"pdl-0a1b2c-wan":        "0a1b2c",
		"pdl-0a1b2c-nat-a":      "0a1b2c",
		"pdl-0a1b2c":            "",
		"pdl-0A1B2C-wan":        "",
		"pdl-xyz-wan":           "",
		"pdlx-0a1b2c-wan":       "",
		"docker-0a1b2c-wan":     "",
		"pdl-0a1b2c3-something": "",
	}
	for in, want := range tests {
		if got := labID(in); got != want {
			t.Errorf("labID(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestOwnerAlive(t *testing.T) {
	self := os.Getpid()
	start := procStartTime(self)
	if start == 0 {
		t.Skip("no /proc")
	}
	tests := []struct {
		marker string
		want   bool
	}{
		{strconv.Itoa(self), true},
		{strconv.Itoa(self) + " " + strconv.FormatUint(start, 10) + "\n", true},
		{strconv.Itoa(self) + " " + strconv.FormatUint(start+1, 10), false}, // PID reused
		{"", false},
		{"abc", false},
		{"-1", false},
		{"999999999", false},
	}
	for _, tt := range tests {
		if got := ownerAlive(tt.marker); got != tt.want {
			t.Errorf("ownerAlive(%q) = %v, want %v", tt.marker, got, tt.want)
		}
	}
}

func TestDescribeWithoutRoot(t *testing.T) {
	l := &Lab{id: "0a1b2c", wan: "pdl-0a1b2c-wan"}
	r := &Router{Name: "nat-a", NS: "pdl-0a1b2c-nat-a", Type: NATSymmetric,
		WANAddr: netip.MustParseAddr("198.18.0.3"), LAN: netip.MustParsePrefix("198.19.1.0/24")}
	l.routers = []*Router{r}
	l.hosts = []*Host{
		{Name: "stun", NS: "pdl-0a1b2c-stun", Addr: netip.MustParseAddr("198.18.0.1"), Extra: []netip.Addr{netip.MustParseAddr("198.18.0.2")}},
		{Name: "alice", NS: "pdl-0a1b2c-alice", Addr: netip.MustParseAddr("198.19.1.2"), Router: r},
	}
	d := l.Describe()
	for _, w := range []string{"pdl-0a1b2c", "stun", "198.18.0.1, 198.18.0.2", "symmetric NAT", "wan 198.18.0.3, lan 198.19.1.0/24", "alice", "behind nat-a"} {
		if !strings.Contains(d, w) {
			t.Errorf("Describe lacks %q:\n%s", w, d)
		}
	}
}
