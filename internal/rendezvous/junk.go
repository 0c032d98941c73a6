package rendezvous

import (
	"log/slog"
	"sync"
	"time"
)

// junkCause names one kind of bad input from strangers. Each is counted
// and logged at most once per interval, with the count since the last
// line, so a flood cannot turn into a flood of log lines.
type junkCause int

const (
	junkHandshake   junkCause = iota // WebSocket upgrade or registration aborted or malformed
	junkAuth                         // registration proof did not match the ID
	junkPerIPCap                     // connection refused: too many from one address
	junkOversized                    // frame over MaxFrameBytes (connection closed)
	junkRateLimited                  // frame over FramesPerSecond (dropped)
	junkFlooder                      // client closed: far over FramesPerSecond for long
	junkBadFrame                     // frame that does not parse or is unexpected
	junkStranger                     // send to an ID the sender does not watch
	junkQueueFull                    // frame dropped: the recipient's queue is full
	junkSlowReader                   // client closed: a write did not finish in time
	junkSilent                       // client closed: silent and did not answer a ping
	junkCauses
)

func (c junkCause) String() string {
	switch c {
	case junkHandshake:
		return "handshake-failed"
	case junkAuth:
		return "auth-failed"
	case junkPerIPCap:
		return "per-ip-cap"
	case junkOversized:
		return "oversized-frame"
	case junkRateLimited:
		return "rate-limited"
	case junkBadFrame:
		return "bad-frame"
	case junkFlooder:
		return "flooder"
	case junkStranger:
		return "send-to-stranger"
	case junkQueueFull:
		return "queue-full"
	case junkSlowReader:
		return "slow-reader"
	case junkSilent:
		return "silent-client"
	}
	return "unknown"
}

func (c junkCause) message() string {
	switch c {
	case junkHandshake:
		return "connections that failed the WebSocket upgrade or registration"
	case junkAuth:
		return "registrations with a proof that does not match the ID"
	case junkPerIPCap:
		return "connections refused: too many from one address"
	case junkOversized:
		return "clients closed for an oversized frame"
	case junkRateLimited:
		return "frames dropped over the per-connection rate limit"
	case junkBadFrame:
		return "malformed or unexpected frames"
	case junkFlooder:
		return "clients closed: they kept sending far over the rate limit"
	case junkStranger:
		return "sends to IDs the sender does not watch (refused)"
	case junkQueueFull:
		return "frames dropped: the recipient's queue is full"
	case junkSlowReader:
		return "clients closed: they did not take a frame in time"
	case junkSilent:
		return "clients closed: silent and no answer to a ping"
	}
	return "junk"
}

type junkLog struct {
	log   *slog.Logger
	every time.Duration

	mu     sync.Mutex
	total  [junkCauses]uint64
	since  [junkCauses]uint64 // since the last line
	logged [junkCauses]time.Time
}

func newJunkLog(log *slog.Logger, every time.Duration) *junkLog {
	return &junkLog{log: log, every: every}
}

// note counts one event; the first in each interval is logged with the
// example's attributes and how many were seen since the previous line.
func (j *junkLog) note(c junkCause, attrs ...any) {
	now := time.Now()
	j.mu.Lock()
	j.total[c]++
	j.since[c]++
	if !j.logged[c].IsZero() && now.Sub(j.logged[c]) < j.every {
		j.mu.Unlock()
		return
	}
	n := j.since[c]
	j.since[c] = 0
	j.logged[c] = now
	j.mu.Unlock()
	j.log.Warn(c.message(), append([]any{"cause", c.String(), "count", n, "per", j.every.String(), "example"}, slog.GroupValue(argsToAttrs(attrs)...))...)
}

func argsToAttrs(args []any) []slog.Attr {
	var out []slog.Attr
	for i := 0; i+1 < len(args); i += 2 {
		k, _ := args[i].(string)
		out = append(out, slog.Any(k, args[i+1]))
	}
	return out
}

// totals returns every cause's count since the start.
func (j *junkLog) totals() map[string]uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make(map[string]uint64, junkCauses)
	for c := junkCause(0); c < junkCauses; c++ {
		if j.total[c] > 0 {
			out[c.String()] = j.total[c]
		}
	}
	return out
}
