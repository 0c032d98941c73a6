package nat

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

func TestClassify(t *testing.T) {
	E, A, AP, U := EndpointIndependent, AddressDependent, AddressAndPortDependent, BehaviourUnknown
	tests := []struct {
		nat                bool
		mapping, filtering Behaviour
		want               NATType
		classic            string
	}{
		{false, E, E, TypeOpen, "open internet"},
		{false, E, A, TypeRestricted, "firewall"},
		{false, E, AP, TypePortRestricted, "firewall"},
		{true, E, E, TypeFullCone, "full cone NAT"},
		{true, E, A, TypeRestricted, "restricted cone NAT"},
		{true, E, AP, TypePortRestricted, "port-restricted cone NAT"},
		{true, A, AP, TypeSymmetric, "symmetric NAT"},
		{true, AP, AP, TypeSymmetric, "symmetric NAT"},
		{true, AP, E, TypeSymmetric, "symmetric NAT"}, // rare, but the mapping decides
		{true, U, E, TypeUnknown, "unknown"},
		{true, E, U, TypeUnknown, "unknown"},
	}
	for _, tt := range tests {
		got, classic := Classify(tt.nat, tt.mapping, tt.filtering)
		if got != tt.want || !strings.Contains(classic, tt.classic) {
			t.Errorf("Classify(nat=%v, %s, %s) = %s %q, want %s %q", tt.nat, tt.mapping, tt.filtering, got, classic, tt.want, tt.classic)
		}
	}
}

func TestAdvice(t *testing.T) {
	tests := []struct {
		t    NATType
		want []string
	}{
		{TypeOpen, []string{"direct with every peer"}},
		{TypeFullCone, []string{"direct with every peer", "symmetric"}},
		{TypeRestricted, []string{"direct with every peer", "symmetric"}},
		{TypePortRestricted, []string{"direct with most peers; a peer behind a symmetric NAT will need the relay"}},
		{TypeSymmetric, []string{"port-restricted or symmetric NAT will need the relay", "open, full-cone or restricted"}},
		{TypeUDPBlocked, []string{"only relay", "TCP or TLS"}},
		{TypeUnknown, []string{"unknown"}},
	}
	for _, tt := range tests {
		got := Advice(tt.t)
		for _, w := range tt.want {
			if !strings.Contains(got, w) {
				t.Errorf("Advice(%s) = %q, lacks %q", tt.t, got, w)
			}
		}
	}
}

func TestNeedsRelay(t *testing.T) {
	relay := map[[2]NATType]bool{
		{TypeSymmetric, TypePortRestricted}: true,
		{TypeSymmetric, TypeSymmetric}:      true,
	}
	for _, a := range NATTypes() {
		for _, b := range NATTypes() {
			want := relay[[2]NATType{a, b}] || relay[[2]NATType{b, a}] || a == TypeUDPBlocked || b == TypeUDPBlocked
			if got := NeedsRelay(a, b); got != want {
				t.Errorf("NeedsRelay(%s, %s) = %v, want %v", a, b, got, want)
			}
		}
	}
}

// The decisions of RFC 5780 sections 4.3 and 4.4, from synthetic answers.
func TestBehaviourDecisions(t *testing.T) {
	p := netip.MustParseAddrPort("198.18.0.1:3478")
	o := netip.MustParseAddrPort("198.18.0.2:3479")
	pAltPort := netip.MustParseAddrPort("198.18.0.1:3479")
	at := func(s string) probeResult { return probeResult{reply: stunReply{mapped: netip.MustParseAddrPort(s)}} }
	from := func(a netip.AddrPort) probeResult {
		return probeResult{reply: stunReply{from: a, mapped: netip.MustParseAddrPort("198.18.5.5:1000")}}
	}
	lost := probeResult{err: errNoAnswer}
	mapTests := []struct {
		name          string
		mI, mII, mIII probeResult
		want          Behaviour
		err           bool
	}{
		{"same mapping everywhere", at("198.18.5.5:1000"), at("198.18.5.5:1000"), at("198.18.5.5:1000"), EndpointIndependent, false},
		{"new port per IP", at("198.18.5.5:1000"), at("198.18.5.5:1001"), at("198.18.5.5:1001"), AddressDependent, false},
		{"new port per IP and port", at("198.18.5.5:1000"), at("198.18.5.5:1001"), at("198.18.5.5:1002"), AddressAndPortDependent, false},
		{"EIM needs no test III", at("198.18.5.5:1000"), at("198.18.5.5:1000"), lost, EndpointIndependent, false},
		{"alternate IP silent", at("198.18.5.5:1000"), lost, at("198.18.5.5:1000"), BehaviourUnknown, true},
		{"alternate address silent", at("198.18.5.5:1000"), at("198.18.5.5:1001"), lost, BehaviourUnknown, true},
	}
	for _, tt := range mapTests {
		got, err := mappingBehaviour(tt.mI, tt.mII, tt.mIII, o.String(), p)
		if got != tt.want || (err != nil) != tt.err {
			t.Errorf("mapping %s: %s, %v; want %s, error %v", tt.name, got, err, tt.want, tt.err)
		}
	}
	filterTests := []struct {
		name          string
		fI, fII, fIII probeResult
		want          Behaviour
		err           bool
	}{
		{"other IP and port get in", from(p), from(o), from(pAltPort), EndpointIndependent, false},
		{"only the other port gets in", from(p), lost, from(pAltPort), AddressDependent, false},
		{"nothing gets in", from(p), lost, lost, AddressAndPortDependent, false},
		{"plain request lost", lost, lost, lost, BehaviourUnknown, true},
		{"change ignored by the server", from(p), from(p), from(p), BehaviourUnknown, true},
		{"change port ignored", from(p), lost, from(p), BehaviourUnknown, true},
		{"error answer is no answer", from(p), probeResult{reply: stunReply{code: 420}}, lost, AddressAndPortDependent, false},
	}
	for _, tt := range filterTests {
		got, err := filteringBehaviour(tt.fI, tt.fII, tt.fIII, p, o)
		if got != tt.want || (err != nil) != tt.err {
			t.Errorf("filtering %s: %s, %v; want %s, error %v", tt.name, got, err, tt.want, tt.err)
		}
	}
}

