// Package icepeer is the ICE side of `punchd up`: one pion/ice agent per
// peer, trickled through the rendezvous as sealed signals (signal.go), run
// by a state machine that restarts failed or stale attempts (machine.go,
// attempt.go), and the path choice the controlling side makes itself
// (internal/pathpref). The sockets under the agents live elsewhere: the UDP mux
// over the tunnel's shared socket in icemux (the daemon builds it, one
// for all peers), pion's own sockets and the TURN relay shortcut in
// turnclient (one Net per agent).
package icepeer

import "log/slog"

// orDefault is the nil => slog.Default() rule of every config here.
func orDefault(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.Default()
	}
	return l
}
