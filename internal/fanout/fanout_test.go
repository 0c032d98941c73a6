package fanout

import (
	"bytes"
	"encoding/binary"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"testing"

	"golang.zx2c4.com/wireguard/tun"

	"github.com/punchd/punchd/internal/identity"
)

// fakeTUN is a tun.Device whose reads come from a queue of batches and
// whose writes are recorded.
type fakeTUN struct {
	reads   [][][]byte
	written [][]byte
}

func (f *fakeTUN) File() *os.File { return nil }
func (f *fakeTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if len(f.reads) == 0 {
		return 0, os.ErrClosed
	}
	batch := f.reads[0]
	f.reads = f.reads[1:]
	for i, p := range batch {
		sizes[i] = copy(bufs[i][offset:], p)
	}
	return len(batch), nil
}
func (f *fakeTUN) Write(bufs [][]byte, offset int) (int, error) {
	for _, b := range bufs {
		f.written = append(f.written, append([]byte(nil), b[offset:]...))
	}
	return len(bufs), nil
}
func (f *fakeTUN) MTU() (int, error)        { return 1420, nil }
func (f *fakeTUN) Name() (string, error)    { return "fake0", nil }
func (f *fakeTUN) Events() <-chan tun.Event { return nil }
func (f *fakeTUN) Close() error             { return nil }
func (f *fakeTUN) BatchSize() int           { return 8 }

// ipv4UDP builds an IPv4/UDP packet (proto 17 unless given).
func ipv4UDP(src, dst string, payload string, proto ...byte) []byte {
	p := make([]byte, 28+len(payload))
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:4], uint16(len(p)))
	p[8] = 64
	p[9] = 17
	if len(proto) > 0 {
		p[9] = proto[0]
	}
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(p[12:16], s[:])
	copy(p[16:20], d[:])
	binary.BigEndian.PutUint16(p[10:12], ipv4Checksum(p[:20]))
	binary.BigEndian.PutUint16(p[20:22], 4445)
	binary.BigEndian.PutUint16(p[22:24], 4445)
	binary.BigEndian.PutUint16(p[24:26], uint16(8+len(payload)))
	copy(p[28:], payload)
	return p
}

func ipv6Packet(src, dst string, next byte, payload string) []byte {
	p := make([]byte, 40+len(payload))
	p[0] = 0x60
	binary.BigEndian.PutUint16(p[4:6], uint16(len(payload)))
	p[6] = next
	p[7] = 1
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(p[8:24], s[:])
	copy(p[24:40], d[:])
	copy(p[40:], payload)
	return p
}

func TestIsGroupPacket(t *testing.T) {
	bcast := []netip.Addr{netip.MustParseAddr("10.188.255.255")}
	tests := []struct {
		name string
		pkt  []byte
		want bool
	}{
		{"subnet broadcast", ipv4UDP("10.188.0.1", "10.188.255.255", "lobby"), true},
		{"limited broadcast", ipv4UDP("10.188.0.1", "255.255.255.255", "lobby"), true},
		{"mDNS", ipv4UDP("10.188.0.1", "224.0.0.251", "q"), true},
		{"SSDP", ipv4UDP("10.188.0.1", "239.255.255.250", "M-SEARCH"), true},
		{"unicast", ipv4UDP("10.188.0.1", "10.188.0.2", "x"), false},
		{"another subnet's broadcast", ipv4UDP("10.188.0.1", "192.168.1.255", "x"), false},
		{"IGMP", ipv4UDP("10.188.0.1", "224.0.0.22", "report", 2), false},
		{"IPv6 mDNS", ipv6Packet("fd50::1", "ff02::fb", 17, "12345678q"), true},
		{"IPv6 unicast", ipv6Packet("fd50::1", "fd50::2", 17, "12345678"), false},
		{"ICMPv6 (neighbour discovery)", ipv6Packet("fd50::1", "ff02::1:ff00:2", 58, "ns"), false},
		{"hop-by-hop (MLD)", ipv6Packet("fd50::1", "ff02::16", 0, "mld"), false},
		{"short", []byte{0x45, 0}, false},
		{"not IP", bytes.Repeat([]byte{0x20}, 40), false},
	}
	for _, tt := range tests {
		if got := isGroupPacket(tt.pkt, bcast); got != tt.want {
			t.Errorf("%s: isGroupPacket = %v, want %v", tt.name, got, tt.want)
		}
	}
}

