package scenario

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/punchd/punchd/internal/lab"
	"github.com/punchd/punchd/internal/natkind"
	"github.com/punchd/punchd/internal/natprobe"
	"github.com/punchd/punchd/internal/portmap"
)

// natLab is one client behind a NAT of some type, and an RFC 5780 server
// host ("stun", two addresses) on the lab's internet.
type natLab struct {
	lab    *lab.Lab
	srv    *lab.Host
	router *lab.Router // nil for NAT type none
	client *lab.Host
}

func newNATLab(ctx context.Context, t *testing.T, typ lab.NATType, opts lab.RouterOptions, extraPublic ...string) (*natLab, []*lab.Host) {
	t.Helper()
	l, err := lab.New(ctx, lab.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	n := &natLab{lab: l}
	if n.srv, err = l.AddPublicHost("stun", 1); err != nil {
		t.Fatal(err)
	}
	var extra []*lab.Host
	for _, name := range extraPublic {
		h, err := l.AddPublicHost(name, 1)
		if err != nil {
			t.Fatal(err)
		}
		extra = append(extra, h)
	}
	if typ != lab.NATNone {
		if opts.UPnP && len(extra) > 0 {
			opts.STUN = append([]netip.Addr{extra[0].Addr}, extra[0].Extra...)
		}
		if n.router, err = l.AddNATWith("nat", typ, opts); err != nil {
			t.Fatal(err)
		}
	}
	if n.client, err = l.AddHost("client", n.router); err != nil {
		t.Fatal(err)
	}
	return n, extra
}

// externalIP is the address servers see the client as.
func (n *natLab) externalIP() string {
	if n.router == nil {
		return n.client.Addr.String()
	}
	return n.router.WANAddr.String()
}

// wantType is the name `punchd nat` must give the lab's NAT type.
func wantType(t lab.NATType) natkind.NATType {
	switch t {
	case lab.NATNone:
		return natkind.TypeOpen
	case lab.NATSymmetricSequential:
		return natkind.TypeSymmetric
	}
	return natkind.NATType(t)
}

// TestNATReportPortAllocation: behind a symmetric NAT, punchd nat says
// how it allocates ports: the lab's sequential NAT counts up by one (its
// own test checks that at a plain listener), the plain symmetric one
// randomises. Against coturn, which agrees both are symmetric.
func TestNATReportPortAllocation(t *testing.T) {
	requireNATTools(t)
	tests := []struct {
		typ    lab.NATType
		want   string
		stride int
	}{
		{lab.NATSymmetricSequential, "sequential", 1},
		{lab.NATSymmetric, "random", 0},
		{lab.NATPortRestricted, "", 0}, // one mapping per socket: nothing to learn
	}
	for _, tt := range tests {
		t.Run(string(tt.typ), func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			n, _ := newNATLab(ctx, t, tt.typ, lab.RouterOptions{})
			coturn, err := lab.StartCoturn(ctx, n.srv)
			if err != nil {
				t.Fatal(err)
			}
			defer coturn.Stop()
			rep, stderr, _, exitErr := runNAT(ctx, t, n.client, "--server", net.JoinHostPort(n.srv.Addr.String(), stunPort))
			t.Logf("punchd nat (exit %v):\n%s", exitErr, stderr)
			if exitErr != nil || rep.NATType != wantType(tt.typ) {
				t.Fatalf("exit %v, nat_type %s, want %s", exitErr, rep.NATType, wantType(tt.typ))
			}
			if rep.PortAllocation != tt.want || rep.PortStride != tt.stride {
				t.Fatalf("port_allocation %q stride %d (ports %v), want %q stride %d", rep.PortAllocation, rep.PortStride, rep.AllocationPorts, tt.want, tt.stride)
			}
		})
	}
}

