package rendezvous

// junkCause names one kind of bad input from strangers. Each is counted
// and logged at most once a minute (internal/junklog), with the count
// since the last line, so a flood cannot turn into a flood of log lines.
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
	junkBusy                         // connection refused (503): MaxHandshakes registrations in progress
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
	case junkBusy:
		return "busy"
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
	case junkBusy:
		return "connections refused with 503: too many registrations in progress (a storm of peers, or a flood of handshakes)"
	}
	return "junk"
}

// note counts one junk event of cause c and logs it, at most once per
// interval per cause (see junklog).
func (s *Server) note(c junkCause, attrs ...any) {
	s.junk.Drop(c.String(), c.message(), attrs...)
}
