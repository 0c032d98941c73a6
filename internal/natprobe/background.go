package natprobe

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/pion/stun/v4"
)

// probeEvery is the least time between two background probes: one
// runs after every registration at the rendezvous (a reconnect may mean a
// new network), but a flapping connection must not make us probe in a loop.
const probeEvery = time.Minute

// Background learns this host's NAT behaviour in the background for the
// daemon (RFC 5780 against the rendezvous' STUN server, as `punchd nat`
// does), so that `punchd status` can say why a peer is relayed and
// birthday punching knows which side it is.
type Background struct {
	log      *slog.Logger
	trigger  chan string   // a STUN server host:port to probe against
	onReport func(*Report) // called from run after each probe

	mu     sync.Mutex
	report *Report // latest; nil until one finished
}

// NewBackground returns the background probe; onReport (may be nil) is
// called from Run after each probe.
func NewBackground(log *slog.Logger, onReport func(*Report)) *Background {
	if log == nil {
		log = slog.Default()
	}
	return &Background{log: log, trigger: make(chan string, 1), onReport: onReport}
}

// Request asks for a probe against the STUN server among urls; it never
// blocks.
func (n *Background) Request(urls []string) {
	server := STUNServer(urls)
	if server == "" {
		return
	}
	select {
	case n.trigger <- server:
	default: // one is pending already
	}
}

// Run probes on request until ctx is done.
func (n *Background) Run(ctx context.Context) {
	var last time.Time
	for {
		var server string
		select {
		case <-ctx.Done():
			return
		case server = <-n.trigger:
		}
		if !last.IsZero() && time.Since(last) < probeEvery {
			continue
		}
		last = time.Now()
		rep, err := Discover(ctx, DiscoverConfig{Server: server})
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			n.log.Info("NAT behaviour not fully known", "server", server, "err", err)
		} else {
			n.log.Info("NAT behaviour", "type", rep.NATType, "mapping", rep.Mapping, "filtering", rep.Filtering,
				"external", rep.ExternalIPv4)
		}
		n.mu.Lock()
		n.report = rep
		n.mu.Unlock()
		if n.onReport != nil {
			n.onReport(rep)
		}
	}
}

// Current is the latest report, nil before the first.
func (n *Background) Current() *Report {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.report
}

// STUNServer picks host:port of the first stun: URL (the rendezvous' own
// STUN server, which answers RFC 5780 when it has a second address).
func STUNServer(urls []string) string {
	for _, raw := range urls {
		u, err := stun.ParseURI(raw)
		if err != nil || u.Scheme != stun.SchemeTypeSTUN {
			continue
		}
		return net.JoinHostPort(u.Host, strconv.Itoa(u.Port))
	}
	return ""
}
