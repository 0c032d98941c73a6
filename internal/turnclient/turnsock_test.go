package turnclient

import (
	"bytes"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
	"github.com/punchd/punchd/internal/channeldata"
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
	n, err := NewNet(func(p []byte) {
		mu.Lock()
		delivered = append(delivered, append([]byte(nil), p...))
		mu.Unlock()
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := n.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	relayConn := allocate(t, pc, srv.Addr().String(), secret, n)

	// Not the relay's own address: relays may not reach its low ports.
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	peerAP := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	ch := n.Channel(pc.LocalAddr().(*net.UDPAddr).Port, peerAP)
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

// Only the TURN server is heard on a TURN client socket: ChannelData from
// anyone else never reaches the tunnel, and their STUN (a forged
// ChannelBind answer, say) never reaches pion or the channel table.
func TestTurnSocketHearsOnlyItsServer(t *testing.T) {
	listen := func(ip string) *net.UDPConn {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	server := listen("127.0.0.1")
	for _, tt := range []struct {
		name     string
		stranger *net.UDPConn
	}{
		{"same IP, another port", listen("127.0.0.1")},
		{"another IP, the server's port", nil}, // filled below
		{"another IP", listen("127.0.0.3")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.stranger == nil {
				port := server.LocalAddr().(*net.UDPAddr).Port
				c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: port})
				if err != nil {
					t.Skipf("port %d on 127.0.0.2 taken: %v", port, err)
				}
				t.Cleanup(func() { c.Close() })
				tt.stranger = c
			}
			uc := listen("127.0.0.1")
			var delivered []string
			s, err := newTurnSocket(uc, func(p []byte) { delivered = append(delivered, string(p)) })
			if err != nil {
				t.Fatal(err)
			}
			// pion's first write names the server.
			bind := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodChannelBind, stun.ClassRequest),
				&stun.RawAttribute{Type: stun.AttrChannelNumber, Value: []byte{0x40, 0x01, 0, 0}},
				&peerAddr{IP: net.IPv4(198, 18, 0, 9), Port: 50000})
			if _, err := s.WriteTo(bind.Raw, server.LocalAddr()); err != nil {
				t.Fatal(err)
			}
			cd := func(payload string) []byte {
				b := make([]byte, 4+len(payload))
				channeldata.PutHeader(b, 0x4001, len(payload))
				copy(b[4:], payload)
				return b
			}
			forged := stun.MustBuild(stun.NewTransactionIDSetter(bind.TransactionID), stun.NewType(stun.MethodChannelBind, stun.ClassSuccessResponse))
			to := uc.LocalAddr()
			for _, d := range []struct {
				from *net.UDPConn
				b    []byte
			}{
				{tt.stranger, cd("from a stranger")},
				{tt.stranger, forged.Raw},
				{server, cd("from the server")},
				{server, stun.MustBuild(stun.TransactionID, stun.BindingSuccess).Raw},
			} {
				if _, err := d.from.WriteTo(d.b, to); err != nil {
					t.Fatal(err)
				}
			}
			_ = uc.SetReadDeadline(time.Now().Add(2 * time.Second))
			buf := make([]byte, 2048)
			n, from, err := s.ReadFrom(buf)
			if err != nil {
				t.Fatal(err)
			}
			m := &stun.Message{Raw: buf[:n]}
			if m.Decode() != nil || m.Type != stun.BindingSuccess || from.String() != server.LocalAddr().String() {
				t.Fatalf("pion got %v from %v first, want the server's Binding success", m.Type, from)
			}
			if len(delivered) != 1 || delivered[0] != "from the server" {
				t.Fatalf("tunnel got %q, want only the server's ChannelData", delivered)
			}
			if s.Stray() != 2 {
				t.Fatalf("%d stray datagrams counted, want 2", s.Stray())
			}
			ts := &turnSockets{byPort: map[int]*turnSocket{1: s}}
			if _, _, ok := ts.channel(1, netip.MustParseAddrPort("198.18.0.9:50000")).Bound(); ok {
				t.Fatal("a stranger's ChannelBind answer bound the channel")
			}
		})
	}
}

// FuzzTurnSocketChannels: any sequence of requests pion sends and answers
// the server returns leaves the channel table consistent (one number per
// peer, one peer per number, only numbers pion asked for, bounded).
func FuzzTurnSocketChannels(f *testing.F) {
	bind := func(num uint16, port int) []byte {
		return stun.MustBuild(stun.NewTransactionIDSetter([stun.TransactionIDSize]byte{byte(num), byte(port)}),
			stun.NewType(stun.MethodChannelBind, stun.ClassRequest),
			&stun.RawAttribute{Type: stun.AttrChannelNumber, Value: []byte{byte(num >> 8), byte(num), 0, 0}},
			&peerAddr{IP: net.IPv4(198, 18, 0, 9), Port: port}).Raw
	}
	ok := func(num uint16, port int) []byte {
		return stun.MustBuild(stun.NewTransactionIDSetter([stun.TransactionIDSize]byte{byte(num), byte(port)}),
			stun.NewType(stun.MethodChannelBind, stun.ClassSuccessResponse)).Raw
	}
	// Input: records of [kind byte][len byte][bytes]; kind even is a
	// request pion writes, odd an answer the server sends.
	record := func(kind byte, b []byte) []byte { return append([]byte{kind, byte(len(b))}, b...) }
	f.Add(append(record(0, bind(0x4001, 1)), record(1, ok(0x4001, 1))...))
	f.Add(append(append(record(0, bind(0x4001, 1)), record(0, bind(0x4001, 2))...), append(record(1, ok(0x4001, 2)), record(1, ok(0x4001, 1))...)...))
	f.Fuzz(func(t *testing.T, in []byte) {
		s := &turnSocket{pending: map[[stun.TransactionIDSize]byte]channelBinding{}}
		empty := map[netip.AddrPort]uint16{}
		s.bound.Store(&empty)
		asked := map[uint16]bool{}
		for len(in) >= 2 {
			kind, n := in[0], int(in[1])
			in = in[2:]
			if n > len(in) {
				n = len(in)
			}
			msg := in[:n]
			in = in[n:]
			if kind%2 == 0 {
				s.observeRequest(msg)
				m := &stun.Message{Raw: append([]byte(nil), msg...)}
				if m.Decode() == nil {
					if v, err := m.Get(stun.AttrChannelNumber); err == nil && len(v) >= 2 {
						asked[uint16(v[0])<<8|uint16(v[1])] = true
					}
				}
			} else {
				s.observeResponse(msg)
			}
			if len(s.pending) > 64 {
				t.Fatalf("%d pending ChannelBinds, bound is 64", len(s.pending))
			}
		}
		numbers := map[uint16]netip.AddrPort{}
		for peer, num := range *s.bound.Load() {
			if !asked[num] {
				t.Fatalf("channel %#x bound but never asked for", num)
			}
			if other, dup := numbers[num]; dup {
				t.Fatalf("channel %#x bound to %s and %s", num, peer, other)
			}
			numbers[num] = peer
		}
	})
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// allocate makes a pion TURN client on pc (through n) and allocates a
// relay at server, closed when the test ends.
func allocate(t *testing.T, pc net.PacketConn, server, secret string, n *Net) net.PacketConn {
	t.Helper()
	user, pass, err := turn.GenerateLongTermTURNRESTCredentials(secret, "peer", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	client, err := turn.NewClient(&turn.ClientConfig{
		Conn: pc, TURNServerAddr: server, Username: user, Password: pass, Realm: turnserver.Realm,
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
	return relayConn
}
