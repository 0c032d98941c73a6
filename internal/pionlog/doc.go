// Package pionlog adapts pion's leveled loggers (ICE, TURN client and
// server, the UDP mux) to log/slog: it owns which of pion's lines are
// dropped (per-packet debug lines), which are demoted (warnings every
// normal ICE attempt produces) and which keep their level.
package pionlog
