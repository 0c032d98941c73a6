package portmap

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/huin/goupnp/dcps/internetgateway2"
	"github.com/huin/goupnp/httpu"
	"github.com/huin/goupnp/ssdp"
	"github.com/jackpal/gateway"
	natpmp "github.com/jackpal/go-nat-pmp"
	"github.com/punchd/punchd/internal/route"
	"github.com/punchd/punchd/internal/udpretry"
)

// DefaultTimeout bounds the whole port-mapping probe.
const DefaultTimeout = 2500 * time.Millisecond

// ssdpWait is how long UPnP discovery listens for gateways (the M-SEARCH
// MX is 1 s, the least SSDP allows).
const ssdpWait = 1100 * time.Millisecond

// testMappingLifetime is the lifetime of the probe's own test mapping,
// deleted right after; should the deletion be lost, it expires by itself.
const testMappingLifetime = 60

// Config says where to probe; the zero value probes the default
// gateway.
type Config struct {
	Gateway  netip.Addr    // default: the default route's gateway
	Timeout  time.Duration // whole probe; default DefaultTimeout
	Progress func(line string)
	// noUPnP leaves UPnP out (unit tests: SSDP is multicast, it would
	// leave the loopback).
	noUPnP bool
}

// Report says which port-mapping protocols the gateway answers.
type Report struct {
	Gateway string   `json:"gateway,omitempty"`
	UPnP    MapProbe `json:"upnp"`
	NATPMP  MapProbe `json:"nat_pmp"`
	PCP     MapProbe `json:"pcp"`
	Error   string   `json:"error,omitempty"`
}

// MapProbe is one protocol's answer. Available means the gateway speaks
// it; ExternalIP/ExternalPort are what a test mapping of a UDP port got
// (the mapping is deleted again); Error says why not, or what the gateway
// refused.
type MapProbe struct {
	Available    bool   `json:"available"`
	ExternalIP   string `json:"external_ip,omitempty"`
	ExternalPort int    `json:"external_port,omitempty"`
	Detail       string `json:"detail,omitempty"`
	Error        string `json:"error,omitempty"`
}

// Any reports whether any protocol answered.
func (r *Report) Any() bool {
	return r != nil && (r.UPnP.Available || r.NATPMP.Available || r.PCP.Available)
}

// Probe asks the gateway, in parallel, whether it offers UPnP-IGD,
// NAT-PMP and PCP, and makes (then deletes) one short-lived UDP test
// mapping with each that answers.
func Probe(ctx context.Context, cfg Config) *Report {
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	progress := func(format string, args ...any) {
		if cfg.Progress != nil {
			cfg.Progress(fmt.Sprintf(format, args...))
		}
	}
	rep := &Report{}
	gw := cfg.Gateway
	if !gw.IsValid() {
		ip, err := gateway.DiscoverGateway()
		if err != nil {
			rep.Error = fmt.Sprintf("no default gateway found (%v): nothing to ask for port mapping", err)
			progress("port mapping: %s", rep.Error)
			return rep
		}
		gw, _ = netip.AddrFromSlice(ip)
		gw = gw.Unmap()
	}
	rep.Gateway = gw.String()
	if !gw.Is4() {
		rep.Error = "the default gateway " + gw.String() + " is IPv6: only IPv4 port mapping is probed"
		return rep
	}
	local := route.Source(netip.AddrPortFrom(gw, pcpPort))
	if !local.IsValid() {
		rep.Error = "no route to the gateway " + gw.String()
		return rep
	}
	var wg sync.WaitGroup
	if !cfg.noUPnP {
		wg.Go(func() {
			rep.UPnP = probeUPnP(ctx, gw, local)
			progress("port mapping: UPnP-IGD %s", rep.UPnP.Summary())
		})
	}
	wg.Go(func() {
		rep.NATPMP = probeNATPMP(ctx, gw, local)
		progress("port mapping: NAT-PMP %s", rep.NATPMP.Summary())
	})
	wg.Go(func() {
		rep.PCP = probePCP(ctx, gw, local)
		progress("port mapping: PCP %s", rep.PCP.Summary())
	})
	wg.Wait()
	return rep
}

func (p MapProbe) Summary() string {
	var b strings.Builder
	if p.Available {
		b.WriteString("yes")
	} else {
		b.WriteString("no")
	}
	if p.ExternalIP != "" {
		fmt.Fprintf(&b, ", external %s", p.ExternalIP)
		if p.ExternalPort != 0 {
			fmt.Fprintf(&b, " (test mapping got port %d, deleted)", p.ExternalPort)
		}
	}
	if p.Detail != "" {
		fmt.Fprintf(&b, "; %s", p.Detail)
	}
	if p.Error != "" {
		fmt.Fprintf(&b, "; %s", p.Error)
	}
	return b.String()
}

