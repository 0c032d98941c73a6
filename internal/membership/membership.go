package membership

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
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

// Host is what a Membership needs of the daemon. Its methods are called
// from Run's goroutine.
type Host interface {
	// Link adds a member as a peer (added), or names a --peer that is
	// also a member; an error refuses the member until its next
	// announcement.
	Link(a network.Announcement) (added bool, err error)
	// Named gives a linked peer the name it announced now.
	Named(key identity.PublicKey, name string)
	// Connected reports whether key's tunnel answers.
	Connected(key identity.PublicKey) bool
	// Unlink removes key if it was added as a member (never a --peer) and
	// reports whether it did.
	Unlink(key identity.PublicKey) bool
	// Rendezvous is the connected client, nil (untyped) before.
	Rendezvous() Rendezvous
	// Peers lists every peer's key, for the rendezvous watch list.
	Peers() []identity.PublicKey
}

// Rendezvous is the part of the rendezvous client a Membership uses.
type Rendezvous interface {
	Announce(ctx context.Context, topic string, payload []byte) error
	SetWatch(ctx context.Context, peers []identity.PublicKey) error
}

// Config is what a Membership is given.
type Config struct {
	Self  identity.PublicKey
	Addrs []netip.Addr // this host's overlay addresses, announced
	Code  network.Code
	Name  string // --name, announced
	Log   *slog.Logger
	Host  Host
}

// Membership is this daemon's part in a network: it announces itself to
// the members and links with every member it hears of.
type Membership struct {
	c      Config
	log    *slog.Logger
	keys   network.Keys
	topic  string
	roster *network.Roster

	inbox chan []byte // sealed announcements from the rendezvous
	hello chan struct{}
	junk  atomic.Uint64 // announcements refused
	warn  rate.Sometimes
}

// New checks the name and derives the network's keys and topic.
func New(c Config) (*Membership, error) {
	if err := network.CheckName(c.Name); err != nil {
		return nil, fmt.Errorf("bad --name %q: %w", c.Name, err)
	}
	log := c.Log
	if log == nil {
		log = slog.Default()
	}
	keys := c.Code.Keys()
	return &Membership{
		c: c, log: log, keys: keys, topic: keys.TopicID(),
		roster: network.NewRoster(c.Self),
		inbox:  make(chan []byte, inboxSize),
		hello:  make(chan struct{}, 1),
		warn:   rate.Sometimes{Interval: 10 * time.Second},
	}, nil
}

// Topic is the network's rendezvous topic (it names the network to the
// rendezvous without giving its code away).
func (m *Membership) Topic() string { return m.topic }

// Name is the name this host announces.
func (m *Membership) Name() string { return m.c.Name }

// OnAnnouncement is the rendezvous client's callback: it only queues, and
// drops (counted) what does not fit.
func (m *Membership) OnAnnouncement(_ string, payload []byte) {
	select {
	case m.inbox <- payload:
	default:
		m.refuse("announcement queue full", nil)
	}
}

// Registered is called on every (re)registration at the rendezvous: say
// hello, so that the members answer with their own announcements.
func (m *Membership) Registered() {
	select {
	case m.hello <- struct{}{}:
	default:
	}
}

func (m *Membership) refuse(what string, err error) {
	n := m.junk.Add(1)
	m.warn.Do(func() {
		m.log.Warn("network announcement refused", "why", what, "err", err, "refused_total", n)
	})
}

// Run announces and links until ctx is done.
func (m *Membership) Run(ctx context.Context) {
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
				m.log.Debug("announce to the network", "err", err)
				schedule(announceRetry, hello)
			}
		case b := <-m.inbox:
			if answer := m.receive(ctx, b); answer {
				schedule(answerDelay/2+rand.N(answerDelay), false)
			}
		case <-expire.C:
			m.expire(ctx)
		}
	}
}

func (m *Membership) announce(ctx context.Context, hello bool) error {
	rv := m.c.Host.Rendezvous()
	if rv == nil {
		return errors.New("rendezvous not connected yet")
	}
	b, err := network.Seal(m.keys, network.Announcement{Key: m.c.Self, Name: m.c.Name, Time: time.Now(), Addrs: m.c.Addrs, Hello: hello})
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
func (m *Membership) receive(ctx context.Context, b []byte) bool {
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
		added, err := m.c.Host.Link(a)
		if err != nil {
			m.log.Error("cannot link with network member", "member", a.Name, "peer", a.Key.Short(), "err", err)
			m.roster.Remove(a.Key) // tried again at its next announcement
			return false
		}
		if !added {
			break
		}
		m.log.Info("network member joined", "member", a.Name, "peer", a.Key.Short(), "overlay", a.Addrs)
		m.watch(ctx)
	case network.Updated:
		m.c.Host.Named(a.Key, a.Name)
	}
	return change == network.Added || a.Hello
}

// watch asks the rendezvous for the presence of every peer we have now.
func (m *Membership) watch(ctx context.Context) {
	rv := m.c.Host.Rendezvous()
	if rv == nil {
		return // the watch list is sent on registering
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rv.SetWatch(wctx, m.c.Host.Peers()); err != nil {
		m.log.Debug("update the rendezvous watch list", "err", err)
	}
}

// expire unlinks members that left: not heard for memberTTL and without
// a tunnel that answers.
func (m *Membership) expire(ctx context.Context) {
	gone := m.roster.Expire(time.Now(), memberTTL, m.c.Host.Connected)
	for _, k := range gone {
		if m.c.Host.Unlink(k) {
			m.log.Info("network member left", "peer", k.Short())
		}
	}
	if len(gone) > 0 {
		m.watch(ctx)
	}
}
