package natprobe

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/punchd/punchd/internal/natkind"
	"github.com/punchd/punchd/internal/turnserver"
	"github.com/punchd/punchd/internal/udpretry"
	"go.uber.org/goleak"
)

// The decisions of RFC 5780 sections 4.3 and 4.4, from synthetic answers.
func TestBehaviourDecisions(t *testing.T) {
	p := netip.MustParseAddrPort("198.18.0.1:3478")
	o := netip.MustParseAddrPort("198.18.0.2:3479")
	pAltPort := netip.MustParseAddrPort("198.18.0.1:3479")
	at := func(s string) probeResult { return probeResult{reply: stunReply{mapped: netip.MustParseAddrPort(s)}} }
	from := func(a netip.AddrPort) probeResult {
		return probeResult{reply: stunReply{from: a, mapped: netip.MustParseAddrPort("198.18.5.5:1000")}}
	}
	lost := probeResult{err: udpretry.ErrNoAnswer}
	mapTests := []struct {
		name          string
		mI, mII, mIII probeResult
		want          natkind.Behaviour
		err           bool
	}{
		{"same mapping everywhere", at("198.18.5.5:1000"), at("198.18.5.5:1000"), at("198.18.5.5:1000"), natkind.EndpointIndependent, false},
		{"new port per IP", at("198.18.5.5:1000"), at("198.18.5.5:1001"), at("198.18.5.5:1001"), natkind.AddressDependent, false},
		{"new port per IP and port", at("198.18.5.5:1000"), at("198.18.5.5:1001"), at("198.18.5.5:1002"), natkind.AddressAndPortDependent, false},
		{"EIM needs no test III", at("198.18.5.5:1000"), at("198.18.5.5:1000"), lost, natkind.EndpointIndependent, false},
		{"alternate IP silent", at("198.18.5.5:1000"), lost, at("198.18.5.5:1000"), natkind.BehaviourUnknown, true},
		{"alternate address silent", at("198.18.5.5:1000"), at("198.18.5.5:1001"), lost, natkind.BehaviourUnknown, true},
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
		want          natkind.Behaviour
		err           bool
	}{
		{"other IP and port get in", from(p), from(o), from(pAltPort), natkind.EndpointIndependent, false},
		{"only the other port gets in", from(p), lost, from(pAltPort), natkind.AddressDependent, false},
		{"nothing gets in", from(p), lost, lost, natkind.AddressAndPortDependent, false},
		{"plain request lost", lost, lost, lost, natkind.BehaviourUnknown, true},
		{"change ignored by the server", from(p), from(p), from(p), natkind.BehaviourUnknown, true},
		{"change port ignored", from(p), lost, from(p), natkind.BehaviourUnknown, true},
		{"error answer is no answer", from(p), probeResult{reply: stunReply{code: 420}}, lost, natkind.AddressAndPortDependent, false},
	}
	for _, tt := range filterTests {
		got, err := filteringBehaviour(tt.fI, tt.fII, tt.fIII, p, o)
		if got != tt.want || (err != nil) != tt.err {
			t.Errorf("filtering %s: %s, %v; want %s, error %v", tt.name, got, err, tt.want, tt.err)
		}
	}
}

func TestDiscoverAgainstOwnResponder(t *testing.T) {
	s := startServer(t, netip.MustParseAddr("127.0.0.2")) // all of 127/8 is local on Linux
	// Discover's probers end their readers before it returns.
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
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
		Mapping: natkind.EndpointIndependent, Filtering: natkind.EndpointIndependent, NATType: natkind.TypeOpen, PortPreserved: true, Hairpin: true}
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
	s := startServer(t, netip.Addr{}) // pion only: plain Binding answers, CHANGE-REQUEST ignored
	rep, err := Discover(context.Background(), DiscoverConfig{Server: s.Addr().String()})
	if !errors.Is(err, ErrNoRFC5780) {
		t.Fatalf("error %v, want ErrNoRFC5780", err)
	}
	for _, w := range []string{"does not support RFC 5780", "--stun-alt-ip", "coturn"} {
		if !strings.Contains(err.Error(), w) || !strings.Contains(rep.Error, w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
	if rep.RFC5780 || rep.ExternalIPv4 != "127.0.0.1" || rep.NATType != natkind.TypeUnknown || rep.Mapping != natkind.BehaviourUnknown {
		t.Fatalf("report %+v", rep)
	}
}

// tcpSTUN answers Binding requests over TCP on addr until the test ends.
// udpAndTCPPort binds a loopback UDP socket and a TCP listener on one
// port. The kernel picks the TCP port; its UDP twin may be taken by
// another program, so a few ports are tried.
func udpAndTCPPort(t *testing.T) (*net.UDPConn, net.Listener) {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		udp, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(ln.Addr().(*net.TCPAddr).AddrPort()))
		if err == nil {
			t.Cleanup(func() { udp.Close(); ln.Close() })
			return udp, ln
		}
		ln.Close()
	}
	t.Fatal("no loopback port free for both UDP and TCP in 20 tries")
	return nil, nil
}

