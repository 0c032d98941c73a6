package birthday

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

func testKey(b byte) Key {
	var k Key
	for i := range k {
		k[i] = b
	}
	return k
}

func TestSealOpen(t *testing.T) {
	key, other := testKey(1), testKey(2)
	sess := Session{1, 2, 3, 4, 5, 6, 7, 8}
	p := Packet{Kind: KindProbe, Session: sess, Index: 7, Port: 40000}
	good := Seal(&key, p)
	flip := func(i int) []byte { b := bytes.Clone(good); b[i] ^= 1; return b }
	tests := []struct {
		name string
		b    []byte
		key  *Key
		sess Session
		want error
	}{
		{"round trip", good, &key, sess, nil},
		{"other key", good, &other, sess, ErrBadMAC},
		{"other session", good, &key, Session{9}, ErrOtherSess},
		{"index flipped", flip(13), &key, sess, ErrBadMAC},
		{"mac flipped", flip(PacketSize - 1), &key, sess, ErrBadMAC},
		{"magic flipped", flip(0), &key, sess, ErrNotBirthday},
		{"short", good[:PacketSize-1], &key, sess, ErrNotBirthday},
		{"long", append(bytes.Clone(good), 0), &key, sess, ErrNotBirthday},
		{"empty", nil, &key, sess, ErrNotBirthday},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Open(tt.key, tt.sess, tt.b)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Open: %v, want %v", err, tt.want)
			}
			if tt.want == nil && got != p {
				t.Fatalf("Open: %+v, want %+v", got, p)
			}
		})
	}
	// Never STUN (top two bits of the first byte zero) nor WireGuard (1-4).
	if good[0]&0xC0 == 0 || (good[0] >= 1 && good[0] <= 4) {
		t.Fatalf("first byte %#x could be STUN or WireGuard", good[0])
	}
	bad := Seal(&key, Packet{Kind: 9, Session: sess})
	if _, err := Open(&key, sess, bad); err == nil {
		t.Fatal("unknown kind accepted")
	}
}

func FuzzOpen(f *testing.F) {
	key := testKey(3)
	sess := Session{1}
	f.Add(Seal(&key, Packet{Kind: KindAck, Session: sess, Port: 1}))
	f.Add([]byte("PDbd"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Open(&key, sess, b)
		if err != nil {
			return
		}
		if !bytes.Equal(Seal(&key, p), b) {
			t.Fatalf("accepted %x, which does not re-seal to itself", b)
		}
	})
}

