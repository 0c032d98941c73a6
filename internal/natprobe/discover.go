package natprobe

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pion/stun/v4"
	"github.com/punchd/punchd/internal/birthday"
	"github.com/punchd/punchd/internal/natkind"
	"github.com/punchd/punchd/internal/portmap"
	"github.com/punchd/punchd/internal/route"
	"github.com/punchd/punchd/internal/udpretry"
)

// DefaultSTUNPort is where `punchd rendezvous` and coturn answer STUN.
const DefaultSTUNPort = 3478

// DefaultProbeTimeout bounds one STUN request with its retransmits.
const DefaultProbeTimeout = 1200 * time.Millisecond

// ErrNoRFC5780 means the server answers Binding requests but has no
// alternate address, so mapping and filtering cannot be tested.
var ErrNoRFC5780 = errors.New("server does not support RFC 5780")

// DiscoverConfig says which server to test against.
type DiscoverConfig struct {
	// Server is host[:port] of an RFC 5780 STUN server (port 3478 when
	// left out): `punchd rendezvous` with an alternate address, or coturn
	// with two listening IPs and --alt-listening-port.
	Server string
	// Timeout bounds each request with its retransmits (default
	// DefaultProbeTimeout). Tests that may not be answered (filtering)
	// run in parallel, so a run takes about two timeouts at most.
	Timeout time.Duration
	// Progress, when set, gets one line per finished test; it is called
	// from several goroutines.
	Progress func(line string)
}

// Report is what `punchd nat` found. Empty strings and false mean "not
// known" where the matching test could not run (see Error and Notes).
type Report struct {
	Server        string            `json:"server"`
	RFC5780       bool              `json:"rfc5780"`
	OtherAddress  string            `json:"other_address,omitempty"`
	LocalAddress  string            `json:"local_address,omitempty"`
	ExternalIPv4  string            `json:"external_ipv4"`
	ExternalPort  int               `json:"external_port,omitempty"`
	ExternalIPv6  string            `json:"external_ipv6,omitempty"`
	BehindNAT     bool              `json:"behind_nat"`
	UDPBlocked    bool              `json:"udp_blocked"`
	Mapping       natkind.Behaviour `json:"mapping"`
	Filtering     natkind.Behaviour `json:"filtering"`
	NATType       natkind.NATType   `json:"nat_type"`
	ClassicName   string            `json:"classic_name"`
	PortPreserved bool              `json:"port_preserved"`
	Hairpin       bool              `json:"hairpin"`
	Advice        string            `json:"advice"`
	RTTMillis     float64           `json:"rtt_ms,omitempty"`
	// PortAllocation, for a NAT that maps per destination, is how it
	// picks the public ports of new mappings, seen from allocationProbes
	// fresh sockets one after the other: "sequential", "sequential with
	// gaps" (other traffic took ports in between) or "random"; with
	// PortStride the step. A sequential NAT's next ports can be
	// predicted, which is what punchd does against it.
	PortAllocation  string   `json:"port_allocation,omitempty"`
	PortStride      int      `json:"port_stride,omitempty"`
	AllocationPorts []uint16 `json:"allocation_ports,omitempty"`
	// PortMapping is filled by Check.
	PortMapping    *portmap.Report `json:"port_mapping,omitempty"`
	Notes          []string        `json:"notes,omitempty"`
	Error          string          `json:"error,omitempty"`
	DurationMillis float64         `json:"duration_ms"`
}

// probeResult is one request's outcome.
type probeResult struct {
	reply stunReply
	err   error
}

func (p probeResult) ok() bool { return p.err == nil && p.reply.code == 0 }