type fanoutHost struct {
	key  identity.PublicKey
	v4   netip.Prefix
	v6   netip.Prefix
	fake *fakeTUN
	f    *TUN
}

func newFanoutHosts(t *testing.T, n int) []*fanoutHost {
	t.Helper()
	hosts := make([]*fanoutHost, n)
	for i := range hosts {
		k, err := identity.GeneratePrivateKey()
		if err != nil {
			t.Fatal(err)
		}
		h := &fanoutHost{
			key:  k.PublicKey(),
			v4:   netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 188, 0, byte(i + 1)}), 16),
			v6:   netip.PrefixFrom(netip.MustParseAddr("fd50:756e:6368::"+string(rune('1'+i))), 48),
			fake: &fakeTUN{},
		}
		h.f = New(h.fake, []netip.Prefix{h.v4, h.v6}, slog.New(slog.NewTextHandler(io.Discard, nil)))
		hosts[i] = h
	}
	for _, h := range hosts {
		for _, o := range hosts {
			if o != h {
				h.f.SetPeer(o.key, []netip.Prefix{netip.PrefixFrom(o.v4.Addr(), 32), netip.PrefixFrom(o.v6.Addr(), 128)})
			}
		}
	}
	return hosts
}

const testOffset = 16 // wireguard-go reads at an offset; so do we

func readAll(t *testing.T, f *TUN) [][]byte {
	t.Helper()
	bufs := make([][]byte, 8)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	sizes := make([]int, 8)
	var out [][]byte
	for i := 0; i < 10; i++ {
		n, err := f.Read(bufs, sizes, testOffset)
		for j := 0; j < n; j++ {
			out = append(out, append([]byte(nil), bufs[j][testOffset:testOffset+sizes[j]]...))
		}
		if err != nil {
			return out
		}
	}
	t.Fatal("fake TUN never ran dry")
	return nil
}

func write(t *testing.T, f *TUN, pkts ...[]byte) {
	t.Helper()
	bufs := make([][]byte, len(pkts))
	for i, p := range pkts {
		bufs[i] = append(make([]byte, testOffset), p...)
	}
	if n, err := f.Write(bufs, testOffset); err != nil || n != len(pkts) {
		t.Fatalf("Write: %d, %v", n, err)
	}
}