func TestConfigLimits(t *testing.T) {
	tests := []struct {
		in, want Config
	}{
		{Config{}, Config{Sockets: 256, Probes: 2048, Rate: 200, Timeout: 20 * time.Second, Cooldown: 10 * time.Minute}},
		{Config{Sockets: 5000, Probes: 100000, Rate: 100000, Timeout: time.Hour, Cooldown: time.Second},
			Config{Sockets: 1024, Probes: 8192, Rate: 1000, Timeout: time.Minute, Cooldown: time.Second}},
		{Config{Sockets: 16, Probes: 64, Rate: 100, Timeout: time.Second, Cooldown: time.Minute},
			Config{Sockets: 16, Probes: 64, Rate: 100, Timeout: time.Second, Cooldown: time.Minute}},
	}
	for _, tt := range tests {
		if got := tt.in.Limits(); got != tt.want {
			t.Errorf("%+v.Limits() = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestProbeOrder(t *testing.T) {
	seq := 0
	counting := func(k int) int { seq++; return seq % k }
	tests := []struct {
		name      string
		predicted []uint16
		n         int
		first     []uint16
	}{
		{"random only", nil, 2048, nil},
		{"predicted first, repeats and low ports skipped", []uint16{20001, 20002, 20001, 80, 20003}, 100, []uint16{20001, 20002, 20003}},
		{"more predicted than n", []uint16{3000, 3001, 3002}, 2, []uint16{3000, 3001}},
		{"whole range", nil, 70000, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := probeOrder(tt.predicted, tt.n, counting)
			want := min(tt.n, 65536-lowestPort)
			if len(got) != want {
				t.Fatalf("%d ports, want %d", len(got), want)
			}
			seen := map[uint16]bool{}
			for i, p := range got {
				if p < lowestPort {
					t.Fatalf("port %d below %d", p, lowestPort)
				}
				if seen[p] {
					t.Fatalf("port %d twice", p)
				}
				seen[p] = true
				if i < len(tt.first) && p != tt.first[i] {
					t.Fatalf("port %d is %d, want %d (predicted first)", i, p, tt.first[i])
				}
			}
		})
	}
}

func TestLearnPattern(t *testing.T) {
	tests := []struct {
		ports []uint16
		want  Pattern
	}{
		{[]uint16{20000, 20001, 20002, 20003}, Pattern{Sequential: true, Stride: 1, Exact: true}},
		{[]uint16{5000, 5002, 5004}, Pattern{Sequential: true, Stride: 2, Exact: true}},
		{[]uint16{20000, 20001, 20004, 20005}, Pattern{Sequential: true, Stride: 1}},
		{[]uint16{9000, 8999, 8998}, Pattern{Sequential: true, Stride: -1, Exact: true}},
		{[]uint16{20000, 20001}, Pattern{}},               // too few to tell
		{[]uint16{20000, 20000, 20000}, Pattern{}},        // port preserved: not symmetric-sequential
		{[]uint16{41234, 1033, 60001}, Pattern{}},         // random
		{[]uint16{20000, 20001, 19990}, Pattern{}},        // direction changes
		{[]uint16{20000, 20100, 20200, 20300}, Pattern{}}, // stride beyond maxStride
	}
	for _, tt := range tests {
		if got := LearnPattern(tt.ports); got != tt.want {
			t.Errorf("LearnPattern(%v) = %+v, want %+v", tt.ports, got, tt.want)
		}
	}
	p := Pattern{Sequential: true, Stride: 1}
	if got := p.Predict(65533, 2, 3); len(got) != 2 || got[0] != 65534 || got[1] != 65535 {
		t.Errorf("Predict at the top of the range: %v", got)
	}
	if got := (Pattern{}).Predict(2000, 5, 5); got != nil {
		t.Errorf("random pattern predicted %v", got)
	}
}

func TestCooldown(t *testing.T) {
	now := time.Unix(1000, 0)
	c := NewCooldown(time.Minute, func() time.Time { return now })
	if ok, _ := c.Allow("a|b"); !ok {
		t.Fatal("fresh pair not allowed")
	}
	c.Miss("a|b")
	if ok, left := c.Allow("a|b"); ok || left != time.Minute {
		t.Fatalf("after a miss: allowed %v, %v left", ok, left)
	}
	if ok, _ := c.Allow("a|c"); !ok {
		t.Fatal("another pair held back")
	}
	now = now.Add(time.Minute)
	if ok, _ := c.Allow("a|b"); !ok {
		t.Fatal("still held after the cooldown")
	}
	c.Miss("a|b")
	c.Hit("a|b")
	if ok, _ := c.Allow("a|b"); !ok {
		t.Fatal("held after a hit")
	}
}

// loopbackEasy is an easy side on its own loopback socket.
func loopbackEasy(t *testing.T, cfg Config, key Key, sess Session) (*Easy, *net.UDPConn, *atomic.Int64) {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var sends atomic.Int64
	e := NewEasy(cfg, key, sess, func(b []byte, to netip.AddrPort) error {
		sends.Add(1)
		_, err := c.WriteToUDPAddrPort(b, to)
		return err
	})
	go deliverFrom(c, e)
	return e, c, &sends
}

// Without NATs on loopback: the easy side is told the hard side's real
// ports (a perfect prediction), so the test is about the exchange, the
// path both ends report and the packet counts, not about luck.
func TestAttemptLoopback(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	key, _ := NewKey()
	sess, _ := NewSession()
	cfg := Config{Sockets: 16, Probes: 64, Rate: 1000, Timeout: 10 * time.Second}
	h, err := ListenHard(cfg, key, sess, netip.MustParseAddr("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	e, ec, sends := loopbackEasy(t, cfg, key, sess)
	var ports []uint16
	for i := range h.Len() {
		ports = append(ports, h.Conn(i).LocalAddr().(*net.UDPAddr).AddrPort().Port())
	}
	// Probe the last socket first: the ports before it are wrong guesses.
	predicted := append([]uint16{1, 2}, ports[len(ports)-1])

	var wg sync.WaitGroup
	var hardHit *Hit
	var hardErr error
	sprayed := make(chan struct{})
	wg.Go(func() {
		hardHit, hardErr = h.Run(ctx, ec.LocalAddr().(*net.UDPAddr).AddrPort(), func() { close(sprayed) })
	})
	<-sprayed // the spray goes first, as with NATs
	easyHit, err := e.Run(ctx, netip.MustParseAddr("127.0.0.1"), predicted)
	if err != nil {
		t.Fatalf("easy side: %v", err)
	}
	wg.Wait()
	if hardErr != nil {
		t.Fatalf("hard side: %v", hardErr)
	}
	defer hardHit.Conn.Close()
	if got := hardHit.Conn.LocalAddr().(*net.UDPAddr).AddrPort().Port(); got != ports[len(ports)-1] || easyHit.Remote.Port() != got {
		t.Fatalf("hard side won on port %d, easy side sees %v; the probed socket is on %d", got, easyHit.Remote, ports[len(ports)-1])
	}
	if hardHit.Remote != ec.LocalAddr().(*net.UDPAddr).AddrPort() {
		t.Fatalf("hard side's remote %v, want the easy socket %v", hardHit.Remote, ec.LocalAddr())
	}
	if easyHit.Probes != 1 || sends.Load() != 1 {
		// Ports 1 and 2 are below lowestPort and skipped.
		t.Fatalf("easy side took %d probes (%d sends), want 1", easyHit.Probes, sends.Load())
	}
	if hardHit.Sent > cfg.Sockets+ackCopies {
		t.Fatalf("hard side sent %d packets, cap %d sprays + %d acks", hardHit.Sent, cfg.Sockets, ackCopies)
	}
	// The winner is the caller's now: the other sockets are closed, the
	// winner still carries traffic.
	if _, err := h.Conn(0).WriteToUDPAddrPort([]byte("x"), hardHit.Remote); err == nil && h.Conn(0) != hardHit.Conn {
		t.Fatal("a losing socket is still open")
	}
	if _, err := hardHit.Conn.WriteToUDPAddrPort([]byte("wg"), hardHit.Remote); err != nil {
		t.Fatalf("winner closed: %v", err)
	}
}

// A stranger who knows the session but not the key cannot win the path;
// the easy side stops at its probe cap.
func TestAttemptRejectsStrangersAndStopsAtCap(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	key, sess := testKey(7), Session{7}
	cfg := Config{Sockets: 4, Probes: 40, Rate: 1000, Timeout: 5 * time.Second}
	h, err := ListenHard(cfg, key, sess, netip.MustParseAddr("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	stranger, _, _ := loopbackEasy(t, cfg, testKey(8), sess)
	var ports []uint16
	for i := range h.Len() {
		ports = append(ports, h.Conn(i).LocalAddr().(*net.UDPAddr).AddrPort().Port())
	}
	hctx, hcancel := context.WithTimeout(ctx, 2*time.Second)
	defer hcancel()
	done := make(chan error, 1)
	go func() {
		_, err := h.Run(hctx, netip.MustParseAddrPort("127.0.0.1:9"), nil)
		done <- err
	}()
	_, err = stranger.Run(ctx, netip.MustParseAddr("127.0.0.1"), ports)
	if !errors.Is(err, ErrMiss) {
		t.Fatalf("stranger's attempt: %v, want a miss", err)
	}
	if got := stranger.Stats.Sent.Load(); got != int64(cfg.Probes) {
		t.Fatalf("easy side sent %d probes, cap %d", got, cfg.Probes)
	}
	if err := <-done; !errors.Is(err, ErrMiss) {
		t.Fatalf("hard side: %v, want a miss", err)
	}
	if h.Stats.Junk.Load() < int64(len(ports)) {
		t.Fatalf("hard side counted %d junk packets, want at least %d", h.Stats.Junk.Load(), len(ports))
	}
}

// A Link carries the tunnel's packets on the hard side's socket, keeps
// itself alive with keepalives both ways, and says when the peer went
// quiet.
func TestLinkLoopback(t *testing.T) {
	key, sess := testKey(9), Session{9}
	hc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	ec, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ec.Close()
	got := make(chan string, 4)
	hard := NewHardLink(key, sess, &Hit{Conn: hc, Remote: ec.LocalAddr().(*net.UDPAddr).AddrPort()}, func(p []byte) { got <- string(p) })
	defer hard.Close()
	if _, err := ec.WriteToUDPAddrPort([]byte("wireguard"), hc.LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-got:
		if s != "wireguard" {
			t.Fatalf("delivered %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("tunnel packet not delivered from the hard side's socket")
	}
	if _, err := hard.Write([]byte("back")); err != nil {
		t.Fatal(err)
	}
	_ = ec.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	// The first datagram is the link's keepalive, sent at once.
	for range 2 {
		n, _, err := ec.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatal(err)
		}
		if string(buf[:n]) == "back" {
			break
		}
		if p, err := Open(&key, sess, buf[:n]); err != nil || p.Kind != KindKeepalive {
			t.Fatalf("unexpected datagram %q (%v)", buf[:n], err)
		}
	}
	select {
	case <-hard.Dead():
		t.Fatal("dead at once")
	default:
	}
	hard.Close()
	hard.Close()
}

// serveSTUN answers STUN binding requests on c with the sender's address
// until c is closed.
func serveSTUN(c *net.UDPConn) {
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		req := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
		if req.Decode() != nil || req.Type != stun.BindingRequest {
			continue
		}
		resp, err := stun.Build(stun.NewTransactionIDSetter(req.TransactionID), stun.BindingSuccess,
			&stun.XORMappedAddress{IP: from.Addr().AsSlice(), Port: int(from.Port())}, stun.Fingerprint)
		if err == nil {
			_, _ = c.WriteToUDPAddrPort(resp.Raw, from)
		}
	}
}

func TestLearnLoopback(t *testing.T) {
	srv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go serveSTUN(srv)
	h, err := ListenHard(Config{Sockets: 3}, testKey(1), Session{1}, netip.MustParseAddr("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ports, err := h.Learn(context.Background(), srv.LocalAddr().(*net.UDPAddr).AddrPort(), 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(ports) != 3 {
		t.Fatalf("%d ports for 3 sockets", len(ports))
	}
	for i, p := range ports {
		// No NAT on loopback: the mapped port is the socket's own.
		if want := h.Conn(i).LocalAddr().(*net.UDPAddr).AddrPort().Port(); p != want {
			t.Errorf("socket %d: STUN says port %d, the socket has %d", i, p, want)
		}
	}
}

// deliverFrom hands e the birthday packets arriving on c until c is
// closed, as the tunnel socket's classifier does.
func deliverFrom(c *net.UDPConn, e *Easy) {
	buf := make([]byte, 64)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		if Is(buf[:n]) {
			e.Deliver(buf[:n], from)
		}
	}
}