// Discover runs the RFC 5780 tests against cfg.Server: the binding test,
// the mapping tests (to the alternate IP, then to the alternate IP and
// port) and the filtering tests (answers from the other IP and port, and
// from the other port), each from its own socket so they can run in
// parallel, plus hairpinning and port preservation. It always returns a
// report with what it learnt; the error says what kept it from answering
// the question (the report's Error holds the same text).
func Discover(ctx context.Context, cfg DiscoverConfig) (*Report, error) {
	start := time.Now()
	rep := &Report{Mapping: natkind.BehaviourUnknown, Filtering: natkind.BehaviourUnknown, NATType: natkind.TypeUnknown, ClassicName: "unknown"}
	err := discover(ctx, cfg, rep)
	if err != nil {
		rep.Error = err.Error()
	}
	rep.Advice = natkind.Advice(rep.NATType)
	rep.DurationMillis = millis(time.Since(start))
	return rep, err
}

func discover(ctx context.Context, cfg DiscoverConfig, rep *Report) error {
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultProbeTimeout
	}
	if min := udpretry.SendAt(udpretry.Sends-1) + 100*time.Millisecond; timeout < min {
		timeout = min
	}
	progress := func(format string, args ...any) {
		if cfg.Progress != nil {
			cfg.Progress(fmt.Sprintf(format, args...))
		}
	}
	server4, server6, err := resolveServer(ctx, cfg.Server)
	if err != nil {
		return err
	}
	primary, network := server4, "udp4"
	if !primary.IsValid() {
		primary, network = server6, "udp6"
	}
	rep.Server = primary.String()
	progress("testing against %s (RFC 5780 mapping and filtering, hairpinning; %s per test)", primary, timeout)

	var socks []*prober
	defer func() {
		for _, p := range socks {
			p.Close()
		}
	}()
	open := func(network string) (*prober, error) {
		p, err := newProber(network)
		if err == nil {
			socks = append(socks, p)
		}
		return p, err
	}
	mapSock, err := open(network)
	if err != nil {
		return err
	}
	filterSock, err := open(network)
	if err != nil {
		return err
	}
	hairSock, err := open(network)
	if err != nil {
		return err
	}
	localIP := route.Source(primary)
	local := netip.AddrPortFrom(localIP, mapSock.localPort())
	rep.LocalAddress = local.String()

	var wg sync.WaitGroup
	// Filtering (RFC 5780 section 4.4): from a socket of its own, all three
	// requests go to the primary address at once; which answers get back
	// in tells the filtering.
	var fI, fII, fIII probeResult
	wg.Go(func() {
		var inner sync.WaitGroup
		inner.Go(func() { fI.reply, fI.err = filterSock.transact(ctx, primary, timeout) })
		inner.Go(func() {
			fII.reply, fII.err = filterSock.transact(ctx, primary, timeout, natkind.ChangeRequest{IP: true, Port: true})
		})
		inner.Go(func() {
			fIII.reply, fIII.err = filterSock.transact(ctx, primary, timeout, natkind.ChangeRequest{Port: true})
		})
		inner.Wait()
	})
	if network == "udp4" && server6.IsValid() {
		wg.Go(func() { discoverIPv6(ctx, server6, timeout, rep, progress) })
	}

	// Mapping (section 4.3): test I to the primary address, then tests II
	// and III to the alternate addresses the answer names.
	var mI, mII, mIII probeResult
	var hairpin bool
	mI.reply, mI.err = mapSock.transact(ctx, primary, timeout)
	if mI.ok() {
		r := mI.reply
		rep.RTTMillis = millis(r.rtt)
		rep.BehindNAT = r.mapped != local
		rep.PortPreserved = r.mapped.Port() == local.Port()
		if r.mapped.Addr().Is4() {
			rep.ExternalIPv4 = r.mapped.Addr().String()
		} else {
			rep.ExternalIPv6 = r.mapped.Addr().String()
		}
		rep.ExternalPort = int(r.mapped.Port())
		rep.RFC5780 = validOther(primary, r.other)
		desc := "no RFC 5780 (no OTHER-ADDRESS)"
		if rep.RFC5780 {
			rep.OtherAddress = r.other.String()
			desc = "RFC 5780, other address " + r.other.String()
		}
		progress("binding: %s sees %s (local %s) after %.1f ms; %s", primary, r.mapped, local, rep.RTTMillis, desc)
		var inner sync.WaitGroup
		if rep.RFC5780 {
			altIP := netip.AddrPortFrom(r.other.Addr(), primary.Port())
			inner.Go(func() { mII.reply, mII.err = mapSock.transact(ctx, altIP, timeout) })
			inner.Go(func() { mIII.reply, mIII.err = mapSock.transact(ctx, r.other, timeout) })
		}
		inner.Go(func() { hairpin = hairpins(ctx, hairSock, mapSock, r.mapped, timeout) })
		inner.Wait()
	}
	wg.Wait()

	if !mI.ok() {
		return udpFailed(ctx, rep, primary, mI, timeout, progress)
	}
	rep.Hairpin = hairpin
	progress("hairpinning: %s", yesNo(hairpin, "a packet to %s from a second socket came back", "a packet to %s from a second socket did not come back", mI.reply.mapped))
	if !rep.RFC5780 {
		rep.Notes = append(rep.Notes, "the server answered without OTHER-ADDRESS: mapping and filtering need an RFC 5780 server")
		return fmt.Errorf("%w: %s answers STUN but names no alternate address, so mapping and filtering cannot be told apart; test against `punchd rendezvous --stun-alt-ip IP` on a host with two addresses, or coturn with two --listening-ip and --alt-listening-port", ErrNoRFC5780, primary)
	}
	var errs []error
	rep.Mapping, err = mappingBehaviour(mI, mII, mIII, rep.OtherAddress, primary)
	if err != nil {
		errs = append(errs, err)
	}
	progress("mapping: %s (seen as %s by %s, %s by %s, %s by %s)", rep.Mapping,
		mI.reply.mapped, primary, seen(mII), netip.AddrPortFrom(mI.reply.other.Addr(), primary.Port()), seen(mIII), mI.reply.other)
	rep.Filtering, err = filteringBehaviour(fI, fII, fIII, primary, mI.reply.other)
	if err != nil {
		errs = append(errs, err)
	}
	progress("filtering: %s (answer from the other IP and port: %s; from the other port: %s)", rep.Filtering, answered(fII), answered(fIII))
	rep.NATType, rep.ClassicName = natkind.Classify(rep.BehindNAT, rep.Mapping, rep.Filtering)
	if rep.Mapping == natkind.AddressDependent || rep.Mapping == natkind.AddressAndPortDependent {
		allocation(ctx, network, primary, timeout, rep, progress)
	}
	return errors.Join(errs...)
}

