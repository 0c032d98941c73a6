package udpbatch

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestRead(t *testing.T) {
	tests := []struct {
		name    string
		network string
		addr    string
		sizes   []int
		slots   int
		bufSize int
		want    []int // N per message of the first Read
	}{
		{"ipv4 batch", "udp4", "127.0.0.1:0", []int{10, 200, 1400}, 8, 2048, []int{10, 200, 1400}},
		{"fewer slots than datagrams", "udp4", "127.0.0.1:0", []int{1, 2, 3}, 2, 2048, []int{1, 2}},
		{"truncated", "udp4", "127.0.0.1:0", []int{100}, 4, 50, []int{50}},
		{"ipv6", "udp6", "[::1]:0", []int{64}, 4, 2048, []int{64}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rx, err := net.ListenPacket(tt.network, tt.addr)
			if err != nil {
				t.Skipf("no %s: %v", tt.network, err)
			}
			defer rx.Close()
			tx, err := net.ListenPacket(tt.network, tt.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Close()
			for i, n := range tt.sizes {
				if _, err := tx.WriteTo(bytes.Repeat([]byte{byte(i + 1)}, n), rx.LocalAddr()); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(20 * time.Millisecond) // let all arrive before the one read
			r, err := NewReader(rx.(*net.UDPConn), 8)
			if err != nil {
				t.Fatal(err)
			}
			msgs := make([]Message, tt.slots)
			for i := range msgs {
				msgs[i].Buf = make([]byte, tt.bufSize)
			}
			got, err := r.Read(msgs)
			if err != nil {
				t.Fatal(err)
			}
			if got != len(tt.want) {
				t.Fatalf("read %d datagrams, want %d", got, len(tt.want))
			}
			from := tx.LocalAddr().(*net.UDPAddr).AddrPort()
			for i := 0; i < got; i++ {
				m := msgs[i]
				if m.N != tt.want[i] || m.Buf[0] != byte(i+1) {
					t.Errorf("datagram %d: %d bytes starting %d, want %d", i, m.N, m.Buf[0], tt.want[i])
				}
				if m.Addr.Port() != from.Port() || m.Addr.Addr().Unmap() != from.Addr().Unmap() {
					t.Errorf("datagram %d from %v, want %v", i, m.Addr, from)
				}
			}
		})
	}
}

// A Stream hands out datagrams one by one across its batch reads.
func TestStream(t *testing.T) {
	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	tx, err := net.DialUDP("udp4", nil, rx.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	const n = 11 // more than two batches of 4
	for i := range n {
		if _, err := tx.Write([]byte{byte(i), byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	s, err := NewStream(rx, 4, 64)
	if err != nil {
		t.Fatal(err)
	}
	_ = rx.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i := range n {
		m, err := s.Next()
		if err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		if d := m.Data(); len(d) != 2 || d[0] != byte(i) || m.Addr != tx.LocalAddr().(*net.UDPAddr).AddrPort() {
			t.Fatalf("datagram %d: % x from %v", i, d, m.Addr)
		}
	}
}

func TestReadAfterClose(t *testing.T) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewReader(c, 4)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := r.Read([]Message{{Buf: make([]byte, 10)}})
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	c.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read did not return after Close")
	}
}

func TestAddrPortZeroForOtherFamilies(t *testing.T) {
	if got := addrPort(new(unix.RawSockaddrAny)); got != (netip.AddrPort{}) {
		t.Fatalf("addrPort(AF_UNSPEC) = %v", got)
	}
}

// BenchmarkRead reads batches of 32 datagrams; allocs/op must be 0.
func BenchmarkRead(b *testing.B) {
	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer rx.Close()
	_ = rx.SetReadBuffer(4 << 20)
	tx, err := net.DialUDP("udp4", nil, rx.LocalAddr().(*net.UDPAddr))
	if err != nil {
		b.Fatal(err)
	}
	defer tx.Close()
	r, err := NewReader(rx, 32)
	if err != nil {
		b.Fatal(err)
	}
	msgs := make([]Message, 32)
	for i := range msgs {
		msgs[i].Buf = make([]byte, 2048)
	}
	pkt := make([]byte, 1400)
	b.ReportAllocs()
	for b.Loop() {
		for range 32 {
			if _, err := tx.Write(pkt); err != nil {
				b.Fatal(err)
			}
		}
		for got := 0; got < 32; {
			n, err := r.Read(msgs[:32-got])
			if err != nil {
				b.Fatal(err)
			}
			got += n
		}
	}
}
