package turnserver

import (
	"bytes"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/punchd/punchd/internal/sockbuf"
)

func newTestServerConn(t testing.TB) *serverConn {
	t.Helper()
	raw, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	s, err := newServerConn(raw, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Queued writes arrive as the same datagrams in the same order, whether
// they went out one by one or as GSO runs.
func TestServerConnWrites(t *testing.T) {
	tests := []struct {
		name  string
		sizes []int // per datagram; negative: to the second client
		noGSO bool
	}{
		{"run of equal sizes", []int{1200, 1200, 1200, 1200, 400}, false},
		{"mixed sizes", []int{100, 1400, 60, 1400, 1400, 92}, false},
		{"two clients interleaved", []int{1000, -1000, 1000, -1000, 1000}, false},
		{"without GSO", []int{1200, 1200, -1200}, true},
		{"more than a batch", func() []int {
			s := make([]int, 3*serverBatch+5)
			for i := range s {
				s[i] = 1300
			}
			return s
		}(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServerConn(t)
			if tt.noGSO {
				s.w.DisableGSO()
			}
			var clients [2]*net.UDPConn
			for i := range clients {
				c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				_, _ = sockbuf.Set(c, sockbuf.Size) // more than a batch must fit
				clients[i] = c
			}
			var want [2][][]byte
			for i, n := range tt.sizes {
				c := 0
				if n < 0 {
					c, n = 1, -n
				}
				p := bytes.Repeat([]byte{byte(i)}, n)
				want[c] = append(want[c], p)
				if k, err := s.WriteTo(p, clients[c].LocalAddr()); err != nil || k != n {
					t.Fatalf("WriteTo: %d, %v", k, err)
				}
			}
			buf := make([]byte, 2048)
			for c := range clients {
				_ = clients[c].SetReadDeadline(time.Now().Add(5 * time.Second))
				for i, w := range want[c] {
					n, from, err := clients[c].ReadFrom(buf)
					if err != nil {
						t.Fatalf("client %d datagram %d: %v", c, i, err)
					}
					if !bytes.Equal(buf[:n], w) || from.String() != s.LocalAddr().String() {
						t.Fatalf("client %d datagram %d: %d bytes [%d…] from %v, want %d [%d…]", c, i, n, buf[0], from, len(w), w[0])
					}
				}
			}
		})
	}
}

// Reads hand out one address per client, so pion's read loop does not
// allocate one per datagram.
func TestServerConnReadsShareAddresses(t *testing.T) {
	s := newTestServerConn(t)
	var senders [2]*net.UDPConn
	for i := range senders {
		c, err := net.DialUDP("udp4", nil, s.LocalAddr().(*net.UDPAddr))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		senders[i] = c
	}
	for _, c := range []int{0, 1, 0, 0} {
		if _, err := senders[c].Write([]byte{byte(c)}); err != nil {
			t.Fatal(err)
		}
	}
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	var addrs []net.Addr
	buf := make([]byte, 64)
	for range 4 {
		n, from, err := s.ReadFrom(buf)
		if err != nil || n != 1 {
			t.Fatalf("ReadFrom: %d, %v", n, err)
		}
		if from.String() != senders[buf[0]].LocalAddr().String() {
			t.Fatalf("datagram %d from %v", buf[0], from)
		}
		addrs = append(addrs, from)
	}
	if addrs[0] != addrs[2] || addrs[0] != addrs[3] || addrs[0] == addrs[1] {
		t.Fatalf("addresses not shared per client: %p %p %p %p", addrs[0], addrs[1], addrs[2], addrs[3])
	}
}

func TestServerConnClose(t *testing.T) {
	s := newTestServerConn(t)
	done := make(chan error, 1)
	go func() {
		_, _, err := s.ReadFrom(make([]byte, 64))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("ReadFrom after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadFrom did not return after Close")
	}
	if _, err := s.WriteTo([]byte("x"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("WriteTo after Close: %v", err)
	}
}

// BenchmarkServerConnWrite queues 64 datagrams of 1400 bytes to one
// client per op, what pion does per relayed burst; allocs/op must be 0.
func BenchmarkServerConnWrite(b *testing.B) {
	s := newTestServerConn(b)
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	to := c.LocalAddr()
	p := make([]byte, 1400)
	b.SetBytes(64 * 1400)
	b.ReportAllocs()
	for b.Loop() {
		for range 64 {
			if _, err := s.WriteTo(p, to); err != nil {
				b.Fatal(err)
			}
		}
	}
}
