package udpbatch

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

func TestBatchAdd(t *testing.T) {
	a := netip.MustParseAddrPort("127.0.0.1:9")
	b := netip.MustParseAddrPort("127.0.0.1:10")
	type dgram struct {
		to   netip.AddrPort
		size int
	}
	many := make([]dgram, 70)
	for i := range many {
		many[i] = dgram{a, 1000}
	}
	run := func(sizes ...int) []dgram {
		var out []dgram
		for _, s := range sizes {
			out = append(out, dgram{a, s})
		}
		return out
	}
	tests := []struct {
		name  string
		in    []dgram
		gso   bool
		want  []int // datagrams per message
		arena int   // Reset size; 0: exactly the bytes added
	}{
		{"one", run(100), true, []int{1}, 0},
		{"equal run", run(100, 100, 100), true, []int{3}, 0},
		{"short tail joins", run(100, 100, 60), true, []int{3}, 0},
		{"short tail ends the run", run(100, 60, 100), true, []int{2, 1}, 0},
		{"larger starts a new run", run(60, 100, 100), true, []int{1, 2}, 0},
		{"segment limit", many, true, []int{64, 6}, 0},
		{"byte limit", run(30000, 30000, 30000), true, []int{2, 1}, 0},
		{"oversized alone", run(MaxGSOBytes+10, 100), true, []int{1, 1}, 0},
		{"another destination", []dgram{{a, 100}, {a, 100}, {b, 100}, {b, 100}, {a, 100}}, true, []int{2, 2, 1}, 0},
		{"without GSO", run(100, 100, 100), false, []int{1, 1, 1}, 0},
		{"arena too small grows", run(100, 100, 100, 100), true, []int{2, 2}, 250},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var joined []byte
			size := tt.arena
			for i, d := range tt.in {
				joined = append(joined, bytes.Repeat([]byte{byte(i)}, d.size)...)
				if tt.arena == 0 {
					size += d.size
				}
			}
			bt := NewBatch(8)
			bt.Reset(size, tt.gso)
			off := 0
			for i, d := range tt.in {
				p := joined[off : off+d.size]
				off += d.size
				if !bt.Add(net.UDPAddrFromAddrPort(d.to), d.to, nil, p) {
					t.Fatalf("datagram %d: batch full", i)
				}
			}
			msgs := bt.Messages()
			if len(msgs) != len(tt.want) {
				t.Fatalf("%d messages, want %d", len(msgs), len(tt.want))
			}
			var got []byte
			for i, m := range msgs {
				got = append(got, m.Buffers[0]...)
				if (tt.want[i] > 1) != (m.OOB != nil) {
					t.Errorf("message %d: %d datagrams but segment cmsg %v", i, tt.want[i], m.OOB != nil)
				}
				if m.OOB != nil {
					seg := int(binary.NativeEndian.Uint16(m.OOB[unix.CmsgLen(0):]))
					if n := (len(m.Buffers[0]) + seg - 1) / seg; n != tt.want[i] {
						t.Errorf("message %d: segment %d makes %d datagrams, want %d", i, seg, n, tt.want[i])
					}
				}
			}
			if !bytes.Equal(got, joined) {
				t.Fatal("laid-out bytes differ from the datagrams")
			}
		})
	}
}

func TestBatchFullAndReset(t *testing.T) {
	a := netip.MustParseAddrPort("127.0.0.1:9")
	bt := NewBatch(2)
	bt.Reset(300, false)
	for i := range 2 {
		if !bt.Add(net.UDPAddrFromAddrPort(a), a, []byte{1, 2}, make([]byte, 100)) {
			t.Fatalf("datagram %d refused", i)
		}
	}
	if bt.Add(net.UDPAddrFromAddrPort(a), a, nil, make([]byte, 100)) {
		t.Fatal("a third message fit in a batch of two")
	}
	if len(bt.Messages()[0].Buffers[0]) != 102 {
		t.Fatal("header not laid out before the payload")
	}
	bt.Reset(300, true)
	if len(bt.Messages()) != 0 {
		t.Fatal("Reset left messages")
	}
}

func BenchmarkBatch(b *testing.B) {
	a := netip.MustParseAddrPort("127.0.0.1:9")
	ua := net.UDPAddrFromAddrPort(a)
	bt := NewBatch(128)
	pkt := make([]byte, 1400)
	hdr := []byte{0x40, 0, 5, 120}
	b.ReportAllocs()
	for b.Loop() {
		bt.Reset(128*1404, true)
		for range 128 {
			bt.Add(ua, a, hdr, pkt)
		}
	}
}
