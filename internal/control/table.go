package control

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteTable prints the status the way a person reads it: who we are, then
// one line per peer with the path that carries its traffic.
func (s Status) WriteTable(w io.Writer, now time.Time) error {
	rv := "connected"
	if !s.Self.RendezvousConnected {
		rv = "reconnecting (tunnels stay up)"
	}
	fmt.Fprintf(w, "self       %s\n", s.Self.ID)
	fmt.Fprintf(w, "overlay    %s %s on %s, udp port %d\n", s.Self.OverlayIPv4, s.Self.OverlayIPv6, s.Self.Interface, s.Self.ListenPort)
	fmt.Fprintf(w, "rendezvous %s (%s)\n", s.Self.Rendezvous, rv)
	if n := s.Self.NAT; n != nil {
		fmt.Fprintf(w, "nat        %s (mapping %s, filtering %s), external %s\n", n.Type, n.Mapping, n.Filtering, dash(n.ExternalIPv4))
	}
	if m := s.Self.PortMapping; m != nil {
		fmt.Fprintf(w, "portmap    %s %s, lease %s left\n", m.Protocol, m.External, (time.Duration(m.LeaseLeftSeconds) * time.Second).String())
	}
	if d := s.Self.Drops; d.RelayQueue > 0 || d.STUNQueue > 0 {
		fmt.Fprintf(w, "drops      %d relayed packets (the tunnel device fell behind), %d STUN (ICE fell behind)\n", d.RelayQueue, d.STUNQueue)
	}
	if r := s.Self.SignalingRefused; len(r) > 0 {
		causes := make([]string, 0, len(r))
		for c := range r {
			causes = append(causes, c)
		}
		sort.Strings(causes)
		for i, c := range causes {
			causes[i] = fmt.Sprintf("%s %d", c, r[c])
		}
		fmt.Fprintf(w, "refused    %s (signaling input dropped)\n", strings.Join(causes, ", "))
	}
	for _, warning := range s.Self.Warnings {
		fmt.Fprintf(w, "WARNING    %s\n", warning)
	}
	fmt.Fprintln(w)
	if len(s.Peers) == 0 {
		_, err := fmt.Fprintln(w, "no peers yet (use --peer, or --network: members appear as they announce themselves)")
		return err
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PEER\tOVERLAY\tSTATE\tPATH\tLOCAL\tREMOTE\tRX\tTX\tHANDSHAKE")
	for _, p := range s.Peers {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			p.Name(), dash(p.OverlayIPv4), p.State, p.PathText(),
			candidate(p.LocalCandidate), candidate(p.RemoteCandidate),
			bytes(p.RxBytes), bytes(p.TxBytes), ago(p.LastHandshake, now))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, p := range s.Peers {
		if p.Reason != "" {
			fmt.Fprintf(w, "%s: %s\n", p.ID[:min(12, len(p.ID))], p.Reason)
		}
	}
	return nil
}

// PathText is the path as the table shows it: "direct (birthday, 231
// probes)" when birthday punching or prediction made it, "relay via
// alice" when a member relays it.
func (p PeerStatus) PathText() string {
	switch {
	case p.RelayVia != "":
		return "relay via " + p.RelayVia
	case p.Via == "":
		return p.Path
	case p.Probes > 0:
		return fmt.Sprintf("%s (%s, %d probes)", p.Path, p.Via, p.Probes)
	}
	return p.Path + " (" + p.Via + ")"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func candidate(c *Candidate) string {
	if c == nil {
		return "-"
	}
	proto := c.RelayProtocol
	if c.RelayFamily == "ipv6" {
		proto += "6" // relay/udp6: to the TURN server over IPv6
	}
	if proto != "" && proto != "udp" {
		return c.Type + "/" + proto + " " + c.Address
	}
	return c.Type + " " + c.Address
}

func ago(t *time.Time, now time.Time) string {
	if t == nil || t.IsZero() {
		return "never"
	}
	return now.Sub(*t).Round(time.Second).String() + " ago"
}

func bytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// Name is how a person sees the peer: its alias (else the name it
// announced to the network) with the start of its ID, or the start of its
// ID.
func (p PeerStatus) Name() string {
	if p.Alias != "" {
		return p.Alias + " (" + shortID(p.ID) + ")"
	}
	if p.MemberName != "" {
		return p.MemberName + " (" + shortID(p.ID) + ")"
	}
	return shortID(p.ID)
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12] + "…"
	}
	return id
}
