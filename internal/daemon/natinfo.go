package daemon

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/pion/stun/v4"
	"github.com/punchd/punchd/internal/natprobe"
)

// natProbeEvery is the least time between two NAT behaviour probes: one
// runs after every registration at the rendezvous (a reconnect may mean a
// new network), but a flapping connection must not make us probe in a loop.
const natProbeEvery = time.Minute

// natInfo learns this host's NAT behaviour in the background (RFC 5780
// against the rendezvous' STUN server, as `punchd nat` does), so that
// `punchd status` can say why a peer is relayed.
type natInfo struct {
	log      *slog.Logger
	trigger  chan string            // a STUN server host:port to probe against
	onReport func(*natprobe.Report) // called from run after each probe

	mu     sync.Mutex
	report *natprobe.Report // latest; nil until one finished
}

func newNATInfo(log *slog.Logger, onReport func(*natprobe.Report)) *natInfo {
	return &natInfo{log: log, trigger: make(chan string, 1), onReport: onReport}
}

// request asks for a probe against the STUN server among urls; it never
// blocks.
func (n *natInfo) request(urls []string) {
	server := stunServer(urls)
	if server == "" {
		return
	}
	select {
	case n.trigger <- server:
	default: // one is pending already
	}
}

// run probes on request until ctx is done.
func (n *natInfo) run(ctx context.Context) {
	var last time.Time
	for {
		var server string
		select {
		case <-ctx.Done():
			return
		case server = <-n.trigger:
		}
		if !last.IsZero() && time.Since(last) < natProbeEvery {
			continue
		}
		last = time.Now()
		rep, err := natprobe.Discover(ctx, natprobe.DiscoverConfig{Server: server})
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

// current is the latest report, nil before the first.
func (n *natInfo) current() *natprobe.Report {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.report
}

// stunServer picks host:port of the first stun: URL (the rendezvous' own
// STUN server, which answers RFC 5780 when it has a second address).
func stunServer(urls []string) string {
	for _, raw := range urls {
		u, err := stun.ParseURI(raw)
		if err != nil || u.Scheme != stun.SchemeTypeSTUN {
			continue
		}
		return net.JoinHostPort(u.Host, strconv.Itoa(u.Port))
	}
	return ""
}
