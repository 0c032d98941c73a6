package turnserver

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
	"github.com/punchd/punchd/internal/natkind"
	"go.uber.org/goleak"
)

// startRFC5780Server runs the server on 127.0.0.1 with 127.0.0.2 as the
// alternate IP (all of 127/8 is local on Linux).
func startRFC5780Server(t *testing.T, turnSecret string) *Server {
	t.Helper()
	cfg := ServerConfig{STUNListen: "127.0.0.1:0", AltIP: netip.MustParseAddr("127.0.0.2"), Logger: quietLogger()}
	if turnSecret != "" {
		cfg.TURNSecret, cfg.RelayIP = turnSecret, netip.MustParseAddr("127.0.0.1")
		cfg.AllowPeers = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	}
	s, err := ListenServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// exchange sends raw to dst from conn and returns the answer and where it
// came from, or an error after wait.
func exchange(t *testing.T, conn *net.UDPConn, dst netip.AddrPort, raw []byte, wait time.Duration) (*stun.Message, netip.AddrPort, error) {
	t.Helper()
	if _, err := conn.WriteToUDPAddrPort(raw, dst); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	n, from, err := conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		return nil, from, err
	}
	m := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
	if err := m.Decode(); err != nil {
		t.Fatalf("answer from %s is not STUN: %v", from, err)
	}
	return m, netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), nil
}

func clientConn(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestResponderChangeRequest(t *testing.T) {
	s := startRFC5780Server(t, "")
	a := s.rfc5780.addrs
	c := clientConn(t)
	me := c.LocalAddr().(*net.UDPAddr).AddrPort()
	for _, at := range [][2]int{{0, 0}, {0, 1}, {1, 0}, {1, 1}} {
		for _, ch := range []natkind.ChangeRequest{{}, {Port: true}, {IP: true}, {IP: true, Port: true}} {
			to := a[at[0]][at[1]]
			wantIP, wantPort := at[0], at[1]
			if ch.IP {
				wantIP = 1 - wantIP
			}
			if ch.Port {
				wantPort = 1 - wantPort
			}
			want := a[wantIP][wantPort]
			t.Run(to.String()+"/"+changeName(ch), func(t *testing.T) {
				setters := []stun.Setter{stun.TransactionID, stun.BindingRequest}
				if ch != (natkind.ChangeRequest{}) {
					setters = append(setters, ch)
				}
				req := stun.MustBuild(setters...)
				m, from, err := exchange(t, c, to, req.Raw, 2*time.Second)
				if err != nil {
					t.Fatalf("no answer: %v", err)
				}
				if m.Type != stun.BindingSuccess || m.TransactionID != req.TransactionID {
					t.Fatalf("answer %s, want a Binding success for our transaction", m.Type)
				}
				if from != want {
					t.Errorf("answered from %s, want %s", from, want)
				}
				var xa stun.XORMappedAddress
				var ro stun.ResponseOrigin
				var oa stun.OtherAddress
				if err := xa.GetFrom(m); err != nil || addrPort(xa.IP, xa.Port) != me {
					t.Errorf("XOR-MAPPED-ADDRESS %v (%v), want %s", xa, err, me)
				}
				if err := ro.GetFrom(m); err != nil || addrPort(ro.IP, ro.Port) != want {
					t.Errorf("RESPONSE-ORIGIN %v (%v), want %s", ro, err, want)
				}
				if err := oa.GetFrom(m); err != nil || addrPort(oa.IP, oa.Port) != a[1-at[0]][1-at[1]] {
					t.Errorf("OTHER-ADDRESS %v (%v), want %s", oa, err, a[1-at[0]][1-at[1]])
				}
				if err := stun.Fingerprint.Check(m); err != nil {
					t.Errorf("FINGERPRINT: %v", err)
				}
			})
		}
	}
	if got := s.OtherAddr().String(); got != a[1][1].String() {
		t.Errorf("OtherAddr %s, want %s", got, a[1][1])
	}
}

func changeName(c natkind.ChangeRequest) string {
	switch {
	case c.IP && c.Port:
		return "change-ip-port"
	case c.IP:
		return "change-ip"
	case c.Port:
		return "change-port"
	}
	return "plain"
}

// rawAttr appends an attribute without any checks, for bad input.
type rawAttr struct {
	t stun.AttrType
	v []byte
}

func (r rawAttr) AddTo(m *stun.Message) error { m.Add(r.t, r.v); return nil }

func TestResponderBadInput(t *testing.T) {
	s := startRFC5780Server(t, "")
	a := s.rfc5780.addrs
	good := func() []byte { return stun.MustBuild(stun.TransactionID, stun.BindingRequest).Raw }
	truncated := good()
	truncated = append(truncated, 0x80, 0x22, 0x00, 0x08) // SOFTWARE claiming 8 bytes, none follow
	truncated[3] = 4                                      // header length covers the attribute header only
	badFP := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint).Raw
	badFP[len(badFP)-1] ^= 0xff
	tests := []struct {
		name     string
		raw      []byte
		wantCode int // 0: no answer at all
	}{
		{"unknown comprehension-required attribute", stun.MustBuild(stun.TransactionID, stun.BindingRequest, rawAttr{0x0027, []byte{0x12, 0x34, 0, 0}}).Raw, 420},
		{"CHANGE-REQUEST of the wrong length", stun.MustBuild(stun.TransactionID, stun.BindingRequest, rawAttr{stun.AttrChangeRequest, []byte{0, 0, 0, 6, 0, 0, 0, 0}}).Raw, 400},
		{"truncated attribute", truncated, 0},
		{"bad fingerprint", badFP, 0},
		{"not STUN", []byte("GET / HTTP/1.0\r\n\r\n"), 0},
		{"header only, wrong cookie", append([]byte{0, 1, 0, 0, 1, 2, 3, 4}, make([]byte, 12)...), 0},
		{"empty", []byte{}, 0},
	}
	for _, tt := range tests {
		for _, to := range []netip.AddrPort{a[0][0], a[1][1]} { // the tap in front of pion, and an own socket
			t.Run(tt.name+"/"+to.String(), func(t *testing.T) {
				c := clientConn(t)
				m, _, err := exchange(t, c, to, tt.raw, 300*time.Millisecond)
				switch {
				case tt.wantCode == 0 && err == nil && to == a[1][1]:
					t.Fatalf("answered %s to bad input", m.Type)
				case tt.wantCode != 0 && err != nil:
					t.Fatalf("no answer, want error %d", tt.wantCode)
				case tt.wantCode != 0:
					var ec stun.ErrorCodeAttribute
					if err := ec.GetFrom(m); err != nil || int(ec.Code) != tt.wantCode {
						t.Fatalf("answer %s with %v, want error %d", m.Type, ec, tt.wantCode)
					}
					if tt.wantCode == 420 {
						var ua stun.UnknownAttributes
						if err := ua.GetFrom(m); err != nil || len(ua) != 1 || ua[0] != 0x0027 {
							t.Fatalf("UNKNOWN-ATTRIBUTES %v (%v), want [0x0027]", ua, err)
						}
					}
				}
				// Still serving afterwards.
				if _, _, err := exchange(t, c, to, good(), 2*time.Second); err != nil {
					t.Fatalf("no answer to a good request after bad input: %v", err)
				}
			})
		}
	}
}

