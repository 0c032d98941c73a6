package tunnel

import (
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
)

// marked is a WireGuard data packet carrying i in its counter field.
func marked(i int) []byte {
	p := wgPacket(4, 64)
	p[16], p[17] = byte(i), byte(i>>8)
	return p
}

func marker(p []byte) int { return int(p[16]) | int(p[17])<<8 }

// receiver collects what a ReceiveFunc returns until told to stop or the
// receiver ends (Close).
type receiver struct {
	mu   sync.Mutex
	pkts [][]byte
	eps  []conn.Endpoint
	done chan struct{}
}

func startReceiver(t *testing.T, fn conn.ReceiveFunc) *receiver {
	t.Helper()
	r := &receiver{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		bufs := make([][]byte, batchSize)
		for i := range bufs {
			bufs[i] = make([]byte, 2048)
		}
		sizes := make([]int, batchSize)
		eps := make([]conn.Endpoint, batchSize)
		for {
			n, err := fn(bufs, sizes, eps)
			if err != nil {
				return
			}
			r.mu.Lock()
			for i := 0; i < n; i++ {
				r.pkts = append(r.pkts, append([]byte(nil), bufs[i][:sizes[i]]...))
				r.eps = append(r.eps, eps[i])
			}
			r.mu.Unlock()
		}
	}()
	return r
}

// waitFor waits until n packets arrived and returns them.
func (r *receiver) waitFor(t *testing.T, n int) ([][]byte, []conn.Endpoint) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r.mu.Lock()
		got := len(r.pkts)
		if got >= n {
			p, e := append([][]byte(nil), r.pkts...), append([]conn.Endpoint(nil), r.eps...)
			r.mu.Unlock()
			return p, e
		}
		r.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("received %d of %d packets", got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Two Binds as two peers: held packets flush in order once the path is
// set, and arrive tagged with the sender's logical endpoint.
func TestTwoBindsPendingFlushAndTagging(t *testing.T) {
	a, _ := openLoopback(t)
	b, bfns := openLoopback(t)
	ka, kb := key(t), key(t)
	r := startReceiver(t, bfns[0])
	b.SetPath(ka, Path{Direct: netipAddrPort(t, a)})

	ep, err := a.ParseEndpoint(a.EndpointFor(kb))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := a.Send([][]byte{marked(i)}, ep); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(20 * time.Millisecond)
	if pkts, _ := r.waitFor(t, 0); len(pkts) != 0 {
		t.Fatalf("%d packets left before there was a path", len(pkts))
	}
	a.SetPath(kb, Path{Direct: netipAddrPort(t, b)})
	if err := a.Send([][]byte{marked(3), marked(4)}, ep); err != nil {
		t.Fatal(err)
	}
	pkts, eps := r.waitFor(t, 5)
	for i, p := range pkts {
		if marker(p) != i {
			t.Fatalf("packet %d has marker %d: held packets must go first, in order", i, marker(p))
		}
		if pe, ok := eps[i].(*peerEndpoint); !ok || pe.key != ka {
			t.Fatalf("packet %d endpoint %T %v, want a's logical endpoint", i, eps[i], eps[i].DstToString())
		}
	}
}

// Packets sent while SetPath runs never overtake the held ones.
func TestHeldPacketsGoFirstUnderConcurrency(t *testing.T) {
	a, _ := openLoopback(t)
	b, bfns := openLoopback(t)
	kb := key(t)
	r := startReceiver(t, bfns[0])
	ep, _ := a.ParseEndpoint(a.EndpointFor(kb))
	for i := 0; i < 3; i++ {
		_ = a.Send([][]byte{marked(i)}, ep)
	}
	const total = 200
	start := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-start
		for i := 3; i < total; i++ {
			_ = a.Send([][]byte{marked(i)}, ep)
		}
	}()
	close(start)
	a.SetPath(kb, Path{Direct: netipAddrPort(t, b)})
	wg.Wait()
	// Some of the racing packets may have been held and the oldest held
	// ones dropped (maxPending), but what arrives is in send order.
	time.Sleep(50 * time.Millisecond)
	pkts, _ := r.waitFor(t, 1)
	last := -1
	for _, p := range pkts {
		if m := marker(p); m <= last {
			t.Fatalf("marker %d after %d: a packet overtook a held one", m, last)
		} else {
			last = m
		}
	}
	if last != total-1 {
		t.Fatalf("last marker %d, want %d", last, total-1)
	}
}

