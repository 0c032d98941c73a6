package channeldata

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func TestPayload(t *testing.T) {
	cd := func(num, length uint16, payload []byte) []byte {
		b := binary.BigEndian.AppendUint16(nil, num)
		b = binary.BigEndian.AppendUint16(b, length)
		return append(b, payload...)
	}
	tests := []struct {
		name string
		in   []byte
		want []byte
		ok   bool
	}{
		{"unpadded", cd(0x4000, 3, []byte("abc")), []byte("abc"), true},
		{"padded", cd(0x4001, 3, []byte("abc\x00")), []byte("abc"), true},
		{"empty", cd(0x4fff, 0, nil), []byte{}, true},
		{"length beyond datagram", cd(0x4000, 9, []byte("abc")), nil, false},
		{"STUN, not ChannelData", cd(0x0001, 0, make([]byte, 16)), nil, false},
		{"reserved range", cd(0x8000, 1, []byte("a")), nil, false},
		{"short", []byte{0x40, 0}, nil, false},
	}
	for _, tt := range tests {
		got, ok := Payload(tt.in)
		if ok != tt.ok || !bytes.Equal(got, tt.want) {
			t.Errorf("%s: got %q, %v; want %q, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}

// ChannelBind requests are remembered and confirmed by their answer only.
