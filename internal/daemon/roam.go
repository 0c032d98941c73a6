package daemon

import (
	"github.com/punchd/punchd/internal/netwatch"
	"github.com/punchd/punchd/internal/tunnel"
)

// watchNetwork opens the watcher that restarts ICE when the host's
// addresses or default routes change (a move from Wi-Fi to LTE, a new
// lease): the old candidates are stale then, and waiting for the path to
// time out would only find the relay. Nil, with a log line, where there is
// no watcher; paths still heal when they time out.
func (d *daemon) watchNetwork(bind *tunnel.Bind) *netwatch.Watcher {
	log := d.log.With("component", "netwatch")
	w, err := netwatch.Open(netwatch.Config{
		Exclude: []string{d.cfg.Interface},
		Logger:  log,
		OnChange: func(before, after netwatch.Snapshot) {
			ip, moved := bind.RefreshLocal()
			log.Info("network changed; restarting ICE with fresh candidates", "before", before.String(), "after", after.String(),
				"host_candidate", addrString(ip), "host_address_changed", moved, "host_candidate6", addrString(bind.LocalAddr6()))
			// The rendezvous connection may be from an address that is
			// gone, and the restart's signals need it.
			if rv := d.rv.Load(); rv != nil {
				rv.Reconnect()
			}
			d.eachPeer(func(ps *peerState) { ps.ice.Restart("the host's network changed") })
		},
	})
	if err != nil {
		log.Warn("not watching the network", "err", err)
		return nil
	}
	return w
}
