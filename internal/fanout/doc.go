// Package fanout carries LAN-style broadcast and multicast over the
// overlay (README, "LAN-style play"). WireGuard routes by destination, and
// a subnet broadcast or a multicast group is no peer's allowed IP, so
// wireguard-go drops what game lobbies, mDNS and SSDP send. fanout.TUN sits
// between the TUN device and wireguard-go: a group packet read from the TUN
// goes to every peer inside a small unicast envelope addressed to that
// peer's overlay address, and the peer's fanout.TUN opens the envelope
// before its kernel sees it, so the packet arrives with its original
// destination, as on a LAN. Link-control traffic (routing protocols,
// DHCP, neighbour discovery; fanout_filter.go) stays local.
//
// All it needs from the tunnel is the tun.Device it wraps and the peers'
// allowed IPs; package tunnel hands it wireguard-go in place of the TUN.
package fanout