func TestDiscoverAgainstOwnResponder(t *testing.T) {
	s := startRFC5780Server(t, "")
	var mu sync.Mutex
	var lines []string
	rep, err := Discover(context.Background(), DiscoverConfig{Server: s.Addr().String(), Progress: func(l string) {
		mu.Lock()
		lines = append(lines, l)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatalf("Discover: %v\n%+v", err, rep)
	}
	// Loopback: no NAT, nothing filtered, the server sees our own address.
	want := Report{Server: s.Addr().String(), RFC5780: true, OtherAddress: s.OtherAddr().String(), ExternalIPv4: "127.0.0.1",
		Mapping: EndpointIndependent, Filtering: EndpointIndependent, NATType: TypeOpen, PortPreserved: true, Hairpin: true}
	if rep.Server != want.Server || rep.RFC5780 != want.RFC5780 || rep.OtherAddress != want.OtherAddress ||
		rep.ExternalIPv4 != want.ExternalIPv4 || rep.BehindNAT || rep.UDPBlocked || rep.Mapping != want.Mapping ||
		rep.Filtering != want.Filtering || rep.NATType != want.NATType || !rep.PortPreserved || !rep.Hairpin {
		t.Fatalf("report %+v, want like %+v", rep, want)
	}
	if rep.LocalAddress != net.JoinHostPort("127.0.0.1", strconv.Itoa(rep.ExternalPort)) {
		t.Errorf("local %s, external port %d", rep.LocalAddress, rep.ExternalPort)
	}
	if rep.Advice == "" || rep.ClassicName == "" {
		t.Errorf("no advice or classic name: %+v", rep)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, w := range []string{"binding:", "mapping: endpoint-independent", "filtering: endpoint-independent", "hairpinning: yes"} {
		if !strings.Contains(strings.Join(lines, "\n"), w) {
			t.Errorf("progress lacks %q:\n%s", w, strings.Join(lines, "\n"))
		}
	}
	// The JSON keys the issue promises.
	b, _ := json.Marshal(rep)
	var keys map[string]any
	_ = json.Unmarshal(b, &keys)
	for _, k := range []string{"external_ipv4", "mapping", "filtering", "nat_type", "port_preserved", "hairpin", "udp_blocked", "advice"} {
		if _, ok := keys[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, b)
		}
	}
}

func TestDiscoverWithoutRFC5780(t *testing.T) {
	s := startServer(t) // pion only: plain Binding answers, CHANGE-REQUEST ignored
	rep, err := Discover(context.Background(), DiscoverConfig{Server: s.Addr().String()})
	if !errors.Is(err, ErrNoRFC5780) {
		t.Fatalf("error %v, want ErrNoRFC5780", err)
	}
	for _, w := range []string{"does not support RFC 5780", "--stun-alt-ip", "coturn"} {
		if !strings.Contains(err.Error(), w) || !strings.Contains(rep.Error, w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
	if rep.RFC5780 || rep.ExternalIPv4 != "127.0.0.1" || rep.NATType != TypeUnknown || rep.Mapping != BehaviourUnknown {
		t.Fatalf("report %+v", rep)
	}
}

// tcpSTUN answers Binding requests over TCP on addr until the test ends.
func tcpSTUN(t *testing.T, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				hdr := make([]byte, 20)
				if _, err := io.ReadFull(c, hdr); err != nil {
					return
				}
				body := make([]byte, int(hdr[2])<<8|int(hdr[3]))
				if _, err := io.ReadFull(c, body); err != nil {
					return
				}
				req := &stun.Message{Raw: append(hdr, body...)}
				if req.Decode() != nil {
					return
				}
				ra := c.RemoteAddr().(*net.TCPAddr)
				resp := stun.MustBuild(stun.NewTransactionIDSetter(req.TransactionID), stun.BindingSuccess,
					&stun.XORMappedAddress{IP: ra.IP, Port: ra.Port})
				_, _ = c.Write(resp.Raw)
			}()
		}
	}()
}

func TestDiscoverUDPBlocked(t *testing.T) {
	udp := clientConn(t) // bound, never answers: a firewall that drops
	addr := udp.LocalAddr().String()
	t.Run("server answers over TCP", func(t *testing.T) {
		tcpSTUN(t, addr)
		rep, err := Discover(context.Background(), DiscoverConfig{Server: addr})
		if err != nil {
			t.Fatalf("Discover: %v", err)
		}
		if !rep.UDPBlocked || rep.NATType != TypeUDPBlocked || rep.ExternalIPv4 != "127.0.0.1" || !strings.Contains(rep.Advice, "relay") {
			t.Fatalf("report %+v", rep)
		}
	})
	t.Run("no answer at all", func(t *testing.T) {
		rep, err := Discover(context.Background(), DiscoverConfig{Server: addr})
		if err == nil || !strings.Contains(err.Error(), "over UDP") || !strings.Contains(err.Error(), "--server") {
			t.Fatalf("error %v, want one about UDP and TCP naming --server", err)
		}
		if !rep.UDPBlocked || rep.NATType != TypeUnknown {
			t.Fatalf("report %+v", rep)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := Discover(ctx, DiscoverConfig{Server: addr}); err == nil {
			t.Fatal("no error from a cancelled run")
		}
	})
}

func TestResolveServer(t *testing.T) {
	tests := []struct {
		in, v4, v6, err string
	}{
		{"198.18.0.1", "198.18.0.1:3478", "", ""},
		{"198.18.0.1:3479", "198.18.0.1:3479", "", ""},
		{"[2001:db8::1]:3478", "", "[2001:db8::1]:3478", ""},
		{"2001:db8::1", "", "[2001:db8::1]:3478", ""},
		{"localhost:3478", "127.0.0.1:3478", "", ""},
		{"198.18.0.1:0", "", "", "port"},
		{"198.18.0.1:x", "", "", "port"},
		{"", "", "", "--server"},
	}
	for _, tt := range tests {
		v4, v6, err := resolveServer(context.Background(), tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: error %v, want one about %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tt.in, err)
			continue
		}
		if (tt.v4 != "" && v4.String() != tt.v4) || (tt.v6 != "" && v6.String() != tt.v6) || (tt.v4 == "" && v4.IsValid()) {
			t.Errorf("%q: %v %v, want %s %s", tt.in, v4, v6, tt.v4, tt.v6)
		}
	}
}

// FuzzProberDispatch feeds untrusted datagrams to the client's reader.
func FuzzProberDispatch(f *testing.F) {
	id := [stun.TransactionIDSize]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	f.Add(stun.MustBuild(stun.NewTransactionIDSetter(id), stun.BindingSuccess,
		&stun.XORMappedAddress{IP: net.IPv4(198, 18, 0, 3), Port: 4000},
		&stun.OtherAddress{IP: net.IPv4(198, 18, 0, 2), Port: 3479}).Raw)
	f.Add(stun.MustBuild(stun.NewTransactionIDSetter(id), stun.NewType(stun.MethodBinding, stun.ClassErrorResponse), stun.CodeUnknownAttribute).Raw)
	f.Add(stun.MustBuild(stun.NewTransactionIDSetter(id), stun.BindingRequest).Raw)
	f.Add([]byte{1, 1, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		p := &prober{waiting: map[[stun.TransactionIDSize]byte]chan stunReply{}, expect: map[[stun.TransactionIDSize]byte]chan struct{}{}}
		ch := make(chan stunReply, 1)
		p.waiting[id] = ch
		p.expect[id] = make(chan struct{})
		p.dispatch(b, netip.MustParseAddrPort("198.18.0.1:3478"))
		select {
		case r := <-ch:
			if r.code == 0 && !r.mapped.IsValid() {
				t.Fatalf("success reply without a mapped address: %+v", r)
			}
		default:
		}
	})
}

func TestSendSchedule(t *testing.T) {
	start := time.Unix(0, 0)
	want := []struct {
		at   time.Duration
		last bool
	}{{200 * time.Millisecond, false}, {600 * time.Millisecond, false}, {DefaultProbeTimeout, true}}
	for i, w := range want {
		wake, last := wakeAfter(start, i, DefaultProbeTimeout)
		if wake.Sub(start) != w.at || last != w.last {
			t.Errorf("after send %d: wake at %s (last %v), want %s (%v)", i, wake.Sub(start), last, w.at, w.last)
		}
	}
	if sendAt(0) != 0 {
		t.Errorf("first send at %s", sendAt(0))
	}
}