// allocationProbes is how many fresh sockets show the allocation pattern.
const allocationProbes = 4

// allocation learns how a NAT that maps per destination allocates public
// ports: one binding request from each of allocationProbes fresh sockets,
// strictly one after the other, so each makes the next new mapping.
func allocation(ctx context.Context, network string, server netip.AddrPort, timeout time.Duration, rep *Report, progress func(string, ...any)) {
	var ports []uint16
	for range allocationProbes {
		p, err := newProber(network)
		if err != nil {
			progress("port allocation: %v", err)
			return
		}
		r, err := p.transact(ctx, server, timeout)
		p.Close()
		if err != nil || r.code != 0 {
			progress("port allocation: no answer from %s (%v)", server, err)
			return
		}
		ports = append(ports, r.mapped.Port())
	}
	pat := birthday.LearnPattern(ports)
	rep.PortAllocation, rep.AllocationPorts = pat.String(), ports
	if pat.Sequential {
		rep.PortStride = pat.Stride
	}
	progress("port allocation: %s (new mappings got ports %v)", rep.PortAllocation, ports)
}

// Sequential reports whether the NAT's new mappings follow a sequence.
func (r *Report) Sequential() bool { return strings.HasPrefix(r.PortAllocation, "sequential") }

// udpFailed finishes a report whose binding test got no UDP answer: if
// the server answers over TCP, UDP is blocked; otherwise nothing is known.
func udpFailed(ctx context.Context, rep *Report, server netip.AddrPort, mI probeResult, timeout time.Duration, progress func(string, ...any)) error {
	if mI.err == nil {
		return fmt.Errorf("%s answered the binding request with STUN error %d: is it a STUN server?", server, mI.reply.code)
	}
	if !errors.Is(mI.err, udpretry.ErrNoAnswer) {
		return fmt.Errorf("binding request to %s: %w", server, mI.err)
	}
	rep.UDPBlocked = true
	progress("binding: no UDP answer from %s in %s (%d tries); trying STUN over TCP", server, timeout, udpretry.Sends)
	mapped, rtt, err := tcpBinding(ctx, server, timeout)
	if err != nil {
		progress("TCP: no answer either (%v)", err)
		rep.Notes = append(rep.Notes, "no answer over UDP or TCP: the server may be down, or this network blocks it")
		return fmt.Errorf("no answer from %s over UDP (%d tries in %s) or TCP (%w): check --server and that the server runs; if it does, this network blocks it", server, udpretry.Sends, timeout, err)
	}
	progress("TCP: %s sees %s after %.1f ms: UDP is blocked", server, mapped, millis(rtt))
	rep.RTTMillis = millis(rtt)
	if mapped.Addr().Is4() {
		rep.ExternalIPv4 = mapped.Addr().String()
	}
	rep.BehindNAT = mapped.Addr() != route.Source(server)
	rep.Notes = append(rep.Notes, "UDP got no answer but STUN over TCP did: the external address is the TCP one")
	rep.NATType, rep.ClassicName = natkind.TypeUDPBlocked, "UDP blocked"
	return nil
}

