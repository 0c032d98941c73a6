// Package nat holds everything that traverses NATs: the ICE agents (one
// per peer, trickled through the rendezvous), the UDP mux over the shared
// tunnel socket, and the embedded STUN server of `punchd rendezvous`.
package pionlog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/pion/logging"
)

// New returns a pion logger factory that sends pion's logs to log
// (slog.Default() when nil). pion is chatty and its info lines are about its
// internals, so trace is dropped and debug and info both become our debug;
// warnings and errors keep their level.
func New(log *slog.Logger) logging.LoggerFactory {
	if log == nil {
		log = slog.Default()
	}
	return loggerFactory{log: log}
}

type loggerFactory struct{ log *slog.Logger }

func (f loggerFactory) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{log: f.log.With("pion", scope)}
}

type pionLogger struct{ log *slog.Logger }

func (l pionLogger) logf(level slog.Level, format string, args ...any) {
	// Check first: pion formats a lot of lines nobody reads.
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	l.log.Log(context.Background(), level, fmt.Sprintf(format, args...))
}

func (l pionLogger) Trace(string)          {}
func (l pionLogger) Tracef(string, ...any) {}
func (l pionLogger) Debug(msg string)      { l.logf(slog.LevelDebug, "%s", msg) }
func (l pionLogger) Debugf(format string, args ...any) {
	if perPacket(format) {
		return
	}
	l.logf(slog.LevelDebug, format, args...)
}
func (l pionLogger) Info(msg string)                  { l.logf(slog.LevelDebug, "%s", msg) }
func (l pionLogger) Infof(format string, args ...any) { l.logf(slog.LevelDebug, format, args...) }
func (l pionLogger) Warn(msg string)                  { l.logf(warnLevel(msg), "%s", msg) }
func (l pionLogger) Warnf(format string, args ...any) {
	l.logf(warnLevel(format, args...), format, args...)
}
func (l pionLogger) Error(msg string)                  { l.logf(slog.LevelError, "%s", msg) }
func (l pionLogger) Errorf(format string, args ...any) { l.logf(slog.LevelError, format, args...) }

// ErrExpected is wrapped by errors that our code returns to pion in
// normal operation and that pion logs as warnings: such a warning becomes
// a debug line.
var ErrExpected = errors.New("expected")

// perPacket tells the debug lines pion/turn's server writes for every
// relayed datagram (four per packet and direction). At debug level they
// wrote 288 MB per 10 s of iperf3 and halved the relay's throughput; they
// are treated as trace, which is dropped.
func perPacket(format string) bool {
	switch format {
	case "Received %d bytes of udp from %s on %s",
		"Received DataPacket from %s",
		"Received ChannelData from %s",
		"Relay socket %s received %d bytes from %s",
		"Relaying message from %s to client at %s":
		return true
	}
	return false
}

// warnLevel demotes the pion warnings that every attempt produces in
// normal operation (checks start before the first candidate arrives;
// closing an agent ends its candidates' reads with a closed pipe). At warn
// level they would teach users to ignore warnings.
//
// ErrExpected marks errors of our own code under pion that it logs as
// warnings although they are normal (see icemux).
func warnLevel(format string, args ...any) slog.Level {
	if len(args) > 0 {
		if err, ok := args[len(args)-1].(error); ok && errors.Is(err, ErrExpected) {
			return slog.LevelDebug
		}
	}
	switch {
	// icemux's IPv6 mux sits on the unspecified address until the host
	// has a global IPv6 address; its candidates' address is icemux's.
	case strings.HasPrefix(format, "UDPMuxDefault should not listening on unspecified address"):
		return slog.LevelDebug
	case strings.HasPrefix(format, "Failed to ping without candidate pairs"):
		return slog.LevelDebug
	case strings.HasPrefix(format, "Failed to read from candidate") && len(args) > 0:
		if err, ok := args[len(args)-1].(error); ok && errors.Is(err, io.ErrClosedPipe) {
			return slog.LevelDebug
		}
	}
	return slog.LevelWarn
}
