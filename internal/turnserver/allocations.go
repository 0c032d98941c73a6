package turnserver

import (
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	"golang.org/x/time/rate"
)

// Allocations counts the server's TURN allocations (for metrics: Active
// and Total can be read at any time) and logs each new one at info level:
// who (the credential's user part: a peer ID, or web-NAME for credentials
// from /turn-credentials), the client's address, the transport it came
// over and the relay address. The lines are rate-limited (a burst of 20,
// then 5 a second); how many were left out is said in the next one.
type Allocations struct {
	log        *slog.Logger
	lim        *rate.Limiter
	active     atomic.Int64
	total      atomic.Uint64
	suppressed atomic.Uint64

	mu  sync.Mutex
	tls map[int]bool // ports of the TLS listeners (TCP and TLS cannot share one)
}

func newAllocations(log *slog.Logger) *Allocations {
	return &Allocations{log: log, lim: rate.NewLimiter(5, 20), tls: map[int]bool{}}
}

// Active is how many allocations exist now.
func (a *Allocations) Active() int64 { return a.active.Load() }

// Total is how many have been made since the start.
func (a *Allocations) Total() uint64 { return a.total.Load() }

func (a *Allocations) addTLS(addr net.Addr) {
	if ta, ok := addr.(*net.TCPAddr); ok {
		a.mu.Lock()
		a.tls[ta.Port] = true
		a.mu.Unlock()
	}
}

// transport names what the client reached us over. pion's protocol
// argument says UDP for every allocation (its five-tuples are fixed to
// UDP), so the addresses tell: a TCP address is TURN over TCP, or TLS on a
// TLS listener's port.
func (a *Allocations) transport(src, local net.Addr) string {
	if _, ok := src.(*net.TCPAddr); !ok {
		if _, ok := local.(*net.TCPAddr); !ok {
			return "UDP"
		}
	}
	ta, ok := local.(*net.TCPAddr)
	if !ok {
		return "TCP"
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.tls[ta.Port] {
		return "TLS"
	}
	return "TCP"
}

func (a *Allocations) created(src, dst net.Addr, user string, relay net.Addr) {
	a.active.Add(1)
	a.total.Add(1)
	if !a.lim.Allow() {
		a.suppressed.Add(1)
		return
	}
	args := []any{"user", user, "client", addrString(src), "transport", a.transport(src, dst), "relay", addrString(relay)}
	if n := a.suppressed.Swap(0); n > 0 {
		args = append(args, "unlogged_before", n)
	}
	a.log.Info("TURN allocation", args...)
}

func (a *Allocations) deleted() { a.active.Add(-1) }

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}