// A broadcast, a multicast and an IPv6 multicast read from one host's TUN
// reach every other host's TUN unchanged; unicast passes as it is.
func TestFanoutDeliversGroupPacketsToEveryPeer(t *testing.T) {
	hosts := newFanoutHosts(t, 4)
	a := hosts[0]
	src4, src6 := a.v4.Addr().String(), a.v6.Addr().String()
	uni1 := ipv4UDP(src4, "10.188.0.2", "unicast 1")
	uni2 := ipv4UDP(src4, "10.188.0.3", "unicast 2")
	group := [][]byte{
		ipv4UDP(src4, "10.188.255.255", "who is hosting?"),
		ipv4UDP(src4, "224.0.0.251", "mdns query"),
		ipv6Packet(src6, "ff02::fb", 17, "12345678 mdns6"),
	}
	a.fake.reads = [][][]byte{{uni1, group[0], uni2}, {group[1], group[2]}}

	got := readAll(t, a.f)
	if len(got) != 2+3*len(group) {
		t.Fatalf("read %d packets, want 2 unicast + %d envelopes", len(got), 3*len(group))
	}
	if !bytes.Equal(got[0], uni1) || !bytes.Equal(got[1], uni2) {
		t.Fatal("unicast packets changed or reordered among themselves")
	}
	perPeer := map[netip.Addr][][]byte{}
	for _, env := range got[2:] {
		if !isEnvelope(env, netip.AddrFrom4([4]byte(env[16:20]))) {
			t.Fatalf("not an envelope: %x", env)
		}
		if ipv4Checksum(env[:20]) != 0 {
			t.Errorf("envelope IPv4 header checksum wrong")
		}
		dst := netip.AddrFrom4([4]byte(env[16:20]))
		perPeer[dst] = append(perPeer[dst], env)
	}
	for _, h := range hosts[1:] {
		envs := perPeer[h.v4.Addr()]
		if len(envs) != len(group) {
			t.Fatalf("%s got %d envelopes, want %d", h.v4.Addr(), len(envs), len(group))
		}
		write(t, h.f, envs...)
		if len(h.fake.written) != len(group) {
			t.Fatalf("%s wrote %d packets to its TUN, want %d", h.v4.Addr(), len(h.fake.written), len(group))
		}
		for i, p := range h.fake.written {
			if !bytes.Equal(p, group[i]) {
				t.Errorf("%s: packet %d arrived as %x, want %x", h.v4.Addr(), i, p, group[i])
			}
		}
	}
}

// Envelopes are peer input: anything but a peer's own group packet is
// dropped, and the packets around it still get through.
func TestFanoutRejectsBadEnvelopes(t *testing.T) {
	hosts := newFanoutHosts(t, 3)
	a, b, c := hosts[0], hosts[1], hosts[2]
	self4 := b.v4.Addr()
	good := ipv4UDP(a.v4.Addr().String(), "10.188.255.255", "hello")
	env := func(src netip.Addr, inner []byte) []byte { return appendEnvelope(nil, src, self4, inner) }
	truncated := env(a.v4.Addr(), good)
	truncated = truncated[:len(truncated)-2]
	stranger := netip.MustParseAddr("10.188.9.9")
	bad := map[string][]byte{
		"from a stranger":            env(stranger, ipv4UDP(stranger.String(), "10.188.255.255", "x")),
		"inner source spoofed":       env(a.v4.Addr(), ipv4UDP(c.v4.Addr().String(), "10.188.255.255", "x")),
		"inner unicast":              env(a.v4.Addr(), ipv4UDP(a.v4.Addr().String(), "10.188.0.3", "x")),
		"inner truncated":            truncated,
		"inner too short":            env(a.v4.Addr(), []byte{0x45, 0, 0}),
		"inner IPv6 spoofed":         env(a.v4.Addr(), ipv6Packet(c.v6.Addr().String(), "ff02::fb", 17, "12345678")),
		"inner IPv6 neighbour disc.": env(a.v4.Addr(), ipv6Packet(a.v6.Addr().String(), "ff02::1", 58, "ra")),
		"inner not IP":               env(a.v4.Addr(), bytes.Repeat([]byte{0x10}, 40)),
	}
	for name, e := range bad {
		b.fake.written = nil
		plain := ipv4UDP(a.v4.Addr().String(), self4.String(), "plain")
		write(t, b.f, plain, e, env(a.v4.Addr(), good))
		if len(b.fake.written) != 2 || !bytes.Equal(b.fake.written[0], plain) || !bytes.Equal(b.fake.written[1], good) {
			t.Errorf("%s: TUN got %d packets %x; want the plain packet and the good broadcast only", name, len(b.fake.written), b.fake.written)
		}
	}
	if b.f.dropped.Load() != uint64(len(bad)) {
		t.Errorf("dropped counter %d, want %d", b.f.dropped.Load(), len(bad))
	}
}

