// Package lab builds a NAT lab out of network namespaces and nftables on
// one machine: an "internet" (a bridge, 198.18.0.0/16), public hosts on it,
// and NAT routers with hosts behind them (198.19.N.0/24). The NAT types are
// the classic ones, each from a small nftables recipe (nat.go). Only
// addresses inside the lab's own namespaces are ever used.
package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// namePrefix starts every namespace the lab creates, so stale ones left by
// a killed test can be found and removed.
const namePrefix = "pdl"

// markerDir records which process owns which lab.
const markerDir = "/run/punchd-lab"

// Options tune a lab; the zero value is fine.
type Options struct {
	// IPv6 adds routed IPv6 (2001:db8::/32, see ipv6_linux.go) to the
	// internet and every LAN, behind stateful firewalls on the routers.
	IPv6 bool
}

// Lab is one set of namespaces.
type Lab struct {
	id       string // short random id, part of every name
	wan      string // namespace of the "internet" bridge
	mu       sync.Mutex
	nss      []string
	hosts    []*Host   // in creation order, for Describe
	routers  []*Router // in creation order, for Describe
	delays   []*Delay
	nextPub  int
	nextLAN  int
	nextVeth int
	ipv6     bool
	closed   bool
}

// Host is a machine in the lab.
type Host struct {
	Name string
	NS   string     // network namespace name
	Addr netip.Addr // primary address
	// Extra are further addresses (e.g. an RFC 5780 alternate IP).
	Extra  []netip.Addr
	Router *Router // nil for public hosts
	// Addr6 is the host's global IPv6 address in labs with IPv6.
	Addr6 netip.Addr
	moves int // how often MoveHost moved it: names its interface
	// uplink is the far end of eth0's veth, on the internet bridge (or
	// the router's LAN bridge); AddDelay moves it into a delay router.
	uplink string
}

// Router is a NAT router with a LAN behind it.
type Router struct {
	Name    string
	NS      string
	Type    NATType
	WANAddr netip.Addr
	LAN     netip.Prefix
	// WANAddr6 and LAN6 in labs with IPv6 (routed, not translated).
	WANAddr6 netip.Addr
	LAN6     netip.Prefix
	hosts    int
	opts     RouterOptions
}

// RouterOptions add features to a NAT router.
type RouterOptions struct {
	// UPnP prepares the router for miniupnpd (Router.StartMiniUPnPd):
	// what it forwards passes the guard, and so do the answers of the
	// STUN servers at the STUN addresses (give a host of its own, not the
	// one tests talk to: these answers reach the router, not the LAN).
	UPnP bool
	STUN []netip.Addr
}

const (
	wanBridgeAddr = "198.18.0.254"
	wanPrefixLen  = 16
)

// InternetPrefix holds every lab address: the internet (198.18.0.0/16)
// and the LANs behind the NATs (198.19.N.0/24), the benchmarking range
// RFC 2544 sets aside. A TURN relay must be told it may reach it, as it
// is not globally reachable.
var InternetPrefix = netip.MustParsePrefix("198.18.0.0/15")

// RequireRoot skips t unless the lab can run here: as root, with ip and
// nft, and without -short (`make unit` runs no namespace test, even as
// root).
func RequireRoot(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("lab test (network namespaces): skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("lab tests need root (network namespaces, nftables): run `make test` as root")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("lab tests need %s: run `make test` as root (it installs iproute2 and nftables)", tool)
		}
	}
}

// New creates the lab's internet. Stale labs of dead processes are removed
// first.
func New(ctx context.Context, o Options) (*Lab, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the lab needs root (network namespaces, nftables)")
	}
	removeStale(ctx)
	var b [3]byte
	_, _ = rand.Read(b[:])
	l := &Lab{id: hex.EncodeToString(b[:]), nextPub: 1, nextLAN: 1, ipv6: o.IPv6}
	// The marker is written before any namespace exists, so a namespace
	// without a marker can only belong to a lab whose owner is gone.
	if err := writeMarker(l.id); err != nil {
		return nil, err
	}
	l.wan = l.nsName("wan")
	if err := l.addNS(ctx, l.wan); err != nil {
		l.Close()
		return nil, err
	}
	if err := run(ctx, "ip", "-n", l.wan, "link", "add", "br0", "type", "bridge"); err != nil {
		l.Close()
		return nil, err
	}
	if err := runAll(ctx,
		[]string{"ip", "-n", l.wan, "addr", "add", wanBridgeAddr + "/16", "dev", "br0"},
		[]string{"ip", "-n", l.wan, "link", "set", "br0", "up"},
	); err != nil {
		l.Close()
		return nil, err
	}
	if l.ipv6 {
		if err := l.setupWAN6(ctx); err != nil {
			l.Close()
			return nil, err
		}
	}
	return l, nil
}

// errClosed is returned by the Add methods after Close.
var errClosed = errors.New("lab is closed: create a new one with lab.New")

func (l *Lab) nsName(role string) string { return namePrefix + "-" + l.id + "-" + role }

