// Package udpretry is the retransmit schedule of the one-shot UDP
// request/response exchanges (STUN Binding requests of the NAT probe, PCP
// and NAT-PMP requests of the port-mapping probe): a few quick resends and
// a hard deadline, so that a UDP-blocked network answers in about a second
// instead of RFC 5389's 39.5 s.
package udpretry

import (
	"errors"
	"time"
)

// ErrNoAnswer means every transmission of a request went unanswered.
var ErrNoAnswer = errors.New("no answer")

// Sends is how often one request goes out: at 0, 200 and 600 ms from its
// start (SendAt), then the answer has until the timeout. RFC 5389's
// schedule (500 ms doubling, 39.5 s in all) would make a UDP-blocked
// network look like a hang; a lost packet on a working path is rare enough
// that three tries tell blocked from lossy.
const Sends = 3

func SendAt(i int) time.Duration { return 200 * time.Millisecond * time.Duration(1<<i-1) }

// WakeAfter is when a request waiting after its i-th transmission wakes
// up: for the next transmission, or at start+timeout after the last one.
func WakeAfter(start time.Time, i int, timeout time.Duration) (time.Time, bool) {
	if i+1 < Sends {
		return start.Add(SendAt(i + 1)), false
	}
	return start.Add(timeout), true
}
