package turnserver

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
)

// rawTURN is a TURN client made of STUN messages, for requests pion's
// client never sends (Connect on a UDP allocation, TCP allocations from
// a UDP-only setup) and for counting answers exactly.
type rawTURN struct {
	t          *testing.T
	c          net.Conn // UDP (connected) or a TCP/TLS stream
	stream     bool
	user, pass string
	nonce      stun.Nonce
	realm      stun.Realm
}

const testSecret = "guard-secret"

func dialRaw(t *testing.T, network, addr, id string) *rawTURN {
	t.Helper()
	c, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return newRaw(t, c, network != "udp", id)
}

func newRaw(t *testing.T, c net.Conn, stream bool, id string) *rawTURN {
	user, pass, err := turn.GenerateLongTermTURNRESTCredentials(testSecret, id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &rawTURN{t: t, c: c, stream: stream, user: user, pass: pass}
}

// roundTrip sends m and returns the answer, or nil after timeout.
func (r *rawTURN) roundTrip(m *stun.Message, timeout time.Duration) *stun.Message {
	r.t.Helper()
	if _, err := r.c.Write(m.Raw); err != nil {
		r.t.Fatalf("send %s: %v", m.Type, err)
	}
	_ = r.c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 2048)
	for {
		var n int
		var err error
		if r.stream {
			if _, err = io.ReadFull(r.c, buf[:20]); err == nil {
				l := int(binary.BigEndian.Uint16(buf[2:4]))
				_, err = io.ReadFull(r.c, buf[20:20+l])
				n = 20 + l
			}
		} else {
			n, err = r.c.Read(buf)
		}
		if err != nil {
			return nil
		}
		resp := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
		if resp.Decode() == nil && resp.TransactionID == m.TransactionID {
			return resp
		}
	}
}

// request sends an authenticated request (learning the nonce first) and
// returns the answer's error code, 0 for success, -1 for no answer.
func (r *rawTURN) request(method stun.Method, attrs ...stun.Setter) int {
	r.t.Helper()
	code, _ := r.requestAnswer(method, attrs...)
	return code
}

// requestAnswer is request that also returns a success answer.
func (r *rawTURN) requestAnswer(method stun.Method, attrs ...stun.Setter) (int, *stun.Message) {
	r.t.Helper()
	for range 2 {
		setters := []stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}
		setters = append(setters, attrs...)
		if r.nonce != nil {
			setters = append(setters, stun.NewUsername(r.user), r.realm, r.nonce,
				stun.NewLongTermIntegrity(r.user, r.realm.String(), r.pass))
		}
		setters = append(setters, stun.Fingerprint)
		resp := r.roundTrip(stun.MustBuild(setters...), 2*time.Second)
		if resp == nil {
			return -1, nil
		}
		if resp.Type.Class == stun.ClassSuccessResponse {
			return 0, resp
		}
		var code stun.ErrorCodeAttribute
		if err := code.GetFrom(resp); err != nil {
			r.t.Fatalf("%s: error answer without a code: %v", method, err)
		}
		if code.Code == stun.CodeUnauthorized || code.Code == stun.CodeStaleNonce {
			if err := r.nonce.GetFrom(resp); err == nil {
				_ = r.realm.GetFrom(resp)
				continue
			}
		}
		return int(code.Code), nil
	}
	return int(stun.CodeUnauthorized), nil
}

type reqTransport byte

func (p reqTransport) AddTo(m *stun.Message) error {
	m.Add(stun.AttrRequestedTransport, []byte{byte(p), 0, 0, 0})
	return nil
}

const (
	udpTransport reqTransport = 17
	tcpTransport reqTransport = 6
)

func (r *rawTURN) allocate(p reqTransport) int { return r.request(stun.MethodAllocate, p) }

