package icepeer

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
	"github.com/punchd/punchd/internal/pionlog"
	"github.com/punchd/punchd/internal/turnserver"
	"golang.org/x/net/ipv4"
)

func TestTurnSocketLearnsChannels(t *testing.T) {
	peer := &net.UDPAddr{IP: net.IPv4(198, 18, 0, 9), Port: 50000}
	request := func(num uint16, to *net.UDPAddr) *stun.Message {
		return stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodChannelBind, stun.ClassRequest),
			stun.RawAttribute{Type: stun.AttrChannelNumber, Value: binary.BigEndian.AppendUint16(nil, num)},
			&peerAddr{IP: to.IP, Port: to.Port})
	}
	answer := func(class stun.MessageClass) func(*stun.Message) []byte {
		return func(req *stun.Message) []byte {
			return stun.MustBuild(stun.NewTransactionIDSetter(req.TransactionID), stun.NewType(stun.MethodChannelBind, class)).Raw
		}
	}
	other := func(req *stun.Message) []byte { // same transaction, another method
		return stun.MustBuild(stun.NewTransactionIDSetter(req.TransactionID), stun.BindingSuccess).Raw
	}
	// exchange is one ChannelBind as pion does it: the request goes out,
	// then (when answer is set) the server's answer comes in.
	type exchange struct {
		num    uint16
		to     *net.UDPAddr
		answer func(*stun.Message) []byte
	}
	success := answer(stun.ClassSuccessResponse)
	want := netip.MustParseAddrPort("198.18.0.9:50000")
	tests := []struct {
		name   string
		steps  []exchange
		stray  bool // a success answer to a request never seen
		number uint16
		bound  bool
	}{
		{"success binds", []exchange{{0x4001, peer, success}}, false, 0x4001, true},
		{"request alone does not", []exchange{{0x4001, peer, nil}}, false, 0, false},
		{"error response does not", []exchange{{0x4001, peer, answer(stun.ClassErrorResponse)}}, false, 0, false},
		{"other method does not", []exchange{{0x4001, peer, other}}, false, 0, false},
		{"unknown transaction does not", nil, true, 0, false},
		{"rebinding to another number replaces", []exchange{{0x4001, peer, success}, {0x4002, peer, success}}, false, 0x4002, true},
		{"number taken by another peer moves", []exchange{{0x4001, peer, success},
			{0x4001, &net.UDPAddr{IP: net.IPv4(198, 18, 0, 10), Port: 1}, success}}, false, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			uc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer uc.Close()
			s, err := newTurnSocket(uc, nil)
			if err != nil {
				t.Fatal(err)
			}
			s.server.Store(&net.UDPAddr{IP: net.IPv4(198, 18, 0, 2), Port: 3478})
			for _, e := range tt.steps {
				r := request(e.num, e.to)
				s.observeRequest(r.Raw)
				if e.answer != nil {
					s.observeResponse(e.answer(r))
				}
			}
			if tt.stray {
				s.observeResponse(success(request(0x4001, peer)))
			}
			ts := &turnSockets{byPort: map[int]*turnSocket{1: s}}
			n, _, ok := ts.channel(1, want).Bound()
			if ok != tt.bound || n != tt.number {
				t.Fatalf("Bound() = %#x, %v; want %#x, %v", n, ok, tt.number, tt.bound)
			}
		})
	}
}

type peerAddr stun.XORMappedAddress

func (a *peerAddr) AddTo(m *stun.Message) error {
	return (*stun.XORMappedAddress)(a).AddToAs(m, stun.AttrXORPeerAddress)
}

