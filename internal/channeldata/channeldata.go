package channeldata

import "encoding/binary"

// HeaderSize is ChannelData's channel number and length fields.
const HeaderSize = 4

// PutHeader writes into h (at least HeaderSize bytes) the header of a
// ChannelData message carrying n bytes on channel. Over UDP the padding to
// four bytes is optional (RFC 8656 section 12.5), so none is added.
func PutHeader(h []byte, channel uint16, n int) {
	binary.BigEndian.PutUint16(h[0:2], channel)
	binary.BigEndian.PutUint16(h[2:4], uint16(n))
}

// Payload returns the data of a ChannelData message (RFC 8656
// §12.4: channel numbers 0x4000-0x4FFF; over UDP the padding is optional).
func Payload(d []byte) ([]byte, bool) {
	if len(d) < HeaderSize || d[0]&0xC0 != 0x40 {
		return nil, false
	}
	n := int(binary.BigEndian.Uint16(d[2:4]))
	if HeaderSize+n > len(d) {
		return nil, false
	}
	return d[HeaderSize : HeaderSize+n], true
}
