package birthday

import (
	"fmt"
	"time"
)

// Defaults and hard caps. A configured value above its cap is lowered to
// it: the caps are what keeps an attempt from looking like a UDP flood to
// a firewall's admin.
const (
	DefaultSockets = 256
	MaxSockets     = 1024
	DefaultProbes  = 2048
	MaxProbes      = 8192
	DefaultRate    = 200 // packets per second, each side
	MaxRate        = 1000
	DefaultTimeout = 20 * time.Second
	MaxTimeout     = 60 * time.Second
	// DefaultCooldown is how long a pair waits after a miss.
	DefaultCooldown = 10 * time.Minute
	// ackCopies is how many acks answer the winning probe (one may be lost).
	ackCopies = 3
	// lateAck is how long the easy side listens after its last probe.
	lateAck = time.Second
)

// Config bounds an attempt; the zero value means the defaults.
type Config struct {
	Sockets  int           // hard side: sockets opened, one spray packet each
	Probes   int           // easy side: probes sent at most
	Rate     int           // packets per second a side sends at most
	Timeout  time.Duration // the whole attempt
	Cooldown time.Duration // no new attempt for the pair this long after a miss
}

// Limits returns c with defaults filled in and caps applied.
func (c Config) Limits() Config {
	pick := func(v, def, max int) int {
		if v <= 0 {
			return def
		}
		return min(v, max)
	}
	c.Sockets = pick(c.Sockets, DefaultSockets, MaxSockets)
	c.Probes = pick(c.Probes, DefaultProbes, MaxProbes)
	c.Rate = pick(c.Rate, DefaultRate, MaxRate)
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	c.Timeout = min(c.Timeout, MaxTimeout)
	if c.Cooldown <= 0 {
		c.Cooldown = DefaultCooldown
	}
	return c
}

func (c Config) String() string {
	c = c.Limits()
	return fmt.Sprintf("%d sockets, %d probes, %d packets/s, %s", c.Sockets, c.Probes, c.Rate, c.Timeout)
}

// pacer lets one packet through every 1/rate seconds.
type pacer struct {
	t *time.Ticker
}

func newPacer(rate int) *pacer { return &pacer{t: time.NewTicker(time.Second / time.Duration(rate))} }

func (p *pacer) stop() { p.t.Stop() }
