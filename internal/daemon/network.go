package daemon

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/punchd/punchd/internal/identity"
	"github.com/punchd/punchd/internal/network"
)

const (
	// memberTTL: a member not heard for this long, and without a tunnel
	// that answers, has left (members announce every minute).
	memberTTL = network.MaxAge
	// expireEvery is how often the roster is swept.
	expireEvery = 30 * time.Second
	// answerDelay spreads the answers to a newcomer's hello, so that a
	// burst of joins is answered with one announcement, not one each.
	answerDelay = 250 * time.Millisecond
	// announceRetry: an announcement that could not go out (rendezvous
	// reconnecting) is tried again this soon.
	announceRetry = time.Second
	// inboxSize bounds announcements waiting to be opened.
	inboxSize = 64
)

// membership is this daemon's part in a network: it announces itself to
// the members and links with every member it hears of.
type membership struct {
	d      *daemon
	keys   network.Keys
	topic  string
	name   string
	roster *network.Roster

	inbox chan []byte // sealed announcements from the rendezvous
	hello chan struct{}
	junk  atomic.Uint64 // announcements refused
	warn  rate.Sometimes
}

func newMembership(d *daemon, code network.Code, name string) (*membership, error) {
	if err := network.CheckName(name); err != nil {
		return nil, fmt.Errorf("bad --name %q: %w", name, err)
	}
	keys := code.Keys()
	return &membership{
		d: d, keys: keys, topic: keys.TopicID(), name: name,
		roster: network.NewRoster(d.self),
		inbox:  make(chan []byte, inboxSize),
		hello:  make(chan struct{}, 1),
		warn:   rate.Sometimes{Interval: 10 * time.Second},
	}, nil
}

// onAnnouncement is the rendezvous client's callback: it only queues.
func (m *membership) onAnnouncement(_ string, payload []byte) {
	select {
	case m.inbox <- payload:
	default:
		m.refuse("announcement queue full", nil)
	}
}

// registered is called on every (re)registration at the rendezvous: say
// hello, so that the members answer with their own announcements.
func (m *membership) registered() {
	select {
	case m.hello <- struct{}{}:
	default:
	}
}

func (m *membership) refuse(what string, err error) {
	n := m.junk.Add(1)
	m.warn.Do(func() {
		m.d.log.Warn("network announcement refused", "why", what, "err", err, "refused_total", n)
	})
}

// run announces and links until ctx is done.
func (m *membership) run(ctx context.Context) {
	refresh := time.NewTicker(network.RefreshInterval)
	defer refresh.Stop()
	expire := time.NewTicker(expireEvery)
	defer expire.Stop()
	var (
		pending     *time.Timer // an announcement to send soon
		pendingC    <-chan time.Time
		pendingHelo bool
	)
	schedule := func(after time.Duration, hello bool) {
		pendingHelo = pendingHelo || hello
		if pending == nil {
			pending = time.NewTimer(after)
			pendingC = pending.C
		}
	}
	defer func() {
		if pending != nil {
			pending.Stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.hello:
			if pending != nil {
				pending.Stop()
				pending = nil
			}
			schedule(0, true)
		case <-refresh.C:
			schedule(0, false)
		case <-pendingC:
			pending, pendingC = nil, nil
			hello := pendingHelo
			pendingHelo = false
			if err := m.announce(ctx, hello); err != nil {
				m.d.log.Debug("announce to the network", "err", err)
				schedule(announceRetry, hello)
			}
		case b := <-m.inbox:
			if answer := m.receive(ctx, b); answer {
				schedule(answerDelay/2+rand.N(answerDelay), false)
			}
		case <-expire.C:
			m.expire()
		}
	}
}

func (m *membership) announce(ctx context.Context, hello bool) error {
	rv := m.d.rv.Load()
	if rv == nil {
		return errors.New("rendezvous not connected yet")
	}
	addrs := make([]netip.Addr, len(m.d.selfIPs))
	for i, p := range m.d.selfIPs {
		addrs[i] = p.Addr()
	}
	b, err := network.Seal(m.keys, network.Announcement{Key: m.d.self, Name: m.name, Time: time.Now(), Addrs: addrs, Hello: hello})
	if err != nil {
		return err
	}
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return rv.Announce(actx, m.topic, b)
}

