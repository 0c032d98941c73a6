// Package netwatch tells the daemon when the host's network changed under
// it: an address came or went, the default route moved (Wi-Fi to LTE, a
// new DHCP lease, a VPN coming up). A tunnel whose ICE candidates were
// gathered on the old network needs a restart with fresh ones; waiting for
// the old path to time out costs seconds and finds nothing new.
//
// Events come in bursts (a move is an address added, routes replaced, an
// address and a link removed): they are debounced, and the callback runs
// only when the snapshot of what matters differs from the last one.
package netwatch

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// Snapshot is the part of the host's network a tunnel depends on: the
// unicast addresses (not loopback, not link-local) and the default routes,
// each as text, sorted, without the excluded interfaces.
type Snapshot struct {
	Addrs  []string // "eth0 198.19.1.2/24"
	Routes []string // "default via 198.19.1.1 dev eth0"
}

// Equal reports whether two snapshots describe the same network.
func (s Snapshot) Equal(o Snapshot) bool {
	return slices.Equal(s.Addrs, o.Addrs) && slices.Equal(s.Routes, o.Routes)
}

func (s Snapshot) String() string {
	return "addrs [" + strings.Join(s.Addrs, ", ") + "] routes [" + strings.Join(s.Routes, ", ") + "]"
}

func (s *Snapshot) sort() {
	slices.Sort(s.Addrs)
	slices.Sort(s.Routes)
}

// Config tunes a Watcher; OnChange is required.
type Config struct {
	// Exclude names interfaces whose changes do not count (our TUN: its
	// addresses and routes are ours).
	Exclude []string
	// Quiet ends a burst of events: the snapshot is taken once nothing
	// happened for this long (default 250 ms).
	Quiet time.Duration
	// MaxDelay bounds the wait after a burst's first event, so a network
	// that never settles still gets looked at (default 2 s).
	MaxDelay time.Duration
	// OnChange is called from Run's goroutine with the snapshots before
	// and after a change; it must not block long.
	OnChange func(before, after Snapshot)
	Logger   *slog.Logger
}

const (
	defaultQuiet    = 250 * time.Millisecond
	defaultMaxDelay = 2 * time.Second
)

// ErrUnsupported is returned by Open where there is no watcher (not Linux).
var ErrUnsupported = errors.New("watching the network is not supported on this system; a moved host is noticed when its path times out")

// Watcher delivers debounced network changes; Open it, Run it, Close it.
type Watcher struct {
	cfg    Config
	log    *slog.Logger
	events <-chan struct{}
	snap   func() (Snapshot, error)
	stop   func()
	once   sync.Once
}

func newWatcher(cfg Config, events <-chan struct{}, snap func() (Snapshot, error), stop func()) *Watcher {
	if cfg.Quiet <= 0 {
		cfg.Quiet = defaultQuiet
	}
	if cfg.MaxDelay < cfg.Quiet {
		cfg.MaxDelay = max(defaultMaxDelay, cfg.Quiet)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Watcher{cfg: cfg, log: log, events: events, snap: snap, stop: stop}
}

// Run delivers changes until ctx is done or the event source ends.
func (w *Watcher) Run(ctx context.Context) {
	last, err := w.snap()
	if err != nil {
		w.log.Warn("cannot read the host's addresses and routes; network changes are noticed when a path times out", "err", err)
		return
	}
	for {
		// Wait for a burst to begin.
		select {
		case <-ctx.Done():
			return
		case _, ok := <-w.events:
			if !ok {
				w.log.Warn("network change notifications ended; a moved host is noticed when its path times out")
				return
			}
		}
		if !w.settle(ctx) {
			return
		}
		now, err := w.snap()
		if err != nil {
			w.log.Debug("read addresses and routes", "err", err)
			continue
		}
		if now.Equal(last) {
			continue
		}
		before := last
		last = now
		w.cfg.OnChange(before, now)
	}
}

// settle waits until the events have been quiet for Quiet, or MaxDelay
// after the first; false when ctx ended or the source closed.
func (w *Watcher) settle(ctx context.Context) bool {
	limit := time.NewTimer(w.cfg.MaxDelay)
	defer limit.Stop()
	quiet := time.NewTimer(w.cfg.Quiet)
	defer quiet.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-limit.C:
			return true
		case <-quiet.C:
			return true
		case _, ok := <-w.events:
			if !ok {
				return false
			}
			quiet.Reset(w.cfg.Quiet)
		}
	}
}

// Close stops the event source; idempotent. Run returns after it.
func (w *Watcher) Close() error {
	w.once.Do(func() {
		if w.stop != nil {
			w.stop()
		}
	})
	return nil
}
