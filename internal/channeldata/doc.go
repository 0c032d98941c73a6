// Package channeldata frames and parses TURN ChannelData messages
// (RFC 8656 section 12.4), the 4-byte-header form relayed packets take
// once a channel is bound. It is the one home of that wire format: the
// TURN client socket of icepeer parses it, the tunnel's Bind frames it
// when it writes on a bound channel.
package channeldata