// runNAT runs `punchd nat --json` in h and returns its report, its stderr
// and how long it took; exitErr is the process's failure, if any.
func runNAT(ctx context.Context, t *testing.T, h *lab.Host, args ...string) (rep natprobe.Report, stderr string, took time.Duration, exitErr error) {
	t.Helper()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := h.Command(cctx, punchdBinary, append([]string{"nat", "--json"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	exitErr = cmd.Run()
	took = time.Since(start)
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("punchd nat --json printed no JSON report (%v, exit %v):\nstdout:\n%s\nstderr:\n%s", err, exitErr, out.String(), errb.String())
	}
	return rep, errb.String(), took, exitErr
}

// startRendezvous runs `punchd rendezvous` on h (STUN on h.Addr:3478) and
// waits until its STUN socket(s) are bound.
func startRendezvous(ctx context.Context, t *testing.T, h *lab.Host, args ...string) {
	t.Helper()
	var log bytes.Buffer
	cmd := h.Command(context.Background(), punchdBinary, append([]string{"rendezvous",
		"--listen", net.JoinHostPort(h.Addr.String(), signalPort),
		"--stun-listen", net.JoinHostPort(h.Addr.String(), stunPort), "--no-turn"}, args...)...)
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start punchd rendezvous: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	bound := []string{net.JoinHostPort(h.Addr.String(), stunPort)}
	if len(h.Extra) > 0 && !strings.Contains(strings.Join(args, " "), "--stun-alt-ip none") {
		bound = append(bound, net.JoinHostPort(h.Extra[0].String(), "3479"))
	}
	if err := lab.WaitUDPBound(ctx, h, bound...); err != nil {
		t.Fatalf("punchd rendezvous: %v\n%s", err, log.String())
	}
}

func requireNATTools(t *testing.T) {
	t.Helper()
	lab.RequireRoot(t)
	if err := lab.CoturnInstalled(); err != nil {
		t.Skip(err)
	}
	if punchdBinary == "" {
		t.Fatal("no punchd binary (TestMain builds it as root)")
	}
}

// TestNATReportAgreesWithCoturn is the acceptance test: from
// behind each lab NAT type, `punchd nat` against a coturn with an
// alternate address finds the mapping and filtering coturn's own
// turnutils_natdiscovery finds, and names the lab's type.
func TestNATReportAgreesWithCoturn(t *testing.T) {
	requireNATTools(t)
	for _, typ := range lab.AllNATTypes() {
		t.Run(string(typ), func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			n, _ := newNATLab(ctx, t, typ, lab.RouterOptions{})
			coturn, err := lab.StartCoturn(ctx, n.srv)
			if err != nil {
				t.Fatal(err)
			}
			defer coturn.Stop()
			server := net.JoinHostPort(n.srv.Addr.String(), stunPort)

			rep, stderr, took, exitErr := runNAT(ctx, t, n.client, "--server", server)
			ref := lab.NATDiscovery(ctx, n.client, n.srv.Addr.String())
			t.Logf("%s\npunchd nat --json --server %s (%s, exit %v):\n%s\nturnutils_natdiscovery -m -f:\n%s",
				n.lab.Describe(), server, took.Round(time.Millisecond), exitErr, stderr, ref.Output)
			checkReport(t, typ, n, rep, exitErr, ref)
		})
	}
}

// checkReport compares a report with the lab's truth and coturn's opinion.
func checkReport(t *testing.T, typ lab.NATType, n *natLab, rep natprobe.Report, exitErr error, ref lab.Discovery) {
	t.Helper()
	if exitErr != nil {
		t.Errorf("punchd nat failed: %v (error %q)", exitErr, rep.Error)
	}
	if rep.NATType != wantType(typ) {
		t.Errorf("nat_type %q, want %q", rep.NATType, wantType(typ))
	}
	if typ == lab.NATUDPBlocked {
		if !ref.Blocked() {
			t.Errorf("turnutils_natdiscovery got answers through a udp-blocked NAT")
		}
		if !rep.UDPBlocked || rep.Mapping != natkind.BehaviourUnknown || rep.Filtering != natkind.BehaviourUnknown {
			t.Errorf("udp-blocked report: udp_blocked %v, mapping %s, filtering %s", rep.UDPBlocked, rep.Mapping, rep.Filtering)
		}
		if rep.ExternalIPv4 != n.externalIP() {
			t.Errorf("external_ipv4 (over TCP) %q, want %s", rep.ExternalIPv4, n.externalIP())
		}
		return
	}
	if got, want := string(rep.Mapping), lab.RFC5780(ref.Mapping); got != want {
		t.Errorf("mapping: punchd nat says %s, turnutils_natdiscovery %s", got, want)
	}
	if got, want := string(rep.Filtering), lab.RFC5780(ref.Filtering); got != want {
		t.Errorf("filtering: punchd nat says %s, turnutils_natdiscovery %s", got, want)
	}
	if rep.ExternalIPv4 != n.externalIP() || rep.ExternalIPv4 != ref.ReflexiveIP {
		t.Errorf("external_ipv4 %q, want %s (natdiscovery saw %s)", rep.ExternalIPv4, n.externalIP(), ref.ReflexiveIP)
	}
	if rep.UDPBlocked || !rep.RFC5780 || rep.BehindNAT != (n.router != nil) {
		t.Errorf("udp_blocked %v, rfc5780 %v, behind_nat %v", rep.UDPBlocked, rep.RFC5780, rep.BehindNAT)
	}
	// Masquerade keeps the port unless told to randomise (symmetric).
	if typ != lab.NATSymmetric && !rep.PortPreserved {
		t.Errorf("port_preserved false behind %s", typ)
	}
	// The lab's NATs do not hairpin; without NAT the packet just arrives.
	if rep.Hairpin != (typ == lab.NATNone) {
		t.Errorf("hairpin %v behind %s", rep.Hairpin, typ)
	}
	if rep.Advice == "" {
		t.Error("no advice")
	}
}

// TestNATReportAgainstRendezvous: punchd's own RFC 5780 responder
// (`punchd rendezvous --stun-alt-ip`) as the server, judged twice: coturn's
// natdiscovery against it must see the lab's NAT, and so must punchd nat.
func TestNATReportAgainstRendezvous(t *testing.T) {
	requireNATTools(t)
	for _, typ := range []lab.NATType{lab.NATFullCone, lab.NATRestricted, lab.NATSymmetric} {
		t.Run(string(typ), func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			n, _ := newNATLab(ctx, t, typ, lab.RouterOptions{})
			startRendezvous(ctx, t, n.srv, "--stun-alt-ip", n.srv.Extra[0].String())
			server := net.JoinHostPort(n.srv.Addr.String(), stunPort)

			ref := lab.NATDiscovery(ctx, n.client, n.srv.Addr.String())
			want := map[lab.NATType][2]string{
				lab.NATFullCone:   {"independent", "independent"},
				lab.NATRestricted: {"independent", "address dependent"},
				lab.NATSymmetric:  {"address and port dependent", "address and port dependent"},
			}[typ]
			if ref.Mapping != want[0] || ref.Filtering != want[1] {
				t.Errorf("turnutils_natdiscovery against punchd rendezvous: mapping %q filtering %q, want %q %q\n%s",
					ref.Mapping, ref.Filtering, want[0], want[1], ref.Output)
			}
			rep, stderr, took, exitErr := runNAT(ctx, t, n.client, "--server", server, "--no-port-mapping")
			t.Logf("punchd nat against punchd rendezvous (%s):\n%s", took.Round(time.Millisecond), stderr)
			checkReport(t, typ, n, rep, exitErr, ref)
		})
	}
}

