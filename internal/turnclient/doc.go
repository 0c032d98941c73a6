// Package turnclient owns the sockets pion/ice opens itself for `punchd
// up`: the network an agent is given (Net, net.go), which buffers its UDP
// sockets and coalesces writes to TURN servers over TCP/TLS, and the TURN
// client's UDP socket with the relay shortcut (turnsock.go): relayed
// ChannelData goes straight to the tunnel, and the tunnel writes
// ChannelData on a bound channel itself (Channel).
//
// It is apart from icepeer because it is a transport under pion, not part
// of running ICE: it knows TURN framing and sockets, nothing of peers,
// signals or path choice. icepeer gives each agent a Net and asks it for
// the selected relay pair's Channel.
package turnclient
