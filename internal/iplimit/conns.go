package iplimit

import (
	"net/netip"
	"sync"
)

// Conns counts open connections per address (Key: IPv4 address or IPv6
// /64) and in total, refusing more than PerAddr from one address or Total
// in all. Safe for concurrent use; the zero value refuses everything.
type Conns struct {
	PerAddr, Total int

	mu     sync.Mutex
	byAddr map[netip.Addr]int
	open   int
}

// Acquire takes a slot for ip; false when a limit is reached. Every true
// must be paired with one Release(ip).
func (c *Conns) Acquire(ip netip.Addr) bool {
	k := Key(ip)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byAddr == nil {
		c.byAddr = make(map[netip.Addr]int)
	}
	if c.byAddr[k] >= c.PerAddr || c.open >= c.Total {
		return false
	}
	c.byAddr[k]++
	c.open++
	return true
}

// Release gives back ip's slot.
func (c *Conns) Release(ip netip.Addr) {
	k := Key(ip)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.open--
	if c.byAddr[k]--; c.byAddr[k] <= 0 {
		delete(c.byAddr, k)
	}
}

// Open is how many slots are taken.
func (c *Conns) Open() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.open
}
