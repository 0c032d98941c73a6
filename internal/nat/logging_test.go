package nat

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
	l := loggerFactory{slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}.NewLogger("ice")
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
