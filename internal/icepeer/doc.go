// Package icepeer is the ICE side of `punchd up`: one pion/ice agent per
// peer, trickled through the rendezvous as sealed signals (signal.go), run
// by a state machine that restarts failed or stale attempts (machine.go,
// attempt.go), and the path choice the controlling side makes itself
// (prefer.go). It owns the ICE sockets: the UDP mux over the tunnel's
// shared socket (mux.go), the buffered network for pion's own sockets
// (net.go), and the TURN client socket whose bound channels the tunnel
// writes ChannelData on directly (turnsock.go).
package icepeer

import "log/slog"

// orDefault is the nil => slog.Default() rule of every config here.
func orDefault(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.Default()
	}
	return l
}
