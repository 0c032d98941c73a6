package natprobe

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/punchd/punchd/internal/natkind"
	"github.com/punchd/punchd/internal/portmap"
)

// checkBudget bounds a whole `punchd nat` run, whatever the network does.
const checkBudget = 4500 * time.Millisecond

// CheckConfig is one `punchd nat` run.
type CheckConfig struct {
	Discover DiscoverConfig
	PortMap  portmap.Config
	// NoPortMap skips the UPnP/NAT-PMP/PCP probe.
	NoPortMap bool
}

// Check runs the RFC 5780 discovery and the port-mapping probe in
// parallel and returns one report (see Discover for the error).
func Check(ctx context.Context, cfg CheckConfig) (*Report, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, checkBudget)
	defer cancel()
	var pm *portmap.Report
	var wg sync.WaitGroup
	if !cfg.NoPortMap {
		wg.Go(func() { pm = portmap.Probe(ctx, cfg.PortMap) })
	}
	rep, err := Discover(ctx, cfg.Discover)
	wg.Wait()
	rep.PortMapping = pm
	if pm.Any() && rep.NATType == natkind.TypeSymmetric {
		rep.Notes = append(rep.Notes, "the gateway offers port mapping: a mapped port would make this NAT as easy as a full-cone one")
	}
	rep.DurationMillis = millis(time.Since(start))
	return rep, err
}

// WriteText prints the report for people (Error is left to the caller,
// which prints the error it got with the report).
func (r *Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprintf(format, args...)) }
	server := r.Server
	if r.RFC5780 {
		server += " (RFC 5780, other address " + r.OtherAddress + ")"
	} else if r.Server != "" && !r.UDPBlocked {
		server += " (no RFC 5780)"
	}
	row("server", "%s", server)
	row("NAT type", "%s (%s)", r.NATType, r.ClassicName)
	ext := orNone(r.ExternalIPv4)
	if r.ExternalIPv4 != "" && r.ExternalPort != 0 && !r.UDPBlocked {
		ext = fmt.Sprintf("%s, port %d", r.ExternalIPv4, r.ExternalPort)
	}
	row("external IPv4", "%s", ext)
	row("external IPv6", "%s", orNone(r.ExternalIPv6))
	row("mapping", "%s", r.Mapping)
	row("filtering", "%s", r.Filtering)
	if !r.UDPBlocked && r.LocalAddress != "" {
		row("port preserved", "%s (local %s)", yes(r.PortPreserved), r.LocalAddress)
		row("hairpinning", "%s", yes(r.Hairpin))
	}
	udp := "works"
	switch {
	case r.UDPBlocked && r.NATType == natkind.TypeUDPBlocked:
		udp = "blocked (the server answers over TCP)"
	case r.UDPBlocked:
		udp = "no answer from the server"
	}
	if r.RTTMillis > 0 {
		udp += fmt.Sprintf(" (rtt %.1f ms)", r.RTTMillis)
	}
	row("UDP", "%s", udp)
	if pm := r.PortMapping; pm != nil {
		if pm.Error != "" {
			row("port mapping", "%s", pm.Error)
		} else {
			row("port mapping", "gateway %s", pm.Gateway)
			row("  UPnP-IGD", "%s", pm.UPnP.Summary())
			row("  NAT-PMP", "%s", pm.NATPMP.Summary())
			row("  PCP", "%s", pm.PCP.Summary())
		}
	}
	if r.PortAllocation != "" {
		row("port allocation", "%s", r.allocationText())
	}
	row("what it means", "%s", r.Advice)
	for _, n := range r.Notes {
		row("note", "%s", n)
	}
	row("took", "%.0f ms", r.DurationMillis)
	return tw.Flush()
}

// allocationText says how the NAT picks ports and what punchd does.
func (r *Report) allocationText() string {
	ports := fmt.Sprint(r.AllocationPorts)
	if !r.Sequential() {
		return "random (new mappings got ports " + ports + "): with a port-restricted peer punchd tries birthday punching (many sockets here, random probes there, bounded), the relay carries the tunnel meanwhile"
	}
	return fmt.Sprintf("%s, stride %d (new mappings got ports %s): this symmetric NAT looks sequential, so with a port-restricted peer punchd predicts its next ports and punches directly, before any random probing", r.PortAllocation, r.PortStride, ports)
}

func orNone(s string) string {
	if strings.TrimSpace(s) == "" {
		return "none found"
	}
	return s
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
