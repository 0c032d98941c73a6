package tunnel

// DefaultMTU is WireGuard's usual 1420 (a 1500-byte IPv6 underlay: 40
// bytes IPv6, 8 UDP, 32 WireGuard) less the 4-byte TURN ChannelData
// header: a relay reached over IPv6 would otherwise need 1504-byte
// datagrams, which UDP GSO refuses and networks fragment or drop.
const DefaultMTU = 1416
