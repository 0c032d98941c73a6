package pionlog

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
)

func TestPionLoggerLevels(t *testing.T) {
	var buf bytes.Buffer
	l := New(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))).NewLogger("ice")
	l.Tracef("trace %d", 1)
	l.Debugf("debug %d", 2)
	l.Infof("info %d", 3)
	l.Warnf("warn %d", 4)
	l.Errorf("error %d", 5)
	out := buf.String()
	for _, want := range []string{"level=DEBUG msg=\"debug 2\" pion=ice", "level=DEBUG msg=\"info 3\"", "level=WARN msg=\"warn 4\"", "level=ERROR msg=\"error 5\""} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "trace") {
		t.Errorf("trace was logged:\n%s", out)
	}
}

func TestRoutinePionWarningsDemoted(t *testing.T) {
	tests := []struct {
		format string
		args   []any
		want   slog.Level
	}{
		{"Failed to ping without candidate pairs. Connection is not possible yet.", nil, slog.LevelDebug},
		{"Failed to read from candidate %s: %v", []any{"host", io.ErrClosedPipe}, slog.LevelDebug},
		{"Failed to read from candidate %s: %v", []any{"host", errors.New("socket on fire")}, slog.LevelWarn},
		{"Failed get server reflexive address %s %s: %v", []any{"udp4", "stun:x", errors.New("timeout")}, slog.LevelWarn},
	}
	for _, tt := range tests {
		if got := warnLevel(tt.format, tt.args...); got != tt.want {
			t.Errorf("warnLevel(%q, %v) = %v, want %v", tt.format, tt.args, got, tt.want)
		}
	}
}

func TestPerPacketDebugDropped(t *testing.T) {
	tests := []struct {
		format string
		args   []any
		logged bool
	}{
		{"Received %d bytes of udp from %s on %s", []any{36, "a", "b"}, false},
		{"Received DataPacket from %s", []any{"a"}, false},
		{"Received ChannelData from %s", []any{"a"}, false},
		{"Relay socket %s received %d bytes from %s", []any{"a", 1, "b"}, false},
		{"Relaying message from %s to client at %s", []any{"a", "b"}, false},
		{"Received AllocateRequest from %s", []any{"a"}, true},
		{"Binding channel %d to %s", []any{0x4000, "a"}, true},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		l := New(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))).NewLogger("turn")
		l.Debugf(tt.format, tt.args...)
		if got := buf.Len() > 0; got != tt.logged {
			t.Errorf("Debugf(%q) logged=%v, want %v: %s", tt.format, got, tt.logged, buf.String())
		}
	}
}

func TestRoutineWarningLoggedAtDebug(t *testing.T) {
	var buf bytes.Buffer
	l := New(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))).NewLogger("ice")
	l.Warnf("Failed to read from candidate %s: %v", "host", io.ErrClosedPipe)
	if !strings.Contains(buf.String(), "level=DEBUG") {
		t.Errorf("routine warning not demoted: %s", buf.String())
	}
}
