// Package hardnat runs birthday punching (internal/birthday) for one peer
// of `punchd up`: when to start, which side this host plays, the signals
// to the peer, and moving the tunnel to a found path and back. It is the
// orchestration; internal/birthday holds the sockets, the spray and the
// probe format. It is apart from the daemon because it needs only a few
// hooks (Config), not the daemon's peer table.
//
// Birthday punching works between a symmetric NAT and a port-restricted
// one, where ICE can only relay. The symmetric (hard) side
// starts it once ICE has carried the tunnel over a relay for relayedFor;
// the relay keeps carrying it meanwhile. A hit moves WireGuard to the
// found path (the hard side's winning socket, the easy side's own tunnel
// socket) until the path's keepalives stop; then ICE's path is back and
// the pair waits out the cooldown, as after a miss.
package hardnat