// receive opens one announcement and links with its sender if it is new;
// it reports whether to answer with our own announcement (a newcomer, or
// a member that asked).
func (m *membership) receive(ctx context.Context, b []byte) bool {
	a, err := network.Open(m.keys, b, time.Now())
	if err != nil {
		m.refuse("does not open", err)
		return false
	}
	change, err := m.roster.Apply(a, time.Now())
	switch {
	case errors.Is(err, network.ErrSelf), errors.Is(err, network.ErrReplay):
		return false // our own, or the rendezvous replaying: nothing to do
	case err != nil:
		m.refuse("roster", err)
		return false
	}
	switch change {
	case network.Added:
		if err := m.link(ctx, a); err != nil {
			m.d.log.Error("cannot link with network member", "member", a.Name, "peer", a.Key.Short(), "err", err)
			m.roster.Remove(a.Key) // tried again at its next announcement
			return false
		}
	case network.Updated:
		if ps, ok := m.d.peer(a.Key); ok {
			ps.mu.Lock()
			ps.name = a.Name
			ps.mu.Unlock()
		}
	}
	return change == network.Added || a.Hello
}

// link adds a member as a peer: its overlay addresses must be the ones
// our prefixes derive from its key (the same --overlay-prefix on every
// member) and must not collide with anyone's.
func (m *membership) link(ctx context.Context, a network.Announcement) error {
	d := m.d
	d.mu.Lock()
	if ps, ok := d.peers[a.Key]; ok {
		d.mu.Unlock()
		// A --peer that is also a member: it keeps its alias, gains a name.
		ps.mu.Lock()
		ps.name = a.Name
		ps.mu.Unlock()
		return nil
	}
	want := make([]netip.Addr, 0, len(d.book.prefixes))
	for _, pfx := range d.book.prefixes {
		ad, err := identity.OverlayAddr(pfx, a.Key)
		if err != nil {
			d.mu.Unlock()
			return err
		}
		want = append(want, ad)
	}
	if !sameAddrs(want, a.Addrs) {
		d.mu.Unlock()
		return fmt.Errorf("it uses the overlay addresses %v, this host's --overlay-prefix gives it %v: give every member the same --overlay-prefix", a.Addrs, want)
	}
	routes, err := d.book.claim(a.Key, "member "+a.Name)
	d.mu.Unlock()
	if err != nil {
		return err
	}
	if err := d.addPeer(a.Key, "", true, routes); err != nil {
		d.mu.Lock()
		d.book.release(a.Key)
		d.mu.Unlock()
		return err
	}
	if ps, ok := d.peer(a.Key); ok {
		ps.mu.Lock()
		ps.name = a.Name
		ps.mu.Unlock()
	}
	d.log.Info("network member joined", "member", a.Name, "peer", a.Key.Short(), "overlay", a.Addrs)
	m.watch(ctx)
	return nil
}

// watch asks the rendezvous for the presence of every peer we have now.
func (m *membership) watch(ctx context.Context) {
	rv := m.d.rv.Load()
	if rv == nil {
		return // the watch list is sent on registering
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rv.SetWatch(wctx, m.d.peerKeys()); err != nil {
		m.d.log.Debug("update the rendezvous watch list", "err", err)
	}
}

// expire unlinks members that left: not heard for memberTTL and without
// a tunnel that answers.
func (m *membership) expire() {
	connected := func(k identity.PublicKey) bool {
		ps, ok := m.d.peer(k)
		if !ok {
			return false
		}
		ps.mu.Lock()
		defer ps.mu.Unlock()
		return !ps.connectedAt.IsZero()
	}
	gone := m.roster.Expire(time.Now(), memberTTL, connected)
	for _, k := range gone {
		if ps, ok := m.d.peer(k); ok && ps.member {
			m.d.removePeer(k)
			m.d.log.Info("network member left", "peer", k.Short())
		}
	}
	if len(gone) > 0 {
		m.watch(m.d.runCtx)
	}
}

func sameAddrs(a, b []netip.Addr) bool {
	norm := func(x []netip.Addr) []netip.Addr {
		out := make([]netip.Addr, len(x))
		for i, v := range x {
			out[i] = v.Unmap()
		}
		slices.SortFunc(out, func(p, q netip.Addr) int { return p.Compare(q) })
		return out
	}
	return slices.Equal(norm(a), norm(b))
}
