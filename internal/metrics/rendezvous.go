package metrics

import "github.com/prometheus/client_golang/prometheus"

// RendezvousSample is what `punchd rendezvous` reports at scrape time.
type RendezvousSample struct {
	Online int // registered peers
	// FramesDropped counts frames dropped because a client's queue was
	// full.
	FramesDropped uint64
	// FramesIn and FramesOut are signaling frames read from registered
	// clients and written to them.
	FramesIn, FramesOut uint64
	// RelayedToPeers and RelayedFromPeers are payload bytes the TURN
	// relays sent to peers and received from them.
	RelayedToPeers, RelayedFromPeers uint64
	// Rejected counts refused requests by cause; nil when the server does
	// not count them.
	Rejected map[string]uint64
	// TURN allocations of the embedded relay: now, and made since start.
	TURNAllocations      int64
	TURNAllocationsTotal uint64
	// PeerJSOnline is how many browsers are registered at /peerjs (0 when
	// it is off).
	PeerJSOnline int
}

var (
	descOnline   = prometheus.NewDesc("punchd_rendezvous_peers_online", "Peers registered at the rendezvous.", nil, nil)
	descDropped  = prometheus.NewDesc("punchd_rendezvous_frames_dropped_total", "Frames dropped because the recipient's queue was full.", nil, nil)
	descFrames   = prometheus.NewDesc("punchd_rendezvous_frames_total", "Signaling frames read from registered peers (direction in) and written to them (out).", []string{"direction"}, nil)
	descRelayed  = prometheus.NewDesc("punchd_rendezvous_turn_relayed_bytes_total", "Payload bytes relayed by TURN allocations: sent to peers (direction to_peer) and received from them (from_peer).", []string{"direction"}, nil)
	descRejected = prometheus.NewDesc("punchd_rendezvous_rejected_total", "Requests refused, by cause: signaling junk (handshake-failed, auth-failed, per-ip-cap, rate-limited, ...), turn-quota, stun-rate-limited, and the web endpoints' causes.", []string{"cause"}, nil)
	descAllocs   = prometheus.NewDesc("punchd_rendezvous_turn_allocations", "TURN allocations of the embedded relay now.", nil, nil)
	descAllocsT  = prometheus.NewDesc("punchd_rendezvous_turn_allocations_total", "TURN allocations made since start.", nil, nil)
	descPeerJS   = prometheus.NewDesc("punchd_rendezvous_peerjs_online", "Browsers registered with the PeerJS signaling at /peerjs.", nil, nil)
)

type rendezvousCollector struct{ sample func() RendezvousSample }

// NewRendezvousRegistry returns a registry whose punchd_rendezvous_*
// metrics come from sample, called once per scrape.
func NewRendezvousRegistry(sample func() RendezvousSample) *prometheus.Registry {
	return newRegistry(rendezvousCollector{sample: sample})
}

func (c rendezvousCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descOnline
	ch <- descDropped
	ch <- descRejected
	ch <- descFrames
	ch <- descRelayed
	ch <- descAllocs
	ch <- descAllocsT
	ch <- descPeerJS
}

func (c rendezvousCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.sample()
	ch <- prometheus.MustNewConstMetric(descOnline, prometheus.GaugeValue, float64(s.Online))
	ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(s.FramesDropped))
	ch <- prometheus.MustNewConstMetric(descFrames, prometheus.CounterValue, float64(s.FramesIn), "in")
	ch <- prometheus.MustNewConstMetric(descFrames, prometheus.CounterValue, float64(s.FramesOut), "out")
	ch <- prometheus.MustNewConstMetric(descRelayed, prometheus.CounterValue, float64(s.RelayedToPeers), "to_peer")
	ch <- prometheus.MustNewConstMetric(descRelayed, prometheus.CounterValue, float64(s.RelayedFromPeers), "from_peer")
	ch <- prometheus.MustNewConstMetric(descAllocs, prometheus.GaugeValue, float64(s.TURNAllocations))
	ch <- prometheus.MustNewConstMetric(descAllocsT, prometheus.CounterValue, float64(s.TURNAllocationsTotal))
	ch <- prometheus.MustNewConstMetric(descPeerJS, prometheus.GaugeValue, float64(s.PeerJSOnline))
	for cause, n := range s.Rejected {
		ch <- prometheus.MustNewConstMetric(descRejected, prometheus.CounterValue, float64(n), cause)
	}
}