func guardServer(t *testing.T, cfg ServerConfig) *Server {
	t.Helper()
	cfg.STUNListen = "127.0.0.1:0"
	cfg.TURNSecret = testSecret
	cfg.RelayIP = netip.MustParseAddr("127.0.0.1")
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	s, err := ListenServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func streamAddr(t *testing.T, s *Server, i int) string {
	t.Helper()
	if len(s.listeners) <= i {
		t.Fatalf("server has %d stream listeners", len(s.listeners))
	}
	return s.listeners[i].Addr().String()
}

// Test quotas: below the defaults, so that the unauthenticated first
// Allocates of one source stay within the STUN answer burst.
const testUserQuota, testIPQuota = 10, 32

// Allocations per user and per client IP are capped (486), and a place
// comes back when an allocation ends.
func TestAllocationQuotas(t *testing.T) {
	for _, tt := range []struct {
		name  string
		users func(i int) string
		limit int
	}{
		{"per user", func(int) string { return "one-user" }, testUserQuota},
		{"per IP", func(i int) string { return fmt.Sprintf("user-%d", i) }, testIPQuota},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := guardServer(t, ServerConfig{UserQuota: testUserQuota, IPQuota: testIPQuota})
			var clients []*rawTURN
			for i := range tt.limit {
				c := dialRaw(t, "udp", s.Addr().String(), tt.users(i))
				if code := c.allocate(udpTransport); code != 0 {
					t.Fatalf("allocation %d of %d: code %d", i+1, tt.limit, code)
				}
				clients = append(clients, c)
			}
			over := dialRaw(t, "udp", s.Addr().String(), tt.users(tt.limit))
			if code := over.allocate(udpTransport); code != int(stun.CodeAllocQuotaReached) {
				t.Fatalf("allocation %d: code %d, want 486", tt.limit+1, code)
			}
			if n := s.Refused()[RefusedQuota]; n != 1 {
				t.Fatalf("quota refusals counted: %d, want 1", n)
			}
			// Ending one (lifetime 0) gives its place back.
			if code := clients[0].request(stun.MethodRefresh, turnLifetime(0)); code != 0 {
				t.Fatalf("refresh 0: code %d", code)
			}
			if code := over.allocate(udpTransport); code != 0 {
				t.Fatalf("after one ended: code %d, want success", code)
			}
		})
	}
}

type turnLifetime uint32

func (l turnLifetime) AddTo(m *stun.Message) error {
	v := make([]byte, 4)
	binary.BigEndian.PutUint32(v, uint32(l))
	m.Add(stun.AttrLifetime, v)
	return nil
}

