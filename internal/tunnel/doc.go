// Package tunnel carries WireGuard: the wireguard-go device on a TUN, and the
// Bind that shares the device's UDP socket with ICE and sends each peer's
// packets over the path ICE selected (or a peer relay). LAN-style
// broadcast and multicast are internal/fanout's: the device hands
// wireguard-go a fanout.TUN in place of the TUN.
package tunnel