// Send, SetPath, DeliverRelay and receiving at once: for the race detector.
func TestConcurrentSendAndSetPath(t *testing.T) {
	a, afns := openLoopback(t)
	b, _ := openLoopback(t)
	c, _ := openLoopback(t)
	peer := key(t)
	ra := startReceiver(t, afns[1])
	ep, _ := a.ParseEndpoint(a.EndpointFor(peer))
	relay := relayFunc(func(p []byte) { a.DeliverRelay(peer, p) })
	paths := []Path{{Direct: netipAddrPort(t, b)}, {}, {Relay: relay}, {Direct: netipAddrPort(t, c)}}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bufs := [][]byte{marked(g), marked(g)}
			for i := 0; i < 300; i++ {
				_ = a.Send(bufs, ep)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 300; i++ {
			a.SetPath(peer, paths[i%len(paths)])
			_ = a.STUNConn().LocalAddr()
			_ = a.LocalPort()
		}
	}()
	wg.Wait()
	// Whatever interleaving happened, the Bind still works.
	a.SetPath(peer, Path{Relay: relay})
	if err := a.Send([][]byte{marked(7)}, ep); err != nil {
		t.Fatal(err)
	}
	ra.waitFor(t, 1)
}

// wireguard-go closes and reopens the Bind (port change, BindUpdate): the
// STUN side keeps its reader across that and follows the new port.
func TestReopenKeepsSTUNConn(t *testing.T) {
	b := NewBind(nil, BindOptions{ListenAddr: netip.MustParseAddr("127.0.0.1")})
	t.Cleanup(func() { b.Close(); b.Shutdown() })
	if _, _, err := b.Open(0); err != nil {
		t.Fatal(err)
	}
	type res struct {
		pkt  []byte
		from net.Addr
		err  error
	}
	got := make(chan res, 1)
	go func() {
		buf := make([]byte, 200)
		n, from, err := b.STUNConn().ReadFrom(buf)
		got <- res{buf[:n], from, err}
	}()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Send([][]byte{marked(1)}, addrEndpoint{dst: netip.MustParseAddrPort("127.0.0.1:9")}); !errors.Is(err, errNoSocket) {
		t.Fatalf("Send while closed: %v", err)
	}
	fns, port, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	startReceiver(t, fns[0])
	if la := b.STUNConn().LocalAddr().(*net.UDPAddr); la.Port != int(port) || !la.IP.Equal(net.IPv4(127, 0, 0, 1)) {
		t.Fatalf("LocalAddr after reopen %v, want 127.0.0.1:%d", la, port)
	}
	sender, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	msg := stunMsg(8)
	if _, err := sender.WriteTo(msg, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port)}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		if r.err != nil || len(r.pkt) != len(msg) || r.from.String() != sender.LocalAddr().String() {
			t.Fatalf("STUN after reopen: %d bytes from %v, %v", len(r.pkt), r.from, r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("STUN reader did not get the packet after reopen")
	}
}

func TestSTUNConnLocalAddr(t *testing.T) {
	b, _ := openLoopback(t)
	port := int(b.LocalPort())
	la := func() *net.UDPAddr { return b.STUNConn().LocalAddr().(*net.UDPAddr) }
	if a := la(); !a.IP.Equal(net.IPv4(127, 0, 0, 1)) || a.Port != port {
		t.Fatalf("bound to 127.0.0.1: LocalAddr %v", a)
	}
	b.SetAdvertiseIP(netip.MustParseAddr("198.51.100.7"))
	if a := la(); a.String() != "198.51.100.7:"+strconv.Itoa(port) {
		t.Fatalf("after SetAdvertiseIP: %v", a)
	}
	b.SetAdvertiseIP(netip.Addr{})
	if a := la(); !a.IP.Equal(net.IPv4(127, 0, 0, 1)) {
		t.Fatalf("after clearing the override: %v", a)
	}
	// The mux must never be shown 0.0.0.0 (it would enumerate every
	// interface, the TUN included).
	wild := NewBind(nil, BindOptions{})
	t.Cleanup(func() { wild.Close(); wild.Shutdown() })
	if _, _, err := wild.Open(0); err != nil {
		t.Fatal(err)
	}
	a := wild.STUNConn().LocalAddr().(*net.UDPAddr)
	if a.IP.IsUnspecified() || a.IP.To4() == nil || a.Port != int(wild.LocalPort()) {
		t.Fatalf("wildcard bind advertises %v, want a specific IPv4 and port %d", a, wild.LocalPort())
	}
	t.Logf("advertised on a wildcard bind: %v", a)
}