// Over TCP many Allocates can be in flight at once (one read loop per
// connection); the quota still holds.
func TestAllocationQuotaConcurrent(t *testing.T) {
	s := guardServer(t, ServerConfig{TCPListen: "127.0.0.1:0", UserQuota: testUserQuota, IPQuota: testIPQuota})
	const tries = 3 * testUserQuota
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for range tries {
		c := dialRaw(t, "tcp", streamAddr(t, s, 0), "racer")
		wg.Go(func() {
			if c.allocate(udpTransport) == 0 {
				mu.Lock()
				ok++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if ok != testUserQuota {
		t.Fatalf("%d of %d concurrent allocations succeeded, want %d", ok, tries, testUserQuota)
	}
}

// RFC 6062 is refused: no TCP allocation, and no Connect on a UDP one, so
// a relay never opens a TCP connection (to the server's own signaling
// port, say, which the UDP guard keeps relays off).
func TestTCPRelayRefused(t *testing.T) {
	signaling, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer signaling.Close()
	accepted := make(chan struct{}, 4)
	go func() {
		for {
			c, err := signaling.Accept()
			if err != nil {
				return
			}
			accepted <- struct{}{}
			c.Close()
		}
	}()
	sigPort := signaling.Addr().(*net.TCPAddr).Port
	s := guardServer(t, ServerConfig{TCPListen: "127.0.0.1:0"})
	peer := &peerAddr{IP: net.IPv4(127, 0, 0, 1), Port: sigPort}
	for _, tt := range []struct {
		name         string
		dial         func() *rawTURN
		proto        reqTransport
		allocRefused bool
	}{
		{"TCP allocation over TCP", func() *rawTURN { return dialRaw(t, "tcp", streamAddr(t, s, 0), "a") }, tcpTransport, true},
		{"TCP allocation over UDP", func() *rawTURN { return dialRaw(t, "udp", s.Addr().String(), "b") }, tcpTransport, true},
		{"Connect on a UDP allocation over TCP", func() *rawTURN { return dialRaw(t, "tcp", streamAddr(t, s, 0), "c") }, udpTransport, false},
		{"Connect on a UDP allocation over UDP", func() *rawTURN { return dialRaw(t, "udp", s.Addr().String(), "d") }, udpTransport, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.dial()
			code := c.allocate(tt.proto)
			if tt.allocRefused && code == 0 {
				t.Error("TCP allocation granted")
			}
			if code == 0 {
				// What the finding did: permission for the server's own
				// address, then Connect to its signaling port.
				if code := c.request(stun.MethodCreatePermission, peer); code != 0 {
					t.Fatalf("CreatePermission for the relay address: code %d", code)
				}
				if code := c.request(stun.MethodConnect, peer); code == 0 {
					t.Error("Connect to the server's own TCP port succeeded")
				}
			}
			select {
			case <-accepted:
				t.Fatal("the relay opened a TCP connection to the server's own signaling port")
			case <-time.After(50 * time.Millisecond):
			}
		})
	}
	// Refused allocations gave their quota back.
	s.quotas.mu.Lock()
	defer s.quotas.mu.Unlock()
	if n := s.quotas.users["a"] + s.quotas.users["b"]; n != 0 || len(s.quotas.pending) != 0 {
		t.Fatalf("refused TCP allocations still hold %d quota places (%d pending)", n, len(s.quotas.pending))
	}
}

// TURN over TCP and TLS: a connection that holds no allocation is closed
// after the idle time; one with an allocation stays.
func TestIdleStreamsClosed(t *testing.T) {
	cert := testCert(t)
	const idle = 300 * time.Millisecond
	s := guardServer(t, ServerConfig{TCPListen: "127.0.0.1:0", TLSListen: "127.0.0.1:0",
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}, StreamIdle: idle})
	tlsDial := func(t *testing.T) net.Conn {
		c, err := tls.Dial("tcp", streamAddr(t, s, 1), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	tcpDial := func(t *testing.T) net.Conn {
		c, err := net.Dial("tcp", streamAddr(t, s, 0))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	rawTCP := func(t *testing.T) net.Conn { // no TLS handshake at all
		c, err := net.Dial("tcp", streamAddr(t, s, 1))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	for _, tt := range []struct {
		name     string
		dial     func(*testing.T) net.Conn
		allocate bool
		closed   bool
	}{
		{"TCP, silent", tcpDial, false, true},
		{"TLS, silent after the handshake", tlsDial, false, true},
		{"TLS port, no handshake", rawTCP, false, true},
		{"TCP with an allocation", tcpDial, true, false},
		{"TLS with an allocation", tlsDial, true, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.dial(t)
			if tt.allocate {
				if code := newRaw(t, c, true, "idle").allocate(udpTransport); code != 0 {
					t.Fatalf("Allocate: code %d", code)
				}
			}
			_ = c.SetReadDeadline(time.Now().Add(idle + 2*time.Second))
			_, err := c.Read(make([]byte, 64))
			var ne net.Error
			gotClosed := err != nil && !(errors.As(err, &ne) && ne.Timeout())
			if gotClosed != tt.closed {
				t.Fatalf("closed %v (read: %v), want %v", gotClosed, err, tt.closed)
			}
		})
	}
}

// An allocation holds no large buffer until it needs one: the hand-over
// queue of relay-to-relay datagrams is made on the first hand-over.
func TestAllocationMemory(t *testing.T) {
	g := newRelayGenerator(netip.MustParseAddr("127.0.0.1"), quietLogger())
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}
	const n = 100
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var relays []net.PacketConn
	for range n {
		c, _, err := g.AllocatePacketConn(turn.AllocateListenerConfig{Network: "udp4"})
		if err != nil {
			t.Fatal(err)
		}
		relays = append(relays, c)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	for _, c := range relays {
		c.Close()
	}
	// A socket and its Go wrappers are well under 4 KiB.
	if per := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / n; per > 16<<10 {
		t.Fatalf("%d bytes of heap per allocation, want under 16 KiB", per)
	}
}

// countingHandler counts log records at or above a level.
type countingHandler struct {
	mu    sync.Mutex
	n     int
	level slog.Level
	match string
}

func (h *countingHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, h.match) {
		h.mu.Lock()
		h.n++
		h.mu.Unlock()
	}
	return nil
}
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }
func (h *countingHandler) count() int                         { h.mu.Lock(); defer h.mu.Unlock(); return h.n }

// Unauthenticated answers (Binding on every RFC 5780 socket, the 401 to a
// bare Allocate) are rate-limited per source; authenticated requests and
// other sources are not affected, and refusals are logged once.
func TestSTUNAnswersRateLimited(t *testing.T) {
	logs := &countingHandler{level: slog.LevelInfo, match: "per-source rate"}
	s := guardServer(t, ServerConfig{AltIP: netip.MustParseAddr("127.0.0.2"), Logger: slog.New(logs)})
	binding := func() *stun.Message { return stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint) }
	bareAllocate := func() *stun.Message {
		return stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), udpTransport, stun.Fingerprint)
	}
	other := s.OtherAddr().String()
	const sent = 3 * DefaultSTUNBurst
	for i, tt := range []struct {
		name string
		to   string
		msg  func() *stun.Message
	}{
		{"Binding, primary", s.Addr().String(), binding},
		{"Binding, alternate address", other, binding},
		{"bare Allocate", s.Addr().String(), bareAllocate},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// One socket per case: 127.0.0.x sources share a bucket per
			// IP, so each case uses its own loopback address.
			uc, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, byte(10+i))}, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(tt.to)))
			if err != nil {
				t.Fatal(err)
			}
			defer uc.Close()
			c := newRaw(t, uc, false, "x")
			start := time.Now()
			for range sent {
				if _, err := c.c.Write(tt.msg().Raw); err != nil {
					t.Fatal(err)
				}
			}
			answered := 0
			buf := make([]byte, 2048)
			for {
				_ = c.c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
				if _, err := c.c.Read(buf); err != nil {
					break
				}
				answered++
			}
			// The bucket refills during the run; allow for that.
			max := DefaultSTUNBurst + int(time.Since(start).Seconds()*DefaultSTUNRate) + 2
			if answered > max || answered < DefaultSTUNBurst {
				t.Fatalf("%d of %d answered, want %d..%d", answered, sent, DefaultSTUNBurst, max)
			}
			time.Sleep(100 * time.Millisecond) // let the bucket gain a token or two
		})
	}
	// Authenticated requests from a source over its rate still pass: a
	// flood forged with a client's address must not end its allocation.
	uc, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 20)}, s.Addr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	auth := newRaw(t, uc, false, "z")
	if code := auth.allocate(udpTransport); code != 0 {
		t.Fatalf("Allocate: code %d", code)
	}
	for range sent {
		_, _ = uc.Write(binding().Raw)
	}
	if code := auth.request(stun.MethodRefresh, turnLifetime(600)); code != 0 {
		t.Fatalf("authenticated Refresh from a limited source: code %d, want success", code)
	}
	if n := logs.count(); n != 1 {
		t.Fatalf("%d log lines about refused answers, want 1", n)
	}
	// Another source is not affected.
	c, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 3)}, s.Addr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if newRaw(t, c, false, "y").roundTrip(binding(), time.Second) == nil {
		t.Fatal("another source got no answer")
	}
	if s.stunLimit.Refused() == 0 || s.Refused()[RefusedSTUN] != s.stunLimit.Refused() {
		t.Fatalf("refusals not counted: %v", s.Refused())
	}
}

