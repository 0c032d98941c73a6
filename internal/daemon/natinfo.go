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
	log      *slog.Logger
	trigger  chan string       // a STUN server host:port to probe against
	onReport func(*nat.Report) // called from run after each probe

	mu     sync.Mutex
	report *nat.Report // latest; nil until one finished
}

func newNATInfo(log *slog.Logger, onReport func(*nat.Report)) *natInfo {
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
		if n.onReport != nil {
			n.onReport(rep)
		}
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

// relayReason explains a relayed path with what we know of both NATs:
// ours from the probe (nil before it finished), the peer's as it told us
// ("" when it has not).
func relayReason(relay string, local *nat.Report, remote nat.NATType) string {
	why := "relayed via " + relay + ": "
	ours := nat.TypeUnknown
	if local != nil {
		ours = local.NATType
		if local.UDPBlocked {
			ours = nat.TypeUDPBlocked
		}
	}
	known := func(t nat.NATType) bool { return t != "" && t != nat.TypeUnknown }
	switch {
	case ours == nat.TypeUDPBlocked:
		return why + "UDP is blocked here, so only TURN over TCP or TLS works"
	case remote == nat.TypeUDPBlocked:
		return why + "the peer has no UDP, so only its relay over TCP or TLS reaches it"
	case known(ours) && known(remote) && nat.NeedsRelay(ours, remote):
		return why + "no direct path exists between this host's " + string(ours) + " NAT and the peer's " + string(remote) +
			" NAT (one maps a new port per destination, the other drops what comes from unknown ports); a port mapping (UPnP/NAT-PMP/PCP) on either router would avoid the relay"
	case known(ours) && known(remote):
		return why + "no direct pair answered, though this host's " + string(ours) + " NAT and the peer's " + string(remote) +
			" NAT usually allow one (a firewall in between?); still probing the direct pairs"
	case ours == nat.TypeSymmetric:
		return why + "no direct pair answered; this host's NAT is symmetric (" + string(local.Mapping) +
			" mapping), so only peers behind open, full-cone or restricted NATs can reach it directly"
	case known(ours):
		return why + "no direct pair answered; this host's NAT is " + string(ours) + ", so the peer's side (a symmetric NAT or a firewall) is what needs the relay"
	case local == nil:
		return why + "no direct pair answered (a symmetric NAT or a UDP-blocking firewall is in the way; this host's NAT is still being probed)"
	default:
		return why + "no direct pair answered (a symmetric NAT or a UDP-blocking firewall is in the way; this host's NAT type is unknown: " + local.Error + ")"
	}
}
