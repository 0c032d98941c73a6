package tunnel

import (
	"bytes"
	"encoding/binary"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// groCmsg builds a UDP_GRO control message carrying seg in n bytes (the
// kernel writes an int; 2 bytes is the oldest form), after an unrelated
// control message when lead is set.
func groCmsg(seg uint32, n int, lead bool) []byte {
	var out []byte
	add := func(level, typ int32, data []byte) {
		b := make([]byte, unix.CmsgSpace(len(data)))
		h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
		h.Level, h.Type = level, typ
		h.SetLen(unix.CmsgLen(len(data)))
		copy(b[unix.CmsgLen(0):], data)
		out = append(out, b...)
	}
	if lead {
		add(unix.SOL_IP, unix.IP_TOS, []byte{0, 0, 0, 0})
	}
	data := make([]byte, n)
	if n == 2 {
		binary.NativeEndian.PutUint16(data, uint16(seg))
	} else {
		binary.NativeEndian.PutUint32(data, seg)
	}
	add(unix.SOL_UDP, unix.UDP_GRO, data)
	return out
}

func TestGROSegment(t *testing.T) {
	tests := []struct {
		name string
		oob  []byte
		want int
	}{
		{"int", groCmsg(1200, 4, false), 1200},
		{"u16", groCmsg(1452, 2, false), 1452},
		{"after another cmsg", groCmsg(500, 4, true), 500},
		{"none", nil, 0},
		{"truncated", groCmsg(1200, 4, false)[:unix.CmsgLen(0)+1], 0},
		// A last message whose length leaves no room for its padding
		// (found by FuzzGROSegments: it used to slice past the end).
		{"unpadded last message", groCmsg(1200, 4, true)[:unix.CmsgLen(4)], 0},
	}
	for _, tt := range tests {
		if got := groSegment(tt.oob); got != tt.want {
			t.Errorf("%s: segment %d, want %d", tt.name, got, tt.want)
		}
	}
}

// FuzzGROSegments: whatever the control message and the segment size say,
// cutting a coalesced read hands out every byte exactly once, in order,
// in at most len(data) datagrams, each of the segment size but the last.
func FuzzGROSegments(f *testing.F) {
	f.Add(groCmsg(4, 4, false), []byte("aaaabbbbcc"))
	f.Add(groCmsg(3, 2, true), []byte("abcdefgh"))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}, []byte("x"))
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, oob, data []byte) {
		seg := groSegment(oob)
		if seg < 0 {
			t.Fatalf("negative segment size %d", seg)
		}
		var got [][]byte
		for off := 0; off < len(data); {
			if len(got) > len(data) {
				t.Fatalf("more datagrams than bytes (segment %d, %d bytes)", seg, len(data))
			}
			pkt, next := segmentAt(data, seg, off)
			if next <= off {
				t.Fatalf("no progress at offset %d (segment %d)", off, seg)
			}
			got = append(got, pkt)
			off = next
		}
		if !bytes.Equal(bytes.Join(got, nil), data) {
			t.Fatal("the datagrams do not add up to the read")
		}
		if seg > 0 && seg <= len(data) {
			for i, p := range got[:max(len(got)-1, 0)] {
				if len(p) != seg {
					t.Fatalf("datagram %d has %d bytes, segment size %d", i, len(p), seg)
				}
			}
		}
	})
}