func (l *Lab) addNS(ctx context.Context, name string) error {
	// Holding the lock across "ip netns add" keeps Close from missing a
	// namespace made concurrently with it.
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return errClosed
	}
	if err := run(ctx, "ip", "netns", "add", name); err != nil {
		l.mu.Unlock()
		return fmt.Errorf("create namespace (name used twice in one lab?): %w", err)
	}
	l.nss = append(l.nss, name)
	l.mu.Unlock()
	return runAll(ctx,
		[]string{"ip", "-n", name, "link", "set", "lo", "up"},
		// No IPv6 autoconf or DAD noise on lab links; IPv6 itself stays on
		// so the overlay gets both families.
		[]string{"ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv6.conf.default.accept_ra=0"},
		[]string{"ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0"},
	)
}

// link connects namespace ns (interface ifname) to a bridge in brNS and
// returns the name of the veth's end on the bridge.
func (l *Lab) link(ctx context.Context, ns, ifname, brNS, bridge string) (string, error) {
	l.mu.Lock()
	l.nextVeth++
	peer := fmt.Sprintf("%s%s%d", namePrefix, l.id, l.nextVeth) // <= 15 chars
	tmp := peer + "x"
	l.mu.Unlock()
	return peer, runAll(ctx,
		[]string{"ip", "link", "add", tmp, "type", "veth", "peer", "name", peer},
		[]string{"ip", "link", "set", tmp, "netns", ns, "name", ifname},
		[]string{"ip", "link", "set", peer, "netns", brNS},
		[]string{"ip", "-n", brNS, "link", "set", peer, "master", bridge, "up"},
		[]string{"ip", "-n", ns, "link", "set", ifname, "up"},
	)
}

func (l *Lab) nextPublic() netip.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	a := netip.AddrFrom4([4]byte{198, 18, byte(l.nextPub / 250), byte(l.nextPub%250 + 1)})
	l.nextPub++
	return a
}

// AddPublicHost adds a host on the internet with extra more addresses.
func (l *Lab) AddPublicHost(name string, extra int) (*Host, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h := &Host{Name: name, NS: l.nsName(name)}
	if err := l.addNS(ctx, h.NS); err != nil {
		return nil, err
	}
	var err error
	if h.uplink, err = l.link(ctx, h.NS, "eth0", l.wan, "br0"); err != nil {
		return nil, err
	}
	h.Addr = l.nextPublic()
	cmds := [][]string{{"ip", "-n", h.NS, "addr", "add", h.Addr.String() + "/16", "dev", "eth0"}}
	for i := 0; i < extra; i++ {
		a := l.nextPublic()
		h.Extra = append(h.Extra, a)
		cmds = append(cmds, []string{"ip", "-n", h.NS, "addr", "add", a.String() + "/16", "dev", "eth0"})
	}
	cmds = append(cmds, []string{"ip", "-n", h.NS, "route", "add", "default", "via", wanBridgeAddr})
	if err := runAll(ctx, cmds...); err != nil {
		return nil, err
	}
	if l.ipv6 {
		if err := l.setupPublic6(ctx, h); err != nil {
			return nil, err
		}
	}
	l.mu.Lock()
	l.hosts = append(l.hosts, h)
	l.mu.Unlock()
	return h, nil
}

// AddNAT adds a router of type t between the internet and a new LAN.
func (l *Lab) AddNAT(name string, t NATType) (*Router, error) {
	return l.AddNATWith(name, t, RouterOptions{})
}

// AddNATWith adds a router of type t with options.
func (l *Lab) AddNATWith(name string, t NATType, o RouterOptions) (*Router, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	if t == NATNone {
		return nil, errors.New("NAT type none has no router: use AddHost(name, nil)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l.mu.Lock()
	n := l.nextLAN
	l.nextLAN++
	l.mu.Unlock()
	r := &Router{Name: name, NS: l.nsName(name), Type: t, LAN: netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte(n), 0}), 24), opts: o}
	if err := l.addNS(ctx, r.NS); err != nil {
		return nil, err
	}
	if _, err := l.link(ctx, r.NS, "eth0", l.wan, "br0"); err != nil {
		return nil, err
	}
	r.WANAddr = l.nextPublic()
	if err := runAll(ctx,
		[]string{"ip", "-n", r.NS, "addr", "add", r.WANAddr.String() + "/16", "dev", "eth0"},
		[]string{"ip", "-n", r.NS, "route", "add", "default", "via", wanBridgeAddr},
		[]string{"ip", "-n", r.NS, "link", "add", "lan0", "type", "bridge"},
		[]string{"ip", "-n", r.NS, "addr", "add", r.gateway().String() + "/24", "dev", "lan0"},
		[]string{"ip", "-n", r.NS, "link", "set", "lan0", "up"},
		[]string{"ip", "netns", "exec", r.NS, "sysctl", "-qw", "net.ipv4.ip_forward=1"},
	); err != nil {
		return nil, err
	}
	// With br_netfilter loaded (Docker hosts), frames between two hosts
	// on the LAN bridge would pass the router's IP forward chain and be
	// dropped as if routed. A LAN switch does not filter: turn it off
	// here (the sysctl is per namespace; absent without the module).
	_ = run(ctx, "ip", "netns", "exec", r.NS, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=0")
	if l.ipv6 {
		_ = run(ctx, "ip", "netns", "exec", r.NS, "sysctl", "-qw", "net.bridge.bridge-nf-call-ip6tables=0")
		if err := l.setupRouter6(ctx, r, n); err != nil {
			return nil, err
		}
	}
	l.mu.Lock()
	l.routers = append(l.routers, r)
	l.mu.Unlock()
	return r, nil
}