// testPort reserves a UDP port on local for a test mapping; the caller
// closes it when the mapping is gone.
func testPort(local netip.Addr) (*net.UDPConn, uint16, error) {
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 0)))
	if err != nil {
		return nil, 0, fmt.Errorf("reserve a test port: %w", err)
	}
	return c, c.LocalAddr().(*net.UDPAddr).AddrPort().Port(), nil
}

// cleanupContext outlives the probe's deadline a little, so a mapping made
// just before the deadline is still deleted.
func cleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), time.Second)
}

// igdClient is what the WANIPConnection1/2 and WANPPPConnection1 clients
// of goupnp have in common.
type igdClient interface {
	GetExternalIPAddressCtx(ctx context.Context) (string, error)
	AddPortMappingCtx(ctx context.Context, remoteHost string, externalPort uint16, protocol string, internalPort uint16,
		internalClient string, enabled bool, description string, leaseSeconds uint32) error
	DeletePortMappingCtx(ctx context.Context, remoteHost string, externalPort uint16, protocol string) error
}

func probeUPnP(ctx context.Context, gw, local netip.Addr) MapProbe {
	var p MapProbe
	client, where, err := findIGD(ctx, gw, local)
	if err != nil {
		p.Error = err.Error()
		return p
	}
	p.Available, p.Detail = true, where
	ext, err := client.GetExternalIPAddressCtx(ctx)
	if err != nil {
		p.Error = fmt.Sprintf("GetExternalIPAddress: %v", err)
		return p
	}
	p.ExternalIP = ext
	conn, port, err := testPort(local)
	if err != nil {
		p.Error = err.Error()
		return p
	}
	defer conn.Close()
	const desc = "punchd nat probe"
	err = client.AddPortMappingCtx(ctx, "", port, "UDP", port, local.String(), true, desc, testMappingLifetime)
	if err != nil && strings.Contains(err.Error(), "725") {
		// OnlyPermanentLeasesSupported (IGDv1 devices): a lease of 0, deleted below.
		err = client.AddPortMappingCtx(ctx, "", port, "UDP", port, local.String(), true, desc, 0)
	}
	if err != nil {
		p.Error = fmt.Sprintf("the gateway refused a test mapping of UDP port %d: %v", port, err)
		return p
	}
	p.ExternalPort = int(port)
	cctx, cancel := cleanupContext(ctx)
	defer cancel()
	if err := client.DeletePortMappingCtx(cctx, "", port, "UDP"); err != nil {
		p.Error = fmt.Sprintf("deleting the test mapping of UDP port %d failed (it expires by itself): %v", port, err)
	}
	return p
}

// findIGD searches for an Internet Gateway Device with SSDP and returns a
// client for its WAN connection service, preferring the default gateway.
func findIGD(ctx context.Context, gw, local netip.Addr) (igdClient, string, error) {
	hc, err := httpu.NewHTTPUClientAddr(local.String())
	if err != nil {
		return nil, "", fmt.Errorf("SSDP socket: %w", err)
	}
	defer hc.Close()
	sctx, cancel := context.WithTimeout(ctx, ssdpWait)
	defer cancel()
	resps, err := ssdp.RawSearch(sctx, hc, "urn:schemas-upnp-org:device:InternetGatewayDevice:1", 2)
	if err != nil {
		return nil, "", fmt.Errorf("SSDP search: %w", err)
	}
	locs := igdLocations(resps, gw)
	if len(locs) == 0 {
		return nil, "", errors.New("no UPnP Internet Gateway Device answered SSDP")
	}
	var errs []error
	for _, loc := range locs {
		c, where, err := wanClient(ctx, loc, gw)
		if err == nil {
			return c, where, nil
		}
		errs = append(errs, err)
	}
	return nil, "", fmt.Errorf("UPnP device without a usable WAN connection service: %w", errors.Join(errs...))
}

// igdLocations are the device description URLs of the SSDP answers, the
// default gateway's first; answers without a usable LOCATION are skipped.
func igdLocations(resps []*http.Response, gw netip.Addr) []*url.URL {
	var locs []*url.URL
	for _, r := range resps {
		loc, err := r.Location()
		if err != nil {
			continue
		}
		if loc.Hostname() == gw.String() {
			locs = append([]*url.URL{loc}, locs...)
		} else {
			locs = append(locs, loc)
		}
	}
	return locs
}

