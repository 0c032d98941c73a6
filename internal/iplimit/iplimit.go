// Package iplimit rate-limits requests per client address with a bounded
// table: one token bucket (golang.org/x/time/rate) per IPv4 address or
// IPv6 /64 (one subscriber usually holds a whole /64), at most Max
// entries, so a stranger cycling through addresses cannot grow it.
package iplimit

import (
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limiter holds the buckets. Safe for concurrent use.
type Limiter struct {
	every rate.Limit
	burst int
	max   int
	now   func() time.Time

	mu      sync.Mutex
	buckets map[netip.Addr]*bucket
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

// New allows burst requests at once and then one per interval from each
// address, tracking at most max addresses.
func New(interval time.Duration, burst, max int) *Limiter {
	return &Limiter{every: rate.Every(interval), burst: burst, max: max, now: time.Now, buckets: make(map[netip.Addr]*bucket)}
}

// Key is the address a limit applies to: the IPv4 address, or the /64 of
// an IPv6 one.
func Key(ip netip.Addr) netip.Addr {
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}

// Allow spends one token of ip's bucket. When the table is full, buckets
// that have refilled (their address has been quiet long enough to be
// indistinguishable from a new one) are dropped first; if none has, the
// request is refused: the table is full of addresses that are busy now.
func (l *Limiter) Allow(ip netip.Addr) bool {
	k := Key(ip)
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[k]
	if b == nil {
		if len(l.buckets) >= l.max && !l.sweepLocked(now) {
			return false
		}
		b = &bucket{lim: rate.NewLimiter(l.every, l.burst)}
		l.buckets[k] = b
	}
	b.seen = now
	return b.lim.AllowN(now, 1)
}

// sweepLocked drops full buckets and reports whether any room was made.
func (l *Limiter) sweepLocked(now time.Time) bool {
	n := len(l.buckets)
	for k, b := range l.buckets {
		if b.lim.TokensAt(now) >= float64(l.burst) {
			delete(l.buckets, k)
		}
	}
	return len(l.buckets) < n
}

// Len is how many addresses are tracked.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// RemoteAddr is the client address of r (no proxy headers are trusted:
// behind a reverse proxy every client would share its address).
func RemoteAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return ip.Unmap()
}