func TestRelayJumboAndQueueFull(t *testing.T) {
	b, fns := openLoopback(t)
	peer := key(t)
	jumbo := wgPacket(4, 9000)
	jumbo[8000] = 0x5A
	b.DeliverRelay(peer, jumbo)
	bufs := [][]byte{make([]byte, 9100)}
	sizes, eps := []int{0}, []conn.Endpoint{nil}
	n, err := fns[1](bufs, sizes, eps)
	if err != nil || n != 1 || sizes[0] != 9000 || bufs[0][8000] != 0x5A {
		t.Fatalf("jumbo relay packet: n=%d size=%d err=%v", n, sizes[0], err)
	}
	// A device that does not read: the queue bounds memory, extra packets
	// are dropped, nothing blocks.
	done := make(chan struct{})
	go func() {
		for i := 0; i < relayQueue+100; i++ {
			b.DeliverRelay(peer, marked(i))
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("DeliverRelay blocked on a full queue")
	}
	if got := len(b.relayIn); got != relayQueue {
		t.Fatalf("queue holds %d, want %d", got, relayQueue)
	}
	if got := b.Drops(); got.Relay != 100 || got.STUN != 0 {
		t.Fatalf("Drops() = %+v, want 100 relayed, 0 STUN", got)
	}
}

func TestIPv6PathFailsClearly(t *testing.T) {
	b, _ := openLoopback(t)
	peer := key(t)
	b.SetPath(peer, Path{Direct: netip.MustParseAddrPort("[2001:db8::1]:51820")})
	ep, _ := b.ParseEndpoint(b.EndpointFor(peer))
	if err := b.Send([][]byte{marked(0)}, ep); err == nil || !strings.Contains(err.Error(), "no IPv6 tunnel socket") {
		t.Fatalf("IPv6 path: %v", err)
	}
	// 4in6 is just IPv4.
	rx, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	defer rx.Close()
	ap := rx.LocalAddr().(*net.UDPAddr).AddrPort()
	b.SetPath(peer, Path{Direct: netip.AddrPortFrom(netip.AddrFrom16(ap.Addr().As16()), ap.Port())})
	if err := b.Send([][]byte{marked(0)}, ep); err != nil {
		t.Fatalf("4in6 path: %v", err)
	}
	if got := (*b.byAddr.Load())[ap]; got == nil || got.key != peer {
		t.Fatal("4in6 Direct not unmapped for receive-side lookup")
	}
}

// ICE that does not read must not stall the socket: STUN beyond the queue
// is dropped.
func TestSTUNQueueDropsWhenFull(t *testing.T) {
	b, _ := openLoopback(t)
	from := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}
	done := make(chan struct{})
	go func() {
		for i := 0; i < stunQueue+50; i++ {
			b.stun.deliver(stunMsg(8), from)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("deliver blocked on a full STUN queue")
	}
	if got := len(b.stun.in); got != stunQueue {
		t.Fatalf("queue holds %d, want %d", got, stunQueue)
	}
	if got := b.Drops(); got.STUN != 50 || got.Relay != 0 {
		t.Fatalf("Drops() = %+v, want 50 STUN, 0 relayed", got)
	}
	// Deadlines are no-ops and Close leaves the socket alone.
	c := b.STUNConn()
	if c.SetDeadline(time.Now()) != nil || c.SetReadDeadline(time.Now()) != nil || c.SetWriteDeadline(time.Now()) != nil || c.Close() != nil {
		t.Fatal("deadline setters and Close must be no-ops")
	}
	if _, err := c.WriteTo(stunMsg(0), from); err != nil {
		t.Fatalf("WriteTo after STUNConn.Close: %v", err)
	}
}

func TestSourcesEndpoint(t *testing.T) {
	known := netip.MustParseAddrPort("198.18.0.9:4000")
	other := netip.MustParseAddrPort("198.18.0.10:4000")
	peer := &peerEndpoint{}
	srcs := sources{byAddr: map[netip.AddrPort]*peerEndpoint{known: peer}}
	mapped := netip.AddrPortFrom(netip.AddrFrom16(known.Addr().As16()), known.Port())
	tests := []struct {
		from netip.AddrPort
		want conn.Endpoint
	}{
		{known, peer},
		{known, peer}, // from the cache
		{other, addrEndpoint{dst: other}},
		{known, peer}, // the cache follows the source
		{mapped, peer},
		{other, addrEndpoint{dst: other}},
	}
	for i, tt := range tests {
		if got := srcs.endpoint(tt.from); got != tt.want {
			t.Errorf("%d: endpoint(%v) = %v, want %v", i, tt.from, got, tt.want)
		}
	}
}

// Birthday packets on the shared socket go to the punch handler, not to
// WireGuard or ICE; WriteRaw sends from the shared socket.
func TestPunchPacketsAndWriteRaw(t *testing.T) {
	b := NewBind(nil, BindOptions{ListenAddr: netip.MustParseAddr("127.0.0.1")})
	t.Cleanup(func() { b.Close(); b.Shutdown() })
	fns, port, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	startReceiver(t, fns[0])
	type got struct {
		pkt  []byte
		from netip.AddrPort
	}
	ch := make(chan got, 1)
	b.SetPunchHandler(func(pkt []byte, from netip.AddrPort) { ch <- got{append([]byte(nil), pkt...), from} })
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	if _, err := peer.WriteTo(punchPacket(33), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port)}); err != nil {
		t.Fatal(err)
	}
	select {
	case g := <-ch:
		if g.from != peer.LocalAddr().(*net.UDPAddr).AddrPort() || string(g.pkt[:4]) != "PDbd" {
			t.Fatalf("punch handler got %q from %v", g.pkt, g.from)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("birthday packet did not reach the punch handler")
	}
	if err := b.WriteRaw([]byte("probe"), peer.LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
		t.Fatal(err)
	}
	_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 16)
	n, from, err := peer.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != "probe" || from.Port() != port {
		t.Fatalf("WriteRaw: %q from %v, %v; want \"probe\" from port %d", buf[:n], from, err, port)
	}
}