// The relay shortcut against pion's own TURN client and our TURN server
// on loopback: once pion has bound the channel, ChannelData we write
// reaches the peer from the relay address, and what the peer sends back
// reaches the tunnel directly, except STUN, which pion still gets.
func TestRelayShortcut(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	const secret = "test-secret"
	srv, err := turnserver.ListenServer(turnserver.ServerConfig{STUNListen: "127.0.0.1:0", TURNSecret: secret, RelayIP: lo,
		AllowPeers: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })

	var mu sync.Mutex
	var delivered [][]byte
	n, err := newBufferedNet(func(p []byte) {
		mu.Lock()
		delivered = append(delivered, append([]byte(nil), p...))
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := n.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	user, pass, err := turn.GenerateLongTermTURNRESTCredentials(secret, "peer", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	client, err := turn.NewClient(&turn.ClientConfig{
		Conn: pc, TURNServerAddr: srv.Addr().String(), Username: user, Password: pass, Realm: turnserver.Realm,
		Net: n, LoggerFactory: pionlog.New(quietLogger()),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	if err := client.Listen(); err != nil {
		t.Fatal(err)
	}
	relayConn, err := client.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { relayConn.Close() })

	// Not the relay's own address: relays may not reach its low ports.
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	peerAP := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	ch := n.sockets.channel(pc.LocalAddr().(*net.UDPAddr).Port, peerAP)
	if ch == nil {
		t.Fatal("TURN client socket not registered")
	}

	// pion binds the channel on its first write to the peer; bounded wait.
	buf := make([]byte, 2048)
	var number uint16
	var server *net.UDPAddr
	for i := 0; ; i++ {
		if _, err := relayConn.WriteTo([]byte("through pion"), peer.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		_ = peer.SetReadDeadline(time.Now().Add(time.Second))
		if _, _, err := peer.ReadFrom(buf); err != nil {
			t.Fatalf("write through pion: %v", err)
		}
		var ok bool
		if number, server, ok = ch.Bound(); ok {
			break
		}
		if i == 100 {
			t.Fatal("channel never bound")
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Our ChannelData, header and packet as two iovecs as the tunnel
	// sends them, reaches the peer from the relay address.
	pkt := bytes.Repeat([]byte{4, 0, 0, 0, 0xAB}, 20)
	hdr := binary.BigEndian.AppendUint16(nil, number)
	hdr = binary.BigEndian.AppendUint16(hdr, uint16(len(pkt)))
	if _, err := ch.WriteBatch([]ipv4.Message{{Buffers: [][]byte{hdr, pkt}, Addr: server}}, 0); err != nil {
		t.Fatal(err)
	}
	_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	k, from, err := peer.ReadFrom(buf)
	if err != nil || !bytes.Equal(buf[:k], pkt) || from.String() != relayConn.LocalAddr().String() {
		t.Fatalf("peer got %q from %v (%v); want the packet from the relay %v", buf[:k], from, err, relayConn.LocalAddr())
	}

	// Back from the peer: the tunnel's packets go to deliver, STUN to pion.
	if _, err := peer.WriteTo(pkt, relayConn.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	stunMsg := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
	if _, err := peer.WriteTo(stunMsg.Raw, relayConn.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	_ = relayConn.SetReadDeadline(time.Now().Add(5 * time.Second))
	k, _, err = relayConn.ReadFrom(buf)
	if err != nil || !bytes.Equal(buf[:k], stunMsg.Raw) {
		t.Fatalf("pion's relay conn got %x (%v); want the STUN message and nothing else", buf[:k], err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(delivered) != 1 || !bytes.Equal(delivered[0], pkt) {
		t.Fatalf("tunnel got %q; want the one packet", delivered)
	}
}

// BenchmarkTurnSocketReceive reads 64 relayed tunnel packets (ChannelData,
// 1400 bytes) and one STUN message per op from a TURN client socket: the
// packets go to the tunnel, the STUN message to pion. The allocations per
// op are the STUN message's address, which pion keeps; relayed packets
// cost none.
func BenchmarkTurnSocketReceive(b *testing.B) {
	lo := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
	uc, err := net.ListenUDP("udp4", lo)
	if err != nil {
		b.Fatal(err)
	}
	defer uc.Close()
	delivered := 0
	s, err := newTurnSocket(uc, func([]byte) { delivered++ })
	if err != nil {
		b.Fatal(err)
	}
	tx, err := net.DialUDP("udp4", nil, uc.LocalAddr().(*net.UDPAddr))
	if err != nil {
		b.Fatal(err)
	}
	defer tx.Close()
	cd := binary.BigEndian.AppendUint16(nil, 0x4001)
	cd = binary.BigEndian.AppendUint16(cd, 1400)
	cd = append(cd, 4, 0, 0, 0)
	cd = append(cd, make([]byte, 1396)...)
	stunMsg := stun.MustBuild(stun.TransactionID, stun.BindingSuccess).Raw
	p := make([]byte, 2048)
	b.ReportAllocs()
	for b.Loop() {
		for range 64 {
			if _, err := tx.Write(cd); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := tx.Write(stunMsg); err != nil {
			b.Fatal(err)
		}
		if _, _, err := s.ReadFrom(p); err != nil {
			b.Fatal(err)
		}
	}
	if delivered != 64*b.N {
		b.Fatalf("delivered %d of %d", delivered, 64*b.N)
	}
}