// wanClient fetches the device description at loc and returns a client
// for its WAN connection service, the newest kind first. Every URL it
// follows must be on the LAN (see lanURL), and every answer is bounded.
func wanClient(ctx context.Context, loc *url.URL, gw netip.Addr) (igdClient, string, error) {
	hc := newUPnPHTTPClient()
	root, err := fetchRootDevice(ctx, &hc, loc, gw)
	if err != nil {
		return nil, "", err
	}
	if c, err := internetgateway2.NewWANIPConnection2ClientsFromRootDevice(root, loc); err == nil && len(c) > 0 {
		if err := boundSOAP(c[0].SOAPClient, &hc, gw); err != nil {
			return nil, "", err
		}
		return c[0], "WANIPConnection:2 at " + loc.Host, nil
	}
	if c, err := internetgateway2.NewWANIPConnection1ClientsFromRootDevice(root, loc); err == nil && len(c) > 0 {
		if err := boundSOAP(c[0].SOAPClient, &hc, gw); err != nil {
			return nil, "", err
		}
		return c[0], "WANIPConnection:1 at " + loc.Host, nil
	}
	if c, err := internetgateway2.NewWANPPPConnection1ClientsFromRootDevice(root, loc); err == nil && len(c) > 0 {
		if err := boundSOAP(c[0].SOAPClient, &hc, gw); err != nil {
			return nil, "", err
		}
		return c[0], "WANPPPConnection:1 at " + loc.Host, nil
	}
	return nil, "", fmt.Errorf("%s has no WAN connection service", loc)
}

func probeNATPMP(ctx context.Context, gw, local netip.Addr) MapProbe {
	var p MapProbe
	left := time.Until(deadlineOf(ctx))
	// go-nat-pmp takes a total timeout per call, no context.
	c := natpmp.NewClientWithLocalAndTimeout(gw.AsSlice(), local.AsSlice(), min(left, time.Second))
	ext, err := c.GetExternalAddress()
	if err != nil {
		p.Error = natpmpError(err)
		return p
	}
	p.Available = true
	p.ExternalIP = netip.AddrFrom4(ext.ExternalIPAddress).String()
	conn, port, err := testPort(local)
	if err != nil {
		p.Error = err.Error()
		return p
	}
	defer conn.Close()
	if ctx.Err() != nil {
		p.Error = "no time left for a test mapping"
		return p
	}
	m, err := c.AddPortMapping("udp", int(port), int(port), testMappingLifetime)
	if err != nil {
		p.Error = fmt.Sprintf("the gateway refused a test mapping of UDP port %d: %v", port, err)
		return p
	}
	p.ExternalPort = int(m.MappedExternalPort)
	// RFC 6886 section 3.4: internal port, external port 0, lifetime 0 deletes.
	if _, err := natpmp.NewClientWithLocalAndTimeout(gw.AsSlice(), local.AsSlice(), time.Second).AddPortMapping("udp", int(port), 0, 0); err != nil {
		p.Error = fmt.Sprintf("deleting the test mapping of UDP port %d failed (it expires by itself): %v", port, err)
	}
	return p
}

func natpmpError(err error) string {
	if errors.Is(err, syscall.ECONNREFUSED) || strings.Contains(err.Error(), "refused") {
		return "no NAT-PMP server on the gateway (port 5351 refused)"
	}
	if strings.Contains(err.Error(), "Timed out") {
		return "no NAT-PMP answer from the gateway"
	}
	return err.Error()
}

func probePCP(ctx context.Context, gw, local netip.Addr) MapProbe {
	var p MapProbe
	conn, port, err := testPort(local)
	if err != nil {
		p.Error = err.Error()
		return p
	}
	defer conn.Close()
	nonce := pcpNonce()
	timeout := min(time.Until(deadlineOf(ctx)), time.Second)
	resp, err := pcpMapPort(ctx, gw, local, nonce, port, testMappingLifetime, timeout)
	switch {
	case errors.Is(err, errPCPNATPMPOnly):
		p.Error = "the gateway speaks NAT-PMP only"
		return p
	case errors.Is(err, udpretry.ErrNoAnswer):
		p.Error = "no PCP answer from the gateway"
		return p
	case errors.Is(err, syscall.ECONNREFUSED) || err != nil && strings.Contains(err.Error(), "refused"):
		p.Error = "no PCP server on the gateway (port 5351 refused)"
		return p
	case err != nil:
		p.Error = err.Error()
		return p
	}
	p.Available = true
	if resp.result != pcpResultOK {
		p.Error = "the gateway refused a test mapping: " + pcpResultName(resp.result)
		return p
	}
	p.ExternalIP, p.ExternalPort = resp.externalIP.String(), int(resp.externalPort)
	p.Detail = fmt.Sprintf("lifetime %d s offered", resp.lifetime)
	cctx, cancel := cleanupContext(ctx)
	defer cancel()
	if del, err := pcpMapPort(cctx, gw, local, nonce, port, 0, time.Second); err != nil || del.result != pcpResultOK {
		if err == nil {
			err = errors.New(pcpResultName(del.result))
		}
		p.Error = fmt.Sprintf("deleting the test mapping failed (it expires by itself): %v", err)
	}
	return p
}

func deadlineOf(ctx context.Context) time.Time {
	if d, ok := ctx.Deadline(); ok {
		return d
	}
	return time.Now().Add(DefaultTimeout)
}