func (r *Router) gateway() netip.Addr { return r.LAN.Addr().Next() }

// AddHost adds a host behind r, or on the internet (NAT none) when r is nil.
// The first host behind a router gets the router's NAT rules (full-cone and
// restricted forward inbound traffic to that host).
func (l *Lab) AddHost(name string, r *Router) (*Host, error) {
	if r == nil {
		return l.AddPublicHost(name, 0)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h := &Host{Name: name, NS: l.nsName(name)}
	if err := l.addNS(ctx, h.NS); err != nil {
		return nil, err
	}
	if err := l.attach(ctx, h, r); err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.hosts = append(l.hosts, h)
	l.mu.Unlock()
	return h, nil
}

// attach plugs h into r's LAN on a new interface with the next free
// address and makes r its default gateway; the router's NAT rules are
// applied with its first host.
func (l *Lab) attach(ctx context.Context, h *Host, r *Router) error {
	l.mu.Lock()
	ifname := fmt.Sprintf("eth%d", h.moves)
	r.hosts++
	first := r.hosts == 1
	k := r.hosts
	a := r.gateway()
	for i := 0; i < r.hosts; i++ {
		a = a.Next()
	}
	l.mu.Unlock()
	uplink, err := l.link(ctx, h.NS, ifname, r.NS, "lan0")
	if err != nil {
		return err
	}
	if err := runAll(ctx,
		[]string{"ip", "-n", h.NS, "addr", "add", a.String() + "/24", "dev", ifname},
		[]string{"ip", "-n", h.NS, "route", "replace", "default", "via", r.gateway().String(), "dev", ifname},
	); err != nil {
		return err
	}
	if first {
		if err := applyNAT(ctx, r, a); err != nil {
			return err
		}
	}
	if l.ipv6 {
		if err := l.attach6(ctx, h, r, ifname, k); err != nil {
			return err
		}
	}
	l.mu.Lock()
	h.Addr, h.Router, h.uplink = a, r, uplink
	l.mu.Unlock()
	return nil
}

// Command runs name inside the host's namespace.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.NS, name}, args...)...)
}

// Do runs fn on a locked OS thread switched into the host's namespace and
// waits for it. Sockets created by fn stay in that namespace after Do
// returns, so a test can listen in one host and dial from another,
// in-process. Goroutines that fn starts run on other threads, in the
// original namespace. Rather than switching the thread back, Do lets it
// exit with its goroutine: a thread whose restore failed could otherwise
// be reused by unrelated goroutines inside the lab.
func (h *Host) Do(fn func() error) error { return doInNS(h.NS, fn) }

// Do runs fn inside the router's namespace.
func (r *Router) Do(fn func() error) error { return doInNS(r.NS, fn) }

func doInNS(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// This thread's namespace is changed and never restored for
		// other goroutines: it dies with the goroutine (no Unlock).
		runtime.LockOSThread()
		target, err := netns.GetFromName(name)
		if err != nil {
			errc <- fmt.Errorf("open namespace %s: %w", name, err)
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			errc <- fmt.Errorf("enter namespace %s: %w", name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// Close deletes every namespace of the lab (and with them their veths and
// processes' network); idempotent.
func (l *Lab) Close() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	nss := l.nss
	delays := l.delays
	l.mu.Unlock()
	var errs []error
	for _, d := range delays {
		if err := d.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	for i := len(nss) - 1; i >= 0; i-- {
		if err := deleteNS(nss[i]); err != nil {
			errs = append(errs, err)
		}
	}
	if l.id != "" {
		_ = os.Remove(markerPath(l.id))
	}
	return errors.Join(errs...)
}

func deleteNS(name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Processes still inside would keep the namespace alive.
	if out, err := exec.CommandContext(ctx, "ip", "netns", "pids", name).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			// Never ourselves: our own threads enter namespaces in Do.
			if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
				if p, err := os.FindProcess(pid); err == nil {
					_ = p.Kill()
				}
			}
		}
	}
	return run(ctx, "ip", "netns", "delete", name)
}

func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func runAll(ctx context.Context, cmds ...[]string) error {
	for _, c := range cmds {
		if err := run(ctx, c[0], c[1:]...); err != nil {
			return err
		}
	}
	return nil
}
