package turnserver

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// Default allocation quotas. A punchd peer holds one allocation per peer
// it links with, per TURN URL it was given (UDP and TCP: two) and per
// restart in flight, so a member of a LAN party of 16 holds about 30-45;
// the mesh of 8 in the lab holds 14 each, which a quota of 10 cut short.
// A NAT with several users behind one address (a CGNAT, an office, two
// members behind one home router) needs more per IP.
const (
	DefaultUserQuota = 64
	DefaultIPQuota   = 128
)

// quotas counts allocations per user (the id of a "expiry:id" REST user
// name) and per client IP (IPv6 per /64: one subscriber's prefix) and
// refuses one over either limit (486 Allocation Quota Reached). pion asks
// allow before it creates an allocation and reports what became of it:
// created, failed (its read loop gets an error) or deleted. A reservation
// is taken in allow so that concurrent Allocates over TCP cannot all slip
// under the limit.
type quotas struct {
	perUser, perIP int

	mu      sync.Mutex
	users   map[string]int
	ips     map[netip.Prefix]int
	pending map[string]reservation // by client transport address

	refused atomic.Uint64 // Allocates refused, for metrics
}

type reservation struct {
	user string
	ip   netip.Prefix
}

func newQuotas(perUser, perIP int) *quotas {
	if perUser <= 0 {
		perUser = DefaultUserQuota
	}
	if perIP <= 0 {
		perIP = DefaultIPQuota
	}
	return &quotas{perUser: perUser, perIP: perIP,
		users: map[string]int{}, ips: map[netip.Prefix]int{}, pending: map[string]reservation{}}
}

// clientKey is what one quota per IP counts: the address, IPv6 per /64.
func clientKey(a net.Addr) netip.Prefix {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.UDPAddr:
		ap = a.AddrPort()
	case *net.TCPAddr:
		ap = a.AddrPort()
	default:
		ap, _ = netip.ParseAddrPort(a.String())
	}
	ip := ap.Addr().Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}

// allow is pion's QuotaHandler: it reserves a place for one allocation.
func (q *quotas) allow(user, _ string, src net.Addr) bool {
	ip := clientKey(src)
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.users[user] >= q.perUser || q.ips[ip] >= q.perIP {
		q.refused.Add(1)
		return false
	}
	// A client has one request in flight per transport address (pion
	// reads each connection, and the UDP socket, in one goroutine).
	if old, ok := q.pending[src.String()]; ok {
		q.release(old)
	}
	q.users[user]++
	q.ips[ip]++
	q.pending[src.String()] = reservation{user, ip}
	return true
}

// created turns the reservation into an allocation.
func (q *quotas) created(src, _ net.Addr, _, _, _ string, _ net.Addr, _ int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.pending, src.String())
}

// failed releases the reservation of a request that made no allocation.
func (q *quotas) failed(src, _ net.Addr, _, _ string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if r, ok := q.pending[src.String()]; ok {
		delete(q.pending, src.String())
		q.release(r)
	}
}

// deleted gives an allocation's place back.
func (q *quotas) deleted(src, _ net.Addr, _, user, _ string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.release(reservation{user, clientKey(src)})
}

func (q *quotas) release(r reservation) {
	if q.users[r.user]--; q.users[r.user] <= 0 {
		delete(q.users, r.user)
	}
	if q.ips[r.ip]--; q.ips[r.ip] <= 0 {
		delete(q.ips, r.ip)
	}
}
