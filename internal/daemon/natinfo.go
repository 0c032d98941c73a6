package daemon

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/punchd/punchd/internal/nat"
)

// natProbeEvery is the least time between two NAT behaviour probes: one
// runs after every registration at the rendezvous (a reconnect may mean a
// new network), but a flapping connection must not make us probe in a loop.
const natProbeEvery = time.Minute

// natInfo learns this host's NAT behaviour in the background (RFC 5780
// against the rendezvous' STUN server, as `punchd nat` does), so that
// `punchd status` can say why a peer is relayed.
type natInfo struct {
	log     *slog.Logger
	trigger chan string // a STUN server host:port to probe against

	mu     sync.Mutex
	report *nat.Report // latest; nil until one finished
}

func newNATInfo(log *slog.Logger) *natInfo {
	return &natInfo{log: log, trigger: make(chan string, 1)}
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
		rep, err := nat.Discover(ctx, nat.DiscoverConfig{Server: server})
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
	}
}

// current is the latest report, nil before the first.
func (n *natInfo) current() *nat.Report {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.report
}

// stunServer picks host:port of the first stun: URL (the rendezvous' own
// STUN server, which answers RFC 5780 when it has a second address).
func stunServer(urls []string) string {
	for _, u := range urls {
		rest, ok := strings.CutPrefix(u, "stun:")
		if !ok {
			continue
		}
		rest, _, _ = strings.Cut(rest, "?")
		if _, _, err := net.SplitHostPort(rest); err == nil {
			return rest
		}
		return net.JoinHostPort(strings.Trim(rest, "[]"), "3478")
	}
	return ""
}

// relayReason explains a relayed path with what we know of our NAT.
func relayReason(relay string, rep *nat.Report) string {
	why := "relayed via " + relay + ": no direct candidate pair answered"
	switch {
	case rep == nil:
		return why + " (a symmetric NAT or a UDP-blocking firewall is in the way; this host's NAT is still being probed)"
	case rep.NATType == nat.TypeUDPBlocked || rep.UDPBlocked:
		return why + "; UDP is blocked here, so only TURN over TCP or TLS works"
	case rep.NATType == nat.TypeUnknown:
		return why + " (a symmetric NAT or a UDP-blocking firewall is in the way; this host's NAT type is unknown: " + rep.Error + ")"
	case rep.NATType == nat.TypeSymmetric:
		return why + "; this host's NAT is symmetric (" + string(rep.Mapping) + " mapping), so only peers behind open, full-cone or restricted NATs can reach it directly"
	default:
		return why + "; this host's NAT is " + string(rep.NATType) + ", so the peer's side (a symmetric NAT or a firewall) is what needs the relay"
	}
}