// tcpSTUN answers Binding requests over TCP on ln.
func tcpSTUN(t *testing.T, ln net.Listener) {
	t.Helper()
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
	// The UDP socket is bound and never answers: a firewall that drops.
	udp, ln := udpAndTCPPort(t)
	addr := udp.LocalAddr().String()
	t.Run("server answers over TCP", func(t *testing.T) {
		tcpSTUN(t, ln)
		t.Cleanup(func() { ln.Close() }) // the next cases find no TCP server
		rep, err := Discover(context.Background(), DiscoverConfig{Server: addr})
		if err != nil {
			t.Fatalf("Discover: %v", err)
		}
		if !rep.UDPBlocked || rep.NATType != natkind.TypeUDPBlocked || rep.ExternalIPv4 != "127.0.0.1" || !strings.Contains(rep.Advice, "relay") {
			t.Fatalf("report %+v", rep)
		}
	})
	t.Run("no answer at all", func(t *testing.T) {
		rep, err := Discover(context.Background(), DiscoverConfig{Server: addr})
		if err == nil || !strings.Contains(err.Error(), "over UDP") || !strings.Contains(err.Error(), "--server") {
			t.Fatalf("error %v, want one about UDP and TCP naming --server", err)
		}
		if !rep.UDPBlocked || rep.NATType != natkind.TypeUnknown {
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
	// An error response whose code is 0 once read as a success without an
	// address (found by the fuzzer in CI); codes outside 300-699 are junk.
	f.Add(stun.MustBuild(stun.NewTransactionIDSetter(id), stun.NewType(stun.MethodBinding, stun.ClassErrorResponse), &stun.ErrorCodeAttribute{Code: 0}).Raw)
	f.Add(stun.MustBuild(stun.NewTransactionIDSetter(id), stun.NewType(stun.MethodBinding, stun.ClassErrorResponse), &stun.ErrorCodeAttribute{Code: 200}).Raw)
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
			if r.code != 0 && (r.code < 300 || r.code > 699) {
				t.Fatalf("error reply with code %d outside 300-699", r.code)
			}
		default:
		}
	})
}

// startServer runs punchd's STUN server on loopback for the test: plain
// when altIP is invalid, else with altIP as the RFC 5780 alternate address.
func startServer(t *testing.T, altIP netip.Addr) *turnserver.Server {
	t.Helper()
	s, err := turnserver.ListenServer(turnserver.ServerConfig{STUNListen: "127.0.0.1:0", AltIP: altIP,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestAllocationText(t *testing.T) {
	tests := []struct {
		rep  Report
		want string
	}{
		{Report{PortAllocation: "sequential", PortStride: 1, AllocationPorts: []uint16{20001, 20002, 20003, 20004}},
			"this symmetric NAT looks sequential, so with a port-restricted peer punchd predicts its next ports"},
		{Report{PortAllocation: "sequential with gaps", PortStride: 2, AllocationPorts: []uint16{7, 9, 13, 15}},
			"sequential with gaps, stride 2"},
		{Report{PortAllocation: "random", AllocationPorts: []uint16{41234, 1033, 60001, 5000}},
			"random (new mappings got ports [41234 1033 60001 5000]): with a port-restricted peer punchd tries birthday punching"},
	}
	for _, tt := range tests {
		var b strings.Builder
		if err := tt.rep.WriteText(&b); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(b.String(), "port allocation") || !strings.Contains(b.String(), tt.want) {
			t.Errorf("%s: text lacks %q:\n%s", tt.rep.PortAllocation, tt.want, b.String())
		}
	}
	var b strings.Builder
	_ = (&Report{}).WriteText(&b)
	if strings.Contains(b.String(), "port allocation") {
		t.Errorf("a report without the allocation test mentions it:\n%s", b.String())
	}
}
