package tunnel

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/vishvananda/netns"

	"github.com/punchd/punchd/internal/identity"
)

const rootSkip = "needs root for network namespaces/TUN: run `make test` as root"

// requireRoot skips unless the test can make namespaces, veths and TUNs,
// and with -short.
func requireRoot(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("network namespace test: skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip(rootSkip)
	}
	for _, tool := range []string{"ip", "ping"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s: %s not found (apt-get install iproute2 iputils-ping)", rootSkip, tool)
		}
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("%s: /dev/net/tun missing (modprobe tun)", rootSkip)
	}
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// inNS runs fn on a locked OS thread inside namespace ns: sockets, TUNs and
// netlink requests made there stay there. If the thread cannot be moved
// back, it stays locked and dies with its goroutine instead of serving
// other goroutines from the wrong namespace.
func inNS(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("current namespace: %w", err)
			return
		}
		defer orig.Close()
		h, err := netns.GetFromName(ns)
		if err != nil {
			errc <- fmt.Errorf("namespace %s: %w", ns, err)
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			errc <- fmt.Errorf("enter namespace %s: %w", ns, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("leave namespace %s: %w", ns, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// testNode is one end: a namespace with a veth address and a Device.
type testNode struct {
	ns       string
	underlay netip.Addr
	overlay  netip.Addr
	key      identity.PrivateKey
	bind     *Bind
	dev      *Device
}

func (n *testNode) pub() identity.PublicKey { return n.key.PublicKey() }

func (n *testNode) direct() netip.AddrPort {
	return netip.AddrPortFrom(n.underlay, n.dev.ListenPort())
}

func (n *testNode) ping(t *testing.T, dst netip.Addr) {
	t.Helper()
	run(t, "ip", "netns", "exec", n.ns, "ping", "-n", "-c", "1", "-w", "5", dst.String())
}

// twoNamespaces makes ns <p>a and <p>b joined by a veth pair,
// 198.18.200.1/24 and .2/24, removed in t.Cleanup.
func twoNamespaces(t *testing.T) (a, b *testNode) {
	t.Helper()
	var rnd [3]byte
	_, _ = rand.Read(rnd[:])
	p := "pdt" + hex.EncodeToString(rnd[:]) // short: veth names are <= 15 chars
	a = &testNode{ns: p + "a", underlay: netip.MustParseAddr("198.18.200.1"), overlay: netip.MustParseAddr("10.199.0.1")}
	b = &testNode{ns: p + "b", underlay: netip.MustParseAddr("198.18.200.2"), overlay: netip.MustParseAddr("10.199.0.2")}
	for _, n := range []*testNode{a, b} {
		run(t, "ip", "netns", "add", n.ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", n.ns).Run() })
	}
	run(t, "ip", "-n", a.ns, "link", "add", p+"a", "type", "veth", "peer", "name", p+"b", "netns", b.ns)
	for _, n := range []*testNode{a, b} {
		dev := n.ns // the veth end is named like its namespace
		run(t, "ip", "-n", n.ns, "addr", "add", n.underlay.String()+"/24", "dev", dev)
		run(t, "ip", "-n", n.ns, "link", "set", dev, "up")
		run(t, "ip", "-n", n.ns, "link", "set", "lo", "up")
	}
	return a, b
}

// startDevice creates n's Bind and Device inside its namespace.
func startDevice(t *testing.T, n *testNode) {
	t.Helper()
	k, err := identity.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	n.key = k
	log := testLogger(t, n.ns)
	err = inNS(n.ns, func() error {
		n.bind = NewBind(log, BindOptions{})
		d, err := NewDevice(DeviceConfig{
			Interface:  "punch0",
			PrivateKey: k,
			Addresses:  []netip.Prefix{netip.PrefixFrom(n.overlay, 24)},
			Logger:     log,
		}, n.bind)
		n.dev = d
		return err
	})
	if err != nil {
		t.Fatalf("device in %s: %v", n.ns, err)
	}
	t.Cleanup(func() { _ = n.dev.Close() })
	if n.dev.ListenPort() == 0 {
		t.Fatal("device has no listen port")
	}
	// The host candidate ICE would announce: the veth address, the only
	// non-loopback one (no default route in the namespace).
	if la := n.bind.STUNConn().LocalAddr().(*net.UDPAddr); la.AddrPort() != n.direct() {
		t.Errorf("STUNConn LocalAddr %v, want %v", la, n.direct())
	}
}

// testLogger keeps a node's logs and shows them only when the test fails.
// (wireguard-go's TUN watcher runs on threads outside the namespace, so it
// warns that it cannot read the TUN's MTU there; harmless in a test.)
func testLogger(t *testing.T, name string) *slog.Logger {
	var mu sync.Mutex
	var buf bytes.Buffer
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		if t.Failed() {
			t.Logf("log of %s:\n%s", name, buf.String())
		}
	})
	return slog.New(slog.NewTextHandler(lockedWriter{&mu, &buf}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// connect makes a and b peers of each other (no path yet).
func connect(t *testing.T, a, b *testNode) {
	t.Helper()
	for _, pair := range [][2]*testNode{{a, b}, {b, a}} {
		self, other := pair[0], pair[1]
		// As the daemon does: one side holds back its initiation.
		self.bind.SetPassive(other.pub(), !identity.ControlsICE(self.pub(), other.pub()))
		if err := self.dev.AddPeer(other.pub(), []netip.Prefix{netip.PrefixFrom(other.overlay, 32)}); err != nil {
			t.Fatal(err)
		}
	}
}

// relayFunc is an in-process "relay": what one Bind writes comes out of
// the other Bind's DeliverRelay.
type relayFunc func([]byte)

func (f relayFunc) Write(p []byte) (int, error) { f(p); return len(p), nil }

func TestDevicesAcrossNamespaces(t *testing.T) {
	requireRoot(t)
	a, b := twoNamespaces(t)
	startDevice(t, a)
	startDevice(t, b)
	connect(t, a, b)

	// The keepalive AddPeer triggers is held: no path yet. Paths now.
	a.bind.SetPath(b.pub(), Path{Direct: b.direct()})
	b.bind.SetPath(a.pub(), Path{Direct: a.direct()})
	a.ping(t, b.overlay)
	b.ping(t, a.overlay)

	st, err := a.dev.Stats()
	if err != nil {
		t.Fatal(err)
	}
	s := st[b.pub()]
	if s.RxBytes == 0 || s.TxBytes == 0 || s.LastHandshake.IsZero() {
		t.Fatalf("stats of a for b after ping: %+v", s)
	}
	t.Logf("a -> b stats: %+v", s)

	// STUN to the tunnel's port goes to ICE's side while the tunnel runs,
	// and ICE's answer leaves from the same port.
	t.Run("stun shares the port", func(t *testing.T) {
		var sender *net.UDPConn
		if err := inNS(b.ns, func() (err error) {
			sender, err = net.ListenUDP("udp4", &net.UDPAddr{IP: b.underlay.AsSlice()})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer sender.Close()
		req := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
		if _, err := sender.WriteToUDPAddrPort(req.Raw, a.direct()); err != nil {
			t.Fatal(err)
		}
		got, from := readSTUN(t, a.bind)
		if !bytes.Equal(got, req.Raw) || from.String() != sender.LocalAddr().String() {
			t.Fatalf("STUNConn read %d bytes from %v, want the request from %v", len(got), from, sender.LocalAddr())
		}
		resp := stun.MustBuild(stun.NewTransactionIDSetter(req.TransactionID), stun.BindingSuccess,
			&stun.XORMappedAddress{IP: from.(*net.UDPAddr).IP, Port: from.(*net.UDPAddr).Port}, stun.Fingerprint)
		if _, err := a.bind.STUNConn().WriteTo(resp.Raw, from); err != nil {
			t.Fatal(err)
		}
		_ = sender.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 1500)
		n, src, err := sender.ReadFromUDPAddrPort(buf)
		if err != nil || !bytes.Equal(buf[:n], resp.Raw) || src != a.direct() {
			t.Fatalf("response: %d bytes from %v (%v), want it from the tunnel port %v", n, src, err, a.direct())
		}
		a.ping(t, b.overlay) // the tunnel did not notice
	})

	// Over a relay (here: straight into the other Bind), then direct again.
	t.Run("relay and back", func(t *testing.T) {
		before, _ := b.dev.Stats()
		a.bind.SetPath(b.pub(), Path{Relay: relayFunc(func(p []byte) { b.bind.DeliverRelay(a.pub(), p) })})
		b.bind.SetPath(a.pub(), Path{Relay: relayFunc(func(p []byte) { a.bind.DeliverRelay(b.pub(), p) })})
		a.ping(t, b.overlay)
		after, _ := b.dev.Stats()
		if after[a.pub()].RxBytes <= before[a.pub()].RxBytes {
			t.Fatalf("b received nothing over the relay: %+v -> %+v", before[a.pub()], after[a.pub()])
		}
		a.bind.SetPath(b.pub(), Path{Direct: b.direct()})
		b.bind.SetPath(a.pub(), Path{Direct: a.direct()})
		a.ping(t, b.overlay)
	})

	t.Run("close", func(t *testing.T) {
		if err := a.dev.Close(); err != nil {
			t.Fatal(err)
		}
		if err := a.dev.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if _, _, err := a.bind.STUNConn().ReadFrom(make([]byte, 10)); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("STUNConn after Device.Close: %v, want net.ErrClosed", err)
		}
		// The TUN is gone with the device.
		out, _ := exec.Command("ip", "-n", a.ns, "link", "show", "punch0").CombinedOutput()
		if !strings.Contains(string(out), "does not exist") {
			t.Fatalf("punch0 still in %s after Close: %s", a.ns, out)
		}
	})
}

func TestNewDeviceNameInUse(t *testing.T) {
	requireRoot(t)
	a, _ := twoNamespaces(t)
	err := inNS(a.ns, func() error {
		k, _ := identity.GeneratePrivateKey()
		// The veth is named like the namespace: that name is taken.
		_, err := NewDevice(DeviceConfig{Interface: a.ns, PrivateKey: k}, NewBind(nil, BindOptions{}))
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "already exists; is another punchd running? use --interface") {
		t.Fatalf("NewDevice on a taken name: %v", err)
	}
}

func readSTUN(t *testing.T, b *Bind) ([]byte, net.Addr) {
	t.Helper()
	type res struct {
		pkt  []byte
		from net.Addr
		err  error
	}
	c := make(chan res, 1)
	go func() {
		buf := make([]byte, 1500)
		n, from, err := b.STUNConn().ReadFrom(buf)
		c <- res{buf[:n], from, err}
	}()
	select {
	case r := <-c:
		if r.err != nil {
			t.Fatalf("STUNConn ReadFrom: %v", r.err)
		}
		return r.pkt, r.from
	case <-time.After(5 * time.Second):
		// The reader ends when the test's Bind is shut down in cleanup.
		t.Fatal("no STUN packet on STUNConn")
	}
	return nil, nil
}
