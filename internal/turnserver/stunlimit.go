package turnserver

import (
	"encoding/binary"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Answers to unauthenticated STUN requests (Binding, RFC 5780 Bindings,
// the 401 to a bare Allocate) are larger than the request (3.4-3.8x), and
// UDP sources can be forged: unlimited, the server is an amplifier aimed
// at whoever's address is forged. Each source IP (IPv6 per /64) gets a
// token bucket; a request without a token gets no answer. Authenticated
// requests (with MESSAGE-INTEGRITY) are not charged: their answers are no
// larger than they are, and a refresh must not starve behind a flood
// forged with its client's address.
const (
	// DefaultSTUNRate and DefaultSTUNBurst: `punchd nat` sends about 20
	// requests in a burst, ICE gathering a few; a NAT with many users
	// behind one address shares one bucket.
	DefaultSTUNRate  = 20 // answers per second per source
	DefaultSTUNBurst = 100
	// stunSources bounds the sources tracked; beyond it new sources share
	// one bucket until idle ones are swept.
	stunSources = 16384
	// stunSweepEvery bounds how often a full table is swept.
	stunSweepEvery = time.Second
	// stunLogEvery bounds the log about refused answers.
	stunLogEvery = time.Minute
)

// stunLimiter is shared by the server's UDP sockets (pion's and the RFC
// 5780 responder's three); safe for concurrent use.
type stunLimiter struct {
	limit rate.Limit
	burst int
	log   *slog.Logger
	now   func() time.Time

	mu        sync.Mutex
	sources   map[netip.Prefix]*rate.Limiter
	overflow  *rate.Limiter // shared by sources beyond the table
	lastSweep time.Time
	lastLog   time.Time
	loggedAt  uint64

	refused atomic.Uint64
}

func newSTUNLimiter(perSecond float64, burst int, log *slog.Logger) *stunLimiter {
	if perSecond <= 0 {
		perSecond = DefaultSTUNRate
	}
	if burst <= 0 {
		burst = DefaultSTUNBurst
	}
	return &stunLimiter{
		limit:    rate.Limit(perSecond),
		burst:    burst,
		log:      orDefault(log),
		now:      time.Now,
		sources:  make(map[netip.Prefix]*rate.Limiter),
		overflow: rate.NewLimiter(rate.Limit(perSecond), burst),
	}
}

// allow charges one answer to src; false means: do not answer.
func (l *stunLimiter) allow(src netip.Addr) bool {
	key := sourceKey(src)
	now := l.now()
	l.mu.Lock()
	lim, ok := l.sources[key]
	if !ok {
		if len(l.sources) >= stunSources && now.Sub(l.lastSweep) >= stunSweepEvery {
			l.sweep(now)
		}
		if len(l.sources) < stunSources {
			lim = rate.NewLimiter(l.limit, l.burst)
			l.sources[key] = lim
		} else {
			lim = l.overflow
		}
	}
	ok = lim.AllowN(now, 1)
	if !ok {
		n := l.refused.Add(1)
		if now.Sub(l.lastLog) >= stunLogEvery {
			l.log.Warn("STUN answers over the per-source rate are not sent (a reflection flood with forged sources, or many clients behind one address)",
				"source", src.String(), "refused", n, "refused_since_last_log", n-l.loggedAt,
				"rate", float64(l.limit), "burst", l.burst)
			l.lastLog, l.loggedAt = now, n
		}
	}
	l.mu.Unlock()
	return ok
}

// sweep forgets sources whose bucket is full again: they have been quiet
// long enough that a fresh bucket is the same.
func (l *stunLimiter) sweep(now time.Time) {
	l.lastSweep = now
	for k, lim := range l.sources {
		if lim.TokensAt(now) >= float64(l.burst) {
			delete(l.sources, k)
		}
	}
}

// Refused is how many answers were not sent.
func (l *stunLimiter) Refused() uint64 { return l.refused.Load() }

func sourceKey(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}

// STUN attribute walk (RFC 8489 section 14).
const (
	stunClassMask       = 0x0110
	stunClassRequest    = 0x0000
	attrMessageIntegrty = 0x0008
	attrMIntegritySHA   = 0x001C
)

// isUnauthenticatedRequest: b is a STUN request (any method) without
// MESSAGE-INTEGRITY(-SHA256), whose answer the server would send to
// whoever the source claims to be. It reads the header and walks the
// attributes without allocating; anything malformed is not a request.
func isUnauthenticatedRequest(b []byte) bool {
	if len(b) < stunHeaderSize || b[0]&0xC0 != 0 || binary.BigEndian.Uint32(b[4:8]) != stunMagicCookie {
		return false
	}
	if binary.BigEndian.Uint16(b[0:2])&stunClassMask != stunClassRequest {
		return false
	}
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if n%4 != 0 || stunHeaderSize+n > len(b) {
		return false
	}
	attrs := b[stunHeaderSize : stunHeaderSize+n]
	for len(attrs) >= 4 {
		t := binary.BigEndian.Uint16(attrs[0:2])
		if t == attrMessageIntegrty || t == attrMIntegritySHA {
			return false
		}
		l := (int(binary.BigEndian.Uint16(attrs[2:4])) + 3) &^ 3
		if 4+l > len(attrs) {
			return true // truncated: pion answers it with an error
		}
		attrs = attrs[4+l:]
	}
	return true
}

// limitedConn is a server UDP socket as pion (or the RFC 5780 tap) reads
// it: unauthenticated requests over the source's rate are dropped before
// anyone answers them. ChannelData and indications pass after one byte
// test.
type limitedConn struct {
	net.PacketConn
	lim *stunLimiter
}

func (c *limitedConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(p)
		if err != nil || !c.refuse(p[:n], addr) {
			return n, addr, err
		}
	}
}

func (c *limitedConn) refuse(b []byte, addr net.Addr) bool {
	if len(b) == 0 || b[0]&0xC0 != 0 || !isUnauthenticatedRequest(b) {
		return false
	}
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return false
	}
	return !c.lim.allow(ua.AddrPort().Addr())
}