// TURN still belongs to pion behind the tap: an unauthenticated Allocate
// gets pion's 401 challenge, and pion's own client gets a relay and moves
// data through it.
func TestResponderLeavesTURNToPion(t *testing.T) {
	const secret = "test-secret"
	s := startRFC5780Server(t, secret)
	c := clientConn(t)
	alloc := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
		rawAttr{stun.AttrRequestedTransport, []byte{17, 0, 0, 0}}, stun.Fingerprint)
	m, _, err := exchange(t, c, s.rfc5780.addrs[0][0], alloc.Raw, 2*time.Second)
	if err != nil {
		t.Fatalf("no answer to Allocate: %v", err)
	}
	var ec stun.ErrorCodeAttribute
	if err := ec.GetFrom(m); err != nil || ec.Code != stun.CodeUnauthorized {
		t.Fatalf("Allocate without credentials: %s %v, want 401", m.Type, ec)
	}

	user, pass, err := turn.GenerateLongTermTURNRESTCredentials(secret, "tester", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: s.Addr().String(), TURNServerAddr: s.Addr().String(),
		Username: user, Password: pass, Realm: Realm, Conn: clientConn(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if err := tc.Listen(); err != nil {
		t.Fatal(err)
	}
	if _, err := tc.SendBindingRequest(); err != nil {
		t.Fatalf("binding through pion's client: %v", err)
	}
	relayConn, err := tc.Allocate()
	if err != nil {
		t.Fatalf("allocate through the tap: %v", err)
	}
	defer relayConn.Close()
	// Not on the relay IP itself: guardedRelay keeps that to relay ports.
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 3)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	if _, err := relayConn.WriteTo([]byte("hello"), peer.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	_ = peer.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, _, err := peer.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("relayed datagram: %q, %v", buf[:n], err)
	}
}

func TestRFC5780Config(t *testing.T) {
	tests := []struct {
		name, listen, alt, want string
	}{
		{"wildcard primary", "0.0.0.0:0", "127.0.0.2", "one address"},
		{"same IP", "127.0.0.1:0", "127.0.0.1", "must differ"},
		{"other family", "127.0.0.1:0", "::1", "same family"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ListenServer(ServerConfig{STUNListen: tt.listen, AltIP: netip.MustParseAddr(tt.alt), Logger: quietLogger()})
			if err == nil {
				s.Close()
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q lacks %q", err, tt.want)
			}
		})
	}
	// The alternate port taken: a clear error, and nothing left bound.
	s := startRFC5780Server(t, "")
	_, err := ListenServer(ServerConfig{STUNListen: "127.0.0.3:0", AltIP: netip.MustParseAddr("127.0.0.2"),
		AltPort: int(s.rfc5780.addrs[1][1].Port()), Logger: quietLogger()})
	if err == nil || !strings.Contains(err.Error(), "--stun-alt-ip") {
		t.Fatalf("want a bind error naming --stun-alt-ip, got %v", err)
	}
}