// mappingBehaviour reads the mapping tests (RFC 5780 section 4.3).
func mappingBehaviour(mI, mII, mIII probeResult, other string, primary netip.AddrPort) (natkind.Behaviour, error) {
	if !mII.ok() {
		return natkind.BehaviourUnknown, fmt.Errorf("mapping test: the server's alternate IP (%s, port %d) did not answer: is its OTHER-ADDRESS %s reachable from here?", strings.Split(other, ":")[0], primary.Port(), other)
	}
	if mII.reply.mapped == mI.reply.mapped {
		return natkind.EndpointIndependent, nil
	}
	if !mIII.ok() {
		return natkind.BehaviourUnknown, fmt.Errorf("mapping test: the server's alternate address %s did not answer", other)
	}
	if mIII.reply.mapped == mII.reply.mapped {
		return natkind.AddressDependent, nil
	}
	return natkind.AddressAndPortDependent, nil
}

// filteringBehaviour reads the filtering tests (RFC 5780 section 4.4),
// checking that the answers to CHANGE-REQUEST came from where they should.
func filteringBehaviour(fI, fII, fIII probeResult, primary, other netip.AddrPort) (natkind.Behaviour, error) {
	if !fI.ok() {
		return natkind.BehaviourUnknown, errors.New("filtering test: the plain binding request got no answer (packet loss?): run again")
	}
	if fII.ok() {
		if fII.reply.from != other {
			return natkind.BehaviourUnknown, fmt.Errorf("filtering test: the answer to change IP and port came from %s, not %s: the server does not honour CHANGE-REQUEST", fII.reply.from, other)
		}
		return natkind.EndpointIndependent, nil
	}
	if fIII.ok() {
		if want := netip.AddrPortFrom(primary.Addr(), other.Port()); fIII.reply.from != want {
			return natkind.BehaviourUnknown, fmt.Errorf("filtering test: the answer to change port came from %s, not %s: the server does not honour CHANGE-REQUEST", fIII.reply.from, want)
		}
		return natkind.AddressDependent, nil
	}
	return natkind.AddressAndPortDependent, nil
}

