// Package junklog counts input that was refused (from strangers, or from a
// hostile server) and logs it at a bounded rate: at most one line per cause
// per interval, saying how many were refused since the last line. A flood
// of junk then costs a counter increment, not a log line each, and the
// counts stay visible (status, metrics).
package junklog

import (
	"log/slog"
	"sync"
	"time"
)

// DefaultEvery is the least time between two lines about one cause.
const DefaultEvery = time.Minute

// Log is safe for concurrent use. Causes must be fixed strings chosen by
// the code, never taken from input, so the set of counters stays bounded.
type Log struct {
	log   *slog.Logger
	every time.Duration
	now   func() time.Time

	mu     sync.Mutex
	causes map[string]*counter
}

type counter struct {
	total      uint64
	suppressed uint64 // since the last line
	last       time.Time
}

// New returns a Log writing to log (slog.Default when nil) at most one
// line per cause per every (DefaultEvery when <= 0).
func New(log *slog.Logger, every time.Duration) *Log {
	if log == nil {
		log = slog.Default()
	}
	if every <= 0 {
		every = DefaultEvery
	}
	return &Log{log: log, every: every, now: time.Now, causes: make(map[string]*counter)}
}

// Drop counts one refused input of cause and logs msg (a warning, with
// args) unless a line about cause was written less than the interval ago.
// It reports whether it logged.
func (l *Log) Drop(cause, msg string, args ...any) bool {
	now := l.now()
	l.mu.Lock()
	c := l.causes[cause]
	if c == nil {
		c = new(counter)
		l.causes[cause] = c
	}
	c.total++
	if !c.last.IsZero() && now.Sub(c.last) < l.every {
		c.suppressed++
		l.mu.Unlock()
		return false
	}
	suppressed, total := c.suppressed, c.total
	c.suppressed, c.last = 0, now
	l.mu.Unlock()
	args = append(args, "cause", cause, "total", total)
	if suppressed > 0 {
		args = append(args, "suppressed_since_last", suppressed)
	}
	l.log.Warn(msg, args...)
	return true
}

// Counts returns the number of refused inputs per cause since start.
func (l *Log) Counts() map[string]uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]uint64, len(l.causes))
	for k, c := range l.causes {
		out[k] = c.total
	}
	return out
}

// Total is the sum over all causes.
func (l *Log) Total() uint64 {
	var n uint64
	for _, v := range l.Counts() {
		n += v
	}
	return n
}