// The limiter's table of sources is bounded, and idle sources are swept.
func TestSTUNLimiterBounded(t *testing.T) {
	l := newSTUNLimiter(1, 2, quietLogger())
	now := time.Unix(1000, 0)
	l.now = func() time.Time { return now }
	ip := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}) }
	for i := range 2 * stunSources {
		l.allow(ip(i))
	}
	if n := len(l.sources); n > stunSources {
		t.Fatalf("%d sources tracked, want at most %d", n, stunSources)
	}
	// Sources beyond the table share one bucket: burst 2 among all.
	if l.allow(ip(3*stunSources)) && l.allow(ip(3*stunSources+1)) && l.allow(ip(3*stunSources+2)) {
		t.Fatal("overflow sources are not limited")
	}
	// After the buckets refill, a full table is swept for a new source.
	now = now.Add(10 * time.Second)
	if !l.allow(ip(4 * stunSources)) {
		t.Fatal("new source refused after the sweep")
	}
	if n := len(l.sources); n != 1 {
		t.Fatalf("%d sources after the sweep, want 1", n)
	}
	// IPv6 sources of one /64 share a bucket.
	a, b := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	if !l.allow(a) || !l.allow(b) || l.allow(a) {
		t.Fatal("one /64 should share a bucket of 2")
	}
}

