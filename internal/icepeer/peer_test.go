package icepeer

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"

	"github.com/punchd/punchd/internal/icemux"
	"github.com/punchd/punchd/internal/identity"
	"github.com/punchd/punchd/internal/turnserver"
)

// testNode is one side of a loopback pair: its own socket, mux and Peer.
type testNode struct {
	name string
	key  identity.PublicKey
	conn net.PacketConn
	mux  ice.UniversalUDPMux
	out  chan []byte // what this node signals, in order
	drop atomic.Bool // lose what this node signals

	mu     sync.Mutex
	peer   *Peer
	stop   context.CancelFunc
	done   chan struct{}
	path   Path
	onPath int
}

func (n *testNode) addr() netip.AddrPort {
	return n.conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

func (n *testNode) lastPath() (Path, int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.path, n.onPath
}

func (n *testNode) current() *Peer {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.peer
}

type testPair struct {
	t          *testing.T
	a, b       *testNode
	iceServers []ICEServer
}

func newTestNode(t *testing.T, name string) *testNode {
	t.Helper()
	k, err := identity.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux, err := icemux.NewUDPMux(conn, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	n := &testNode{name: name, key: k.PublicKey(), conn: conn, mux: mux}
	// Cleanups run last-in first-out: the peers (registered later) stop
	// before the mux and the socket go.
	t.Cleanup(func() {
		mux.Close()
		conn.Close()
	})
	return n
}

// newTestPair wires two nodes by in-memory signaling: each direction is a
// channel drained by one goroutine, so messages arrive in order, as they
// do through the rendezvous. Presence is up to the test.
func newTestPair(t *testing.T, iceServers ...string) *testPair {
	tp := &testPair{t: t, a: newTestNode(t, "a"), b: newTestNode(t, "b")}
	for _, u := range iceServers {
		tp.iceServers = append(tp.iceServers, ICEServer{URL: u})
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	for _, dir := range [][2]*testNode{{tp.a, tp.b}, {tp.b, tp.a}} {
		from, to := dir[0], dir[1]
		from.out = make(chan []byte, 1024)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case b := <-from.out:
					if p := to.current(); p != nil {
						p.HandleSignal(b)
					}
				}
			}
		}()
	}
	tp.start(tp.a)
	tp.start(tp.b)
	return tp
}

func (tp *testPair) other(n *testNode) *testNode {
	if n == tp.a {
		return tp.b
	}
	return tp.a
}

// start runs a (new) Peer for n; the old one, if any, must be stopped.
func (tp *testPair) start(n *testNode) {
	p := NewPeer(PeerConfig{
		Local:      n.key,
		Remote:     tp.other(n).key,
		Mux:        n.mux,
		ICEServers: func() []ICEServer { return tp.iceServers },
		Signal: func(ctx context.Context, b []byte) error {
			if n.drop.Load() {
				return nil
			}
			select {
			case n.out <- append([]byte(nil), b...):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		},
		OnPath: func(path Path) {
			n.mu.Lock()
			defer n.mu.Unlock()
			n.path = path
			n.onPath++
		},
		AllowLoopback: true,
		Logger:        testLogger(tp.t, n.name),
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	n.mu.Lock()
	n.peer, n.stop, n.done = p, cancel, done
	n.mu.Unlock()
	go func() {
		defer close(done)
		p.Run(ctx)
	}()
	tp.t.Cleanup(func() { stopPeer(tp.t, cancel, done) })
}

func stopPeer(t *testing.T, cancel context.CancelFunc, done <-chan struct{}) {
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Error("Peer.Run did not return within 10s of cancel")
	}
}

// restart replaces n's Peer, as a restarted daemon would.
func (tp *testPair) restart(n *testNode) {
	n.mu.Lock()
	cancel, done := n.stop, n.done
	n.mu.Unlock()
	stopPeer(tp.t, cancel, done)
	tp.start(n)
}

// online tells both Peers that the other is at the rendezvous.
func (tp *testPair) online() {
	tp.a.current().HandlePresence(true)
	tp.b.current().HandlePresence(true)
}

// waitConnected waits until both nodes got a direct path to each other's
// socket from attempt gens other than notGen, and returns how long it took.
func (tp *testPair) waitConnected(timeout time.Duration, notGen uint64) time.Duration {
	tp.t.Helper()
	start := time.Now()
	for time.Since(start) < timeout {
		ok := true
		for _, n := range []*testNode{tp.a, tp.b} {
			path, _ := n.lastPath()
			st := n.current().Status()
			ok = ok && path.Direct == tp.other(n).addr() && st.State == StateConnected && st.Gen != notGen && st.Path == path
		}
		if ok {
			return time.Since(start)
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, n := range []*testNode{tp.a, tp.b} {
		path, calls := n.lastPath()
		tp.t.Errorf("%s (%s): OnPath calls %d, last %+v, status %+v; want direct to %s",
			n.name, role(n.current()), calls, path, n.current().Status(), tp.other(n).addr())
	}
	tp.t.FailNow()
	return 0
}

func role(p *Peer) string {
	if p.controlling {
		return "controlling"
	}
	return "controlled"
}

// inLoop runs fn on p's loop and returns its result.
func inLoop[T any](t *testing.T, p *Peer, fn func() T) T {
	t.Helper()
	ch := make(chan T, 1)
	p.tryPost("test", func() { ch <- fn() })
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatal("peer loop did not run the test's event within 5s")
		panic("unreachable")
	}
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func testLogger(t *testing.T, name string) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: testLogLevel})).With("node", name)
	}
	return quietLogger()
}

// testLogLevel: raise to slog.LevelDebug to see the state machine (-v).
var testLogLevel = slog.LevelInfo

// startServer runs punchd's STUN server on loopback for the test.
func startServer(t *testing.T) *turnserver.Server {
	t.Helper()
	s, err := turnserver.ListenServer(turnserver.ServerConfig{STUNListen: "127.0.0.1:0", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