// hairpins sends Binding requests from from to target (to's mapped
// address) and reports whether to receives one (RFC 5780 section 4.5).
func hairpins(ctx context.Context, from, to *prober, target netip.AddrPort, timeout time.Duration) bool {
	var id [stun.TransactionIDSize]byte
	_, _ = rand.Read(id[:])
	got := to.expectRequest(id)
	start := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for i := 0; ; i++ {
		select {
		case <-got:
			return true
		case <-ctx.Done():
			return false
		case <-timer.C:
			if i >= udpretry.Sends {
				return false
			}
			_ = from.sendRequest(target, id)
			wake, _ := udpretry.WakeAfter(start, i, timeout)
			timer.Reset(time.Until(wake))
		}
	}
}

// discoverIPv6 runs the binding test over IPv6, for the external IPv6
// address (NAT66 is rare; the RFC 5780 tests run over IPv4).
func discoverIPv6(ctx context.Context, server netip.AddrPort, timeout time.Duration, rep *Report, progress func(string, ...any)) {
	p, err := newProber("udp6")
	if err == nil {
		defer p.Close()
		r, err := p.transact(ctx, server, timeout)
		if err == nil && r.code == 0 && r.mapped.Addr().Is6() {
			rep.ExternalIPv6 = r.mapped.Addr().String()
			progress("IPv6: %s sees %s", server, r.mapped)
			return
		}
	}
	progress("IPv6: no answer from %s", server)
}

// validOther checks an OTHER-ADDRESS: RFC 5780 needs both its IP and its
// port to differ from the primary ones.
func validOther(primary, other netip.AddrPort) bool {
	return other.IsValid() && other.Addr() != primary.Addr() && other.Port() != primary.Port() &&
		other.Addr().Is4() == primary.Addr().Is4()
}

// resolveServer splits host[:port] (default port 3478) and resolves it to
// one IPv4 and one IPv6 address (either may be missing).
func resolveServer(ctx context.Context, server string) (v4, v6 netip.AddrPort, _ error) {
	if server == "" {
		return v4, v6, errors.New("no STUN server: give --server HOST[:PORT] or --rendezvous URL")
	}
	host, portStr, err := net.SplitHostPort(server)
	if err != nil {
		host, portStr = strings.Trim(server, "[]"), strconv.Itoa(DefaultSTUNPort)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return v4, v6, fmt.Errorf("bad server %q: port must be 1..65535", server)
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if ips, err = net.DefaultResolver.LookupNetIP(rctx, "ip", host); err != nil {
			return v4, v6, fmt.Errorf("resolve STUN server %q: %w", host, err)
		}
	}
	for _, ip := range ips {
		ip = ip.Unmap()
		switch {
		case ip.Is4() && !v4.IsValid():
			v4 = netip.AddrPortFrom(ip, uint16(port))
		case ip.Is6() && !v6.IsValid():
			v6 = netip.AddrPortFrom(ip, uint16(port))
		}
	}
	if !v4.IsValid() && !v6.IsValid() {
		return v4, v6, fmt.Errorf("STUN server %q has no address", host)
	}
	return v4, v6, nil
}

func seen(p probeResult) string {
	if !p.ok() {
		return "no answer"
	}
	return p.reply.mapped.String()
}

func answered(p probeResult) string {
	if p.ok() {
		return "yes"
	}
	return "no"
}

func yesNo(b bool, yes, no string, args ...any) string {
	if b {
		return "yes, " + fmt.Sprintf(yes, args...)
	}
	return "no, " + fmt.Sprintf(no, args...)
}

func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// Local is what the report says about this host's own NAT, for
// natkind.RelayReason; nil for a nil report (no probe finished yet).
func (r *Report) Local() *natkind.Local {
	if r == nil {
		return nil
	}
	return &natkind.Local{Type: r.NATType, Mapping: r.Mapping, UDPBlocked: r.UDPBlocked, Error: r.Error}
}
