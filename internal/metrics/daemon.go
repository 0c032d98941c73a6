package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// PeerSample is one peer of `punchd up` at scrape time.
type PeerSample struct {
	ID    string // the peer's ID
	Alias string // its alias, "" when none
	State string // icepeer's state: new, waiting, checking, connected, disconnected, failed
	Path  string // direct, relay or none
	// RxBytes and TxBytes are WireGuard's counters for the peer.
	RxBytes, TxBytes uint64
	LastHandshake    time.Time // zero before the first
	ICEAttempts      uint64    // ICE attempts since start
	PathChanges      uint64    // paths selected or lost since start
	// Relay says what relays a relayed path: "turn" (a TURN server),
	// "member" (a peer relay, RelayVia names the member) or "" when the
	// path is not relayed.
	Relay, RelayVia string
	// Birthday punching toward the peer since start (either side):
	// attempts, attempts that found a path, and probe packets sent.
	BirthdayAttempts, BirthdayHits, BirthdayProbes uint64
}

// DaemonSample is what `punchd up` reports at scrape time.
type DaemonSample struct {
	Peers               []PeerSample
	RendezvousConnected bool
	// SignalingRefused counts refused signaling input per cause.
	SignalingRefused map[string]uint64
	// RelayQueueDrops and STUNQueueDrops are packets dropped on full
	// queues inside the daemon.
	RelayQueueDrops, STUNQueueDrops uint64
}

// States and paths get one series each per peer (value 1 for the current
// one, 0 for the others), the usual Prometheus shape for an enum.
var (
	peerStates = []string{"new", "waiting", "checking", "connected", "disconnected", "failed"}
	peerPaths  = []string{"direct", "relay", "none"}
	peerRelays = []string{"turn", "member"}
)

var (
	descPeerState = prometheus.NewDesc("punchd_peer_state", "1 for the peer's current ICE state, 0 for the others.",
		[]string{"peer", "alias", "state"}, nil)
	descPeerPath = prometheus.NewDesc("punchd_peer_path", "1 for the kind of path carrying the peer's traffic (direct, relay, none), 0 for the others.",
		[]string{"peer", "alias", "path"}, nil)
	descRx = prometheus.NewDesc("punchd_peer_receive_bytes_total", "Bytes received from the peer through WireGuard.",
		[]string{"peer", "alias"}, nil)
	descTx = prometheus.NewDesc("punchd_peer_transmit_bytes_total", "Bytes sent to the peer through WireGuard.",
		[]string{"peer", "alias"}, nil)
	descHandshakeAge = prometheus.NewDesc("punchd_peer_handshake_age_seconds", "Seconds since the last WireGuard handshake with the peer (absent before the first).",
		[]string{"peer", "alias"}, nil)
	descAttempts = prometheus.NewDesc("punchd_peer_ice_attempts_total", "ICE attempts toward the peer since start.",
		[]string{"peer", "alias"}, nil)
	descPathChanges = prometheus.NewDesc("punchd_peer_path_changes_total", "Paths selected or lost for the peer since start.",
		[]string{"peer", "alias"}, nil)
	descRelay = prometheus.NewDesc("punchd_peer_relay", "1 for what relays the peer's relayed path (turn: a TURN server, member: a peer relay), 0 for the other; both 0 when not relayed.",
		[]string{"peer", "alias", "relay"}, nil)
	descRelayVia = prometheus.NewDesc("punchd_peer_relay_via_info", "1 while a peer relay carries the peer's traffic; via is the relaying member.",
		[]string{"peer", "alias", "via"}, nil)
	descBirthdayAttempts = prometheus.NewDesc("punchd_peer_birthday_attempts_total", "Birthday punching attempts toward the peer since start.",
		[]string{"peer", "alias"}, nil)
	descBirthdayHits = prometheus.NewDesc("punchd_peer_birthday_hits_total", "Birthday punching attempts that found a direct path.",
		[]string{"peer", "alias"}, nil)
	descBirthdayProbes = prometheus.NewDesc("punchd_peer_birthday_probes_total", "Probe packets birthday punching sent toward the peer.",
		[]string{"peer", "alias"}, nil)
	descRendezvous = prometheus.NewDesc("punchd_rendezvous_connected", "1 while registered at the rendezvous.", nil, nil)
	descRefused    = prometheus.NewDesc("punchd_signaling_refused_total", "Signaling input refused, by cause (unknown-sender, bad-seal, replay, bad-frame, bad-ice-server).",
		[]string{"cause"}, nil)
	descQueueDrops = prometheus.NewDesc("punchd_queue_drops_total", "Packets dropped inside the daemon because a queue was full, by queue.",
		[]string{"queue"}, nil)
)