// Without peers a group packet goes nowhere; after removePeer, that peer
// gets no more envelopes; the queue of envelopes is bounded.
func TestFanoutPeersAndBounds(t *testing.T) {
	hosts := newFanoutHosts(t, 3)
	a := hosts[0]
	bc := ipv4UDP(a.v4.Addr().String(), "10.188.255.255", "x")
	a.f.RemovePeer(hosts[1].key)
	a.fake.reads = [][][]byte{{bc}}
	if got := readAll(t, a.f); len(got) != 1 || [4]byte(got[0][16:20]) != hosts[2].v4.Addr().As4() {
		t.Fatalf("after removing a peer: %d envelopes; want one, to the remaining peer", len(got))
	}
	a.f.RemovePeer(hosts[2].key)
	a.fake.reads = [][][]byte{{bc}}
	if got := readAll(t, a.f); len(got) != 0 {
		t.Fatalf("without peers: %d packets read, want none", len(got))
	}

	lone := newFanoutHosts(t, 2)[0]
	batch := make([][]byte, 8)
	for i := range batch {
		batch[i] = bc
	}
	for i := 0; i < 2*maxPendingFanout/len(batch); i++ {
		lone.f.queueEnvelopes(bc)
		for range batch {
			lone.f.queueEnvelopes(bc)
		}
	}
	if n := len(lone.f.pending); n != maxPendingFanout {
		t.Fatalf("%d envelopes pending, want the bound %d", n, maxPendingFanout)
	}
	if lone.f.dropped.Load() == 0 {
		t.Error("envelopes beyond the bound not counted as dropped")
	}
}

func TestLastAddr(t *testing.T) {
	for p, want := range map[string]string{"10.188.3.4/16": "10.188.255.255", "192.168.1.7/24": "192.168.1.255", "10.0.0.1/30": "10.0.0.3"} {
		if got := lastAddr(netip.MustParsePrefix(p)); got.String() != want {
			t.Errorf("lastAddr(%s) = %s, want %s", p, got, want)
		}
	}
}

// The common case, unicast through the wrapper, must not allocate.
func BenchmarkFanoutUnicast(b *testing.B) {
	hosts := newFanoutHosts(&testing.T{}, 2)
	f := hosts[0].f
	pkt := ipv4UDP(hosts[0].v4.Addr().String(), hosts[1].v4.Addr().String(), string(make([]byte, 1200)))
	loop := &loopTUN{pkt: pkt}
	f.Device = loop
	bufs := [][]byte{make([]byte, 2048)}
	sizes := make([]int, 1)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := f.Read(bufs, sizes, testOffset); err != nil {
			b.Fatal(err)
		}
		if _, err := f.Write(bufs[:1], testOffset); err != nil {
			b.Fatal(err)
		}
	}
}

// loopTUN reads pkt forever and discards writes.
type loopTUN struct {
	fakeTUN
	pkt []byte
}

func (l *loopTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	sizes[0] = copy(bufs[0][offset:], l.pkt)
	return 1, nil
}
func (l *loopTUN) Write(bufs [][]byte, offset int) (int, error) { return len(bufs), nil }

// Envelopes come from peers: no input may crash the opener.
func FuzzFanoutWrite(f *testing.F) {
	hosts := newFanoutHosts(&testing.T{}, 2)
	a, b := hosts[0], hosts[1]
	f.Add(appendEnvelope(nil, a.v4.Addr(), b.v4.Addr(), ipv4UDP(a.v4.Addr().String(), "10.188.255.255", "x")))
	f.Add(appendEnvelope(nil, a.v4.Addr(), b.v4.Addr(), ipv6Packet(a.v6.Addr().String(), "ff02::fb", 17, "12345678")))
	f.Add([]byte{0x45})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		b.fake.written = b.fake.written[:0]
		buf := append(make([]byte, testOffset), pkt...)
		if _, err := b.f.Write([][]byte{buf}, testOffset); err != nil {
			t.Fatal(err)
		}
		for _, w := range b.fake.written {
			if isEnvelope(pkt, b.v4.Addr()) && !isGroupPacket(w, b.f.bcast) {
				t.Fatalf("an envelope let through a non-group packet %x", w)
			}
		}
	})
}
