package birthday

import (
	"sync"
	"time"
)

// maxCooldowns bounds the pairs a Cooldown remembers.
const maxCooldowns = 4096

// Cooldown remembers, per pair, until when no new attempt may start
// after a miss. Safe for concurrent use.
type Cooldown struct {
	d   time.Duration
	now func() time.Time

	mu    sync.Mutex
	until map[string]time.Time
}

// NewCooldown waits d after a miss (DefaultCooldown when d <= 0); now is
// the clock (time.Now when nil).
func NewCooldown(d time.Duration, now func() time.Time) *Cooldown {
	if d <= 0 {
		d = DefaultCooldown
	}
	if now == nil {
		now = time.Now
	}
	return &Cooldown{d: d, now: now, until: make(map[string]time.Time)}
}

// Allow reports whether pair may try now, and if not, for how long not.
func (c *Cooldown) Allow(pair string) (bool, time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	u, ok := c.until[pair]
	if !ok {
		return true, 0
	}
	if left := u.Sub(c.now()); left > 0 {
		return false, left
	}
	delete(c.until, pair)
	return true, 0
}

// Miss starts pair's wait.
func (c *Cooldown) Miss(pair string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if len(c.until) >= maxCooldowns {
		for k, u := range c.until {
			if !u.After(now) {
				delete(c.until, k)
			}
		}
		if len(c.until) >= maxCooldowns {
			return // full of live waits: this pair may retry sooner
		}
	}
	c.until[pair] = now.Add(c.d)
}

// Hit forgets pair's wait.
func (c *Cooldown) Hit(pair string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.until, pair)
}