type daemonCollector struct {
	sample func() DaemonSample
	now    func() time.Time
}

// NewDaemonRegistry returns a registry whose punchd_* metrics come from
// sample, called once per scrape.
func NewDaemonRegistry(sample func() DaemonSample) *prometheus.Registry {
	return newRegistry(&daemonCollector{sample: sample, now: time.Now})
}

func (c *daemonCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPeerState, descPeerPath, descRx, descTx, descHandshakeAge, descAttempts, descPathChanges, descRelay, descRelayVia, descBirthdayAttempts, descBirthdayHits, descBirthdayProbes, descRendezvous, descRefused, descQueueDrops} {
		ch <- d
	}
}

func (c *daemonCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.sample()
	now := c.now()
	for _, p := range s.Peers {
		for _, st := range peerStates {
			ch <- prometheus.MustNewConstMetric(descPeerState, prometheus.GaugeValue, bool01(p.State == st), p.ID, p.Alias, st)
		}
		for _, path := range peerPaths {
			ch <- prometheus.MustNewConstMetric(descPeerPath, prometheus.GaugeValue, bool01(p.Path == path), p.ID, p.Alias, path)
		}
		ch <- prometheus.MustNewConstMetric(descRx, prometheus.CounterValue, float64(p.RxBytes), p.ID, p.Alias)
		ch <- prometheus.MustNewConstMetric(descTx, prometheus.CounterValue, float64(p.TxBytes), p.ID, p.Alias)
		if !p.LastHandshake.IsZero() {
			ch <- prometheus.MustNewConstMetric(descHandshakeAge, prometheus.GaugeValue, now.Sub(p.LastHandshake).Seconds(), p.ID, p.Alias)
		}
		ch <- prometheus.MustNewConstMetric(descAttempts, prometheus.CounterValue, float64(p.ICEAttempts), p.ID, p.Alias)
		ch <- prometheus.MustNewConstMetric(descPathChanges, prometheus.CounterValue, float64(p.PathChanges), p.ID, p.Alias)
		for _, r := range peerRelays {
			ch <- prometheus.MustNewConstMetric(descRelay, prometheus.GaugeValue, bool01(p.Relay == r), p.ID, p.Alias, r)
		}
		if p.Relay == "member" {
			ch <- prometheus.MustNewConstMetric(descRelayVia, prometheus.GaugeValue, 1, p.ID, p.Alias, p.RelayVia)
		}
		ch <- prometheus.MustNewConstMetric(descBirthdayAttempts, prometheus.CounterValue, float64(p.BirthdayAttempts), p.ID, p.Alias)
		ch <- prometheus.MustNewConstMetric(descBirthdayHits, prometheus.CounterValue, float64(p.BirthdayHits), p.ID, p.Alias)
		ch <- prometheus.MustNewConstMetric(descBirthdayProbes, prometheus.CounterValue, float64(p.BirthdayProbes), p.ID, p.Alias)
	}
	ch <- prometheus.MustNewConstMetric(descRendezvous, prometheus.GaugeValue, bool01(s.RendezvousConnected))
	for cause, n := range s.SignalingRefused {
		ch <- prometheus.MustNewConstMetric(descRefused, prometheus.CounterValue, float64(n), cause)
	}
	ch <- prometheus.MustNewConstMetric(descQueueDrops, prometheus.CounterValue, float64(s.RelayQueueDrops), "relay")
	ch <- prometheus.MustNewConstMetric(descQueueDrops, prometheus.CounterValue, float64(s.STUNQueueDrops), "stun")
}

func bool01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
