// Package turnserver is the embedded STUN/TURN server of `punchd
// rendezvous`: pion/turn behind a batched, GSO-writing socket
// (serverconn.go), relay sockets that refuse the server's own services
// and non-global peers and hand relay-to-relay traffic over in memory
// (relay.go), and the RFC 5780 responder that lets `punchd nat` tell NAT
// behaviours apart (rfc5780.go).
package turnserver

import "log/slog"

// orDefault is the nil => slog.Default() rule of every config here.
func orDefault(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.Default()
	}
	return l
}
