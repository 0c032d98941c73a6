package udpbatch

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"

	"golang.org/x/net/ipv4"
)

// fakeConn records what it is given; it refuses GSO messages (with EIO,
// as kernels without UDP_SEGMENT do) when noGSO, fails the datagram to
// failTo (ECONNREFUSED) and takes at most perCall messages a call.
type fakeConn struct {
	noGSO   bool
	failTo  netip.AddrPort
	perCall int
	got     [][]byte
}

func (f *fakeConn) WriteBatch(msgs []ipv4.Message, _ int) (int, error) {
	for i, m := range msgs {
		if i == f.perCall {
			return i, nil
		}
		if f.noGSO && len(m.OOB) > 0 {
			return i, syscall.EIO
		}
		if m.Addr.(*net.UDPAddr).AddrPort() == f.failTo {
			return i, syscall.ECONNREFUSED
		}
		f.got = append(f.got, append([]byte(nil), m.Buffers[0]...))
	}
	return len(msgs), nil
}

func TestWriter(t *testing.T) {
	a := netip.MustParseAddrPort("127.0.0.1:1000")
	bad := netip.MustParseAddrPort("127.0.0.1:1001")
	ua, ub := net.UDPAddrFromAddrPort(a), net.UDPAddrFromAddrPort(bad)
	three := func(b *Batch) {
		for _, p := range []string{"aaaa", "bbbb", "cc"} {
			b.Add(ua, a, nil, []byte(p))
		}
	}
	tests := []struct {
		name     string
		conn     fakeConn
		skip     bool
		fill     func(*Batch)
		want     []string
		wantErr  bool
		gsoAfter bool
	}{
		{"GSO joins the run", fakeConn{perCall: 64}, false, three, []string{"aaaabbbbcc"}, false, true},
		{"kernel refuses GSO", fakeConn{noGSO: true, perCall: 64}, false, three, []string{"aaaa", "bbbb", "cc"}, false, false},
		{"short writes", fakeConn{noGSO: true, perCall: 1}, false, three, []string{"aaaa", "bbbb", "cc"}, false, false},
		{"a failed datagram stops", fakeConn{failTo: bad, perCall: 64}, false, func(b *Batch) {
			b.Add(ua, a, nil, []byte("x"))
			b.Add(ub, bad, nil, []byte("y"))
			b.Add(ua, a, nil, []byte("z"))
		}, []string{"x"}, true, true},
		{"a failed datagram is skipped", fakeConn{failTo: bad, perCall: 64}, true, func(b *Batch) {
			b.Add(ua, a, nil, []byte("x"))
			b.Add(ub, bad, nil, []byte("y"))
			b.Add(ua, a, nil, []byte("z"))
		}, []string{"x", "z"}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &Writer{SkipFailed: tt.skip}
			err := w.Send(&tt.conn, NewBatch(8), 64, tt.fill)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Send: %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr && !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("Send: %v, want the datagram's error", err)
			}
			if len(tt.conn.got) != len(tt.want) {
				t.Fatalf("sent %q, want %q", tt.conn.got, tt.want)
			}
			for i := range tt.want {
				if string(tt.conn.got[i]) != tt.want[i] {
					t.Fatalf("sent %q, want %q", tt.conn.got, tt.want)
				}
			}
			if w.GSO() != tt.gsoAfter {
				t.Errorf("GSO afterwards %v, want %v", w.GSO(), tt.gsoAfter)
			}
		})
	}
}