func TestIsUnauthenticatedRequest(t *testing.T) {
	user, pass := "u", "p"
	tid := stun.TransactionID
	for _, tt := range []struct {
		name string
		b    []byte
		want bool
	}{
		{"Binding", stun.MustBuild(tid, stun.BindingRequest).Raw, true},
		{"Binding with fingerprint", stun.MustBuild(tid, stun.BindingRequest, stun.Fingerprint).Raw, true},
		{"bare Allocate", stun.MustBuild(tid, stun.NewType(stun.MethodAllocate, stun.ClassRequest), udpTransport).Raw, true},
		{"authenticated Allocate", stun.MustBuild(tid, stun.NewType(stun.MethodAllocate, stun.ClassRequest), udpTransport,
			stun.NewUsername(user), stun.NewRealm("r"), stun.NewNonce("n"), stun.NewLongTermIntegrity(user, "r", pass)).Raw, false},
		{"Binding success", stun.MustBuild(tid, stun.BindingSuccess).Raw, false},
		{"Send indication", stun.MustBuild(tid, stun.NewType(stun.MethodSend, stun.ClassIndication)).Raw, false},
		{"ChannelData", []byte{0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4}, false},
		{"no magic cookie", bytes.Repeat([]byte{0}, 20), false},
		{"short", []byte{0, 1}, false},
	} {
		if got := isUnauthenticatedRequest(tt.b); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

// FuzzSTUNClassifier: the server's tap decides on any datagram without a
// panic, and never calls a datagram with MESSAGE-INTEGRITY unauthenticated.
func FuzzSTUNClassifier(f *testing.F) {
	f.Add(stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint).Raw)
	f.Add(stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), udpTransport,
		stun.NewUsername("u"), stun.NewRealm("r"), stun.NewNonce("n"), stun.NewLongTermIntegrity("u", "r", "p")).Raw)
	f.Add([]byte{0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4})
	f.Fuzz(func(t *testing.T, b []byte) {
		unauth := isUnauthenticatedRequest(b)
		binding := isPlainBindingRequest(b)
		m := &stun.Message{Raw: append([]byte(nil), b...)}
		if m.Decode() != nil {
			return
		}
		if unauth && m.Contains(stun.AttrMessageIntegrity) {
			t.Fatal("a request with MESSAGE-INTEGRITY classified as unauthenticated")
		}
		if binding && m.Type != stun.BindingRequest {
			t.Fatalf("%s classified as a Binding request", m.Type)
		}
	})
}

func testCert(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

type peerAddr stun.XORMappedAddress

func (a *peerAddr) AddTo(m *stun.Message) error {
	return (*stun.XORMappedAddress)(a).AddToAs(m, stun.AttrXORPeerAddress)
}

type channelNumber uint16

func (n channelNumber) AddTo(m *stun.Message) error {
	m.Add(stun.AttrChannelNumber, []byte{byte(n >> 8), byte(n), 0, 0})
	return nil
}

// FuzzServerDatagrams: whatever a client with an allocation and a bound
// channel sends (ChannelData for bound and unbound channels, STUN of any
// method and class, junk), the server neither crashes nor stops
// answering: after each datagram an authenticated Refresh still succeeds.
func FuzzServerDatagrams(f *testing.F) {
	f.Add([]byte{0x40, 0x00, 0x00, 0x04, 'd', 'a', 't', 'a'})
	f.Add([]byte{0x40, 0x01, 0x00, 0x04, 'd', 'a', 't', 'a'})
	f.Add([]byte{0x40, 0x00, 0xff, 0xff, 'x'})
	f.Add(stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodChannelBind, stun.ClassRequest), channelNumber(0x4000)).Raw)
	f.Add(stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodSend, stun.ClassIndication)).Raw)
	f.Add(stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint).Raw)
	var (
		once   sync.Once
		client *rawTURN
		peer   *net.UDPConn
	)
	f.Fuzz(func(t *testing.T, datagram []byte) {
		once.Do(func() {
			// Shared by the whole fuzzing process: no t.Cleanup of a
			// single run may close it.
			s, err := ListenServer(ServerConfig{STUNListen: "127.0.0.1:0", TURNSecret: testSecret, RelayIP: netip.MustParseAddr("127.0.0.1"),
				AllowPeers: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, STUNRate: 1e9, STUNBurst: 1e9, Logger: quietLogger()})
			if err != nil {
				t.Fatal(err)
			}
			c, err := net.Dial("udp", s.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			if peer, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 5)}); err != nil {
				t.Fatal(err)
			}
			client = newRaw(t, c, false, "fuzz")
			pa := &peerAddr{IP: net.IPv4(127, 0, 0, 5), Port: peer.LocalAddr().(*net.UDPAddr).Port}
			if client.allocate(udpTransport) != 0 || client.request(stun.MethodChannelBind, channelNumber(0x4000), pa) != 0 {
				t.Fatal("no allocation with a bound channel to fuzz")
			}
		})
		client.t = t
		if _, err := client.c.Write(datagram); err != nil {
			t.Fatal(err)
		}
		if code := client.request(stun.MethodRefresh, turnLifetime(600)); code != 0 {
			t.Fatalf("after %x: Refresh code %d", datagram, code)
		}
	})
}