func TestServerCloseWithRFC5780(t *testing.T) {
	// Close ends every goroutine the server started: pion's, the
	// responder's and the writer.
	opts := goleak.IgnoreCurrent()
	defer goleak.VerifyNone(t, opts)
	s := startRFC5780Server(t, "")
	addrs := s.rfc5780.addrs
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for _, row := range addrs {
		for _, a := range row {
			c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(a))
			if err != nil {
				t.Errorf("%s still bound after Close: %v", a, err)
				continue
			}
			c.Close()
		}
	}
}

func TestPickAltIP(t *testing.T) {
	ips := func(ss ...string) []netip.Addr {
		var out []netip.Addr
		for _, s := range ss {
			out = append(out, netip.MustParseAddr(s))
		}
		return out
	}
	tests := []struct {
		name, primary string
		own           []netip.Addr
		want          string
	}{
		{"second public address", "198.18.0.1", ips("127.0.0.1", "198.18.0.1", "198.18.0.2"), "198.18.0.2"},
		{"only private others", "198.18.0.1", ips("198.18.0.1", "10.0.0.1", "172.17.0.1", "fe80::1"), ""},
		{"primary not ours", "203.0.113.5", ips("198.18.0.1", "198.18.0.2"), ""},
		{"other family only", "198.18.0.1", ips("198.18.0.1", "2001:db8::1"), ""},
		{"private primary", "10.0.0.5", ips("10.0.0.5", "198.18.0.2"), ""},
		{"IPv6", "2001:db8::1", ips("2001:db8::1", "fd00::1", "2001:db8::2"), "2001:db8::2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := pickAltIP(netip.MustParseAddr(tt.primary), tt.own)
			if (tt.want == "" && got.IsValid()) || (tt.want != "" && got.String() != tt.want) {
				t.Fatalf("pickAltIP = %v, want %q", got, tt.want)
			}
		})
	}
}

// recordConn stands in for the responder's sockets in the fuzz target.
type recordConn struct {
	net.PacketConn
	local net.Addr
	sent  [][]byte
}

func (r *recordConn) WriteTo(p []byte, _ net.Addr) (int, error) {
	r.sent = append(r.sent, append([]byte(nil), p...))
	return len(p), nil
}
func (r *recordConn) LocalAddr() net.Addr { return r.local }
func (r *recordConn) Close() error        { return nil }
func (r *recordConn) ReadFrom([]byte) (int, net.Addr, error) {
	return 0, nil, net.ErrClosed
}

// FuzzResponderHandle feeds untrusted datagrams to the responder: it must
// not panic, and whatever it sends is a STUN Binding response of ours.
func FuzzResponderHandle(f *testing.F) {
	f.Add(stun.MustBuild(stun.TransactionID, stun.BindingRequest).Raw)
	f.Add(stun.MustBuild(stun.TransactionID, stun.BindingRequest, natkind.ChangeRequest{IP: true, Port: true}, stun.Fingerprint).Raw)
	f.Add(stun.MustBuild(stun.TransactionID, stun.BindingRequest, rawAttr{0x0027, []byte{1, 2, 0, 0}}).Raw)
	f.Add([]byte{0, 1, 0, 4, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0, 3, 0, 0})
	r := &responder{log: quietLogger()}
	var conns [2][2]*recordConn
	for i, ip := range []string{"198.18.0.1", "198.18.0.2"} {
		for j, port := range []uint16{3478, 3479} {
			a := netip.AddrPortFrom(netip.MustParseAddr(ip), port)
			conns[i][j] = &recordConn{local: net.UDPAddrFromAddrPort(a)}
			r.socks[i][j], r.addrs[i][j] = conns[i][j], a
		}
	}
	from := &net.UDPAddr{IP: net.IPv4(198, 19, 1, 2), Port: 40000}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		for i := range conns {
			for j := range conns[i] {
				conns[i][j].sent = nil
			}
		}
		took := r.handle(0, 0, pkt, from)
		for i := range conns {
			for j := range conns[i] {
				for _, out := range conns[i][j].sent {
					if !took {
						t.Fatal("sent an answer for a packet it left to pion")
					}
					m := &stun.Message{Raw: out}
					if err := m.Decode(); err != nil {
						t.Fatalf("sent a non-STUN answer: %v", err)
					}
					if m.Type.Method != stun.MethodBinding || m.Type.Class == stun.ClassRequest {
						t.Fatalf("sent %s", m.Type)
					}
				}
			}
		}
	})
}

func TestBindingTapPassesErrors(t *testing.T) {
	tap := &bindingTap{PacketConn: &recordConn{}, r: &responder{log: quietLogger()}}
	if _, _, err := tap.ReadFrom(make([]byte, 10)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("ReadFrom error %v, want the socket's own", err)
	}
}

func addrPort(ip net.IP, port int) netip.AddrPort {
	a, _ := netip.AddrFromSlice(ip)
	return netip.AddrPortFrom(a.Unmap(), uint16(port))
}