// TestNATReportWithoutRFC5780: a rendezvous without an alternate address
// still answers Binding requests; punchd nat reports the external address
// and says clearly that it cannot test mapping and filtering there.
func TestNATReportWithoutRFC5780(t *testing.T) {
	requireNATTools(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n, _ := newNATLab(ctx, t, lab.NATPortRestricted, lab.RouterOptions{})
	startRendezvous(ctx, t, n.srv, "--stun-alt-ip", "none")
	rendezvousURL := "http://" + net.JoinHostPort(n.srv.Addr.String(), signalPort)
	rep, stderr, _, exitErr := runNAT(ctx, t, n.client, "--rendezvous", rendezvousURL, "--no-port-mapping")
	var ee *exec.ExitError
	if !errors.As(exitErr, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("punchd nat exited %v, want exit status 1", exitErr)
	}
	for _, w := range []string{"does not support RFC 5780", "--stun-alt-ip"} {
		if !strings.Contains(stderr, w) || !strings.Contains(rep.Error, w) {
			t.Errorf("stderr and JSON error should say %q:\nstderr:\n%s\nerror: %s", w, stderr, rep.Error)
		}
	}
	if rep.RFC5780 || rep.ExternalIPv4 != n.externalIP() || rep.NATType != natkind.TypeUnknown || rep.Server != net.JoinHostPort(n.srv.Addr.String(), stunPort) {
		t.Errorf("report %+v", rep)
	}
}

// TestNATReportPortMapping: behind a router running Debian's miniupnpd,
// punchd nat finds UPnP-IGD, NAT-PMP and PCP with the router's external
// address, and leaves no mapping behind. miniupnpd checks its own external
// address against punchd rendezvous' RFC 5780 responder (host "isp").
func TestNATReportPortMapping(t *testing.T) {
	requireNATTools(t)
	if err := lab.MiniUPnPdInstalled(); err != nil {
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n, extra := newNATLab(ctx, t, lab.NATPortRestricted, lab.RouterOptions{UPnP: true}, "isp")
	isp := extra[0]
	startRendezvous(ctx, t, isp, "--stun-alt-ip", isp.Extra[0].String())
	coturn, err := lab.StartCoturn(ctx, n.srv)
	if err != nil {
		t.Fatal(err)
	}
	defer coturn.Stop()
	upnp, err := n.router.StartMiniUPnPd(ctx, netip.AddrPortFrom(isp.Addr, 3478))
	if err != nil {
		t.Fatal(err)
	}
	defer upnp.Stop()

	rep, stderr, took, exitErr := runNAT(ctx, t, n.client, "--server", net.JoinHostPort(n.srv.Addr.String(), stunPort))
	t.Logf("%s\npunchd nat (%s, exit %v):\n%s", n.lab.Describe(), took.Round(time.Millisecond), exitErr, stderr)
	if exitErr != nil || rep.NATType != natkind.TypePortRestricted {
		t.Errorf("exit %v, nat_type %s, want port-restricted", exitErr, rep.NATType)
	}
	pm := rep.PortMapping
	if pm == nil {
		t.Fatalf("no port_mapping in the report")
	}
	wan := n.router.WANAddr.String()
	if pm.Gateway != n.client.Router.LAN.Addr().Next().String() {
		t.Errorf("gateway %s", pm.Gateway)
	}
	for name, p := range map[string]portmap.MapProbe{"UPnP-IGD": pm.UPnP, "NAT-PMP": pm.NATPMP, "PCP": pm.PCP} {
		if !p.Available || p.ExternalIP != wan || p.ExternalPort == 0 || p.Error != "" {
			t.Errorf("%s: %+v, want available with external %s and a test port", name, p, wan)
		}
	}
	// The test mappings are gone: miniupnpd's nat chain is empty again.
	if rules, err := upnp.Forwards(ctx); err != nil || strings.Contains(rules, "dnat") {
		t.Errorf("mappings left behind (%v):\n%s", err, rules)
	}
	if t.Failed() {
		t.Logf("miniupnpd:\n%s", upnp.Log())
	}
}

// What `punchd nat` tells users about paths (natkind.NeedsRelay, behind its
// advice) is what the grid test demands of the daemons (ExpectedPath).
func TestNATAdviceMatchesGrid(t *testing.T) {
	for _, a := range lab.AllNATTypes() {
		for _, b := range lab.AllNATTypes() {
			relay := natkind.NeedsRelay(wantType(a), wantType(b))
			if want := ExpectedPath(a, b, false) == "relay"; relay != want {
				t.Errorf("%s x %s: natkind.NeedsRelay %v, ExpectedPath says relay %v", a, b, relay, want)
			}
		}
	}
}
