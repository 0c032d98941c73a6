package daemon

import (
	"log/slog"

	"github.com/punchd/punchd/internal/identity"
	"github.com/punchd/punchd/internal/metrics"
)

// serveMetrics serves the daemon's metrics on addr (see package metrics);
// each scrape takes the same snapshot as `punchd status`.
func (d *daemon) serveMetrics(addr string, log *slog.Logger) (stop func(), err error) {
	_, stop, err = metrics.Serve(addr, metrics.NewDaemonRegistry(d.metricsSample), log)
	return stop, err
}

func (d *daemon) metricsSample() metrics.DaemonSample {
	st := d.status()
	out := metrics.DaemonSample{
		RendezvousConnected: st.Self.RendezvousConnected,
		SignalingRefused:    st.Self.SignalingRefused,
		RelayQueueDrops:     st.Self.Drops.RelayQueue,
		STUNQueueDrops:      st.Self.Drops.STUNQueue,
	}
	for _, p := range st.Peers {
		alias := p.Alias
		if alias == "" {
			alias = p.MemberName // a network member: the name it announced
		}
		s := metrics.PeerSample{ID: p.ID, Alias: alias, State: p.State, Path: p.Path, RxBytes: p.RxBytes, TxBytes: p.TxBytes}
		if p.Path == "relay" {
			s.Relay = "turn"
			if p.RelayVia != "" {
				s.Relay, s.RelayVia = "member", p.RelayVia
			}
		}
		if p.LastHandshake != nil {
			s.LastHandshake = *p.LastHandshake
		}
		if k, err := identity.ParseID(p.ID); err == nil {
			if ps, ok := d.peer(k); ok {
				s.ICEAttempts = ps.ice.Status().Attempts
				s.PathChanges = ps.pathChanges.Load()
				if ps.hard != nil {
					s.BirthdayAttempts, s.BirthdayHits, s.BirthdayProbes = ps.hard.Counts()
				}
			}
		}
		out.Peers = append(out.Peers, s)
	}
	return out
}

// serveRendezvousMetrics serves the rendezvous' metrics on addr.
func serveRendezvousMetrics(addr string, sample func() metrics.RendezvousSample, log *slog.Logger) (stop func(), err error) {
	_, stop, err = metrics.Serve(addr, metrics.NewRendezvousRegistry(sample), log)
	return stop, err
}
