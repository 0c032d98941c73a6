package icepeer

import (
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"go.uber.org/goleak"
)

const connectTimeout = 10 * time.Second

func TestPeersConnectOnLoopback(t *testing.T) {
	tp := newTestPair(t)
	tp.online()
	took := tp.waitConnected(connectTimeout, 0)
	t.Logf("connected after %v", took)
	for _, n := range []*testNode{tp.a, tp.b} {
		st := n.current().Status()
		if st.Path.Local.Type != ice.CandidateTypeHost || st.Path.Local.Addr != n.addr() {
			t.Errorf("%s: local candidate %+v, want host %s", n.name, st.Path.Local, n.addr())
		}
		if st.ConnectedAt.IsZero() || st.Reason != "" {
			t.Errorf("%s: status %+v: want ConnectedAt set and no reason", n.name, st)
		}
	}
	if tp.a.current().controlling == tp.b.current().controlling {
		t.Fatal("both sides took the same ICE role")
	}
}

func TestPeersConnectWithSTUN(t *testing.T) {
	s := startServer(t)
	tp := newTestPair(t, "stun:"+s.Addr().String())
	tp.online()
	took := tp.waitConnected(connectTimeout, 0)
	t.Logf("connected after %v", took)
	// On loopback the srflx address equals the host one; pion may keep
	// both, or drop the srflx. Either way it must connect, and a srflx
	// candidate, when signaled, must carry the mapped address.
	for _, n := range []*testNode{tp.a, tp.b} {
		p := n.current()
		local := inLoop(t, p, func() []string { return append([]string(nil), p.cur.local...) })
		t.Logf("%s candidates: %q", n.name, local)
	}
}

// Either side losing its agent, or restarting, ends in a new attempt that
// connects again.
func TestPeersReconnect(t *testing.T) {
	tests := []struct {
		name        string
		controlling bool // which side is hit
		restart     bool // restart the whole Peer instead of closing its agent
	}{
		{"controlling agent closed", true, false},
		{"controlled agent closed", false, false},
		{"controlling restarts", true, true},
		{"controlled restarts", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp := newTestPair(t)
			tp.online()
			tp.waitConnected(connectTimeout, 0)
			gen := tp.a.current().Status().Gen
			if gen == 0 || gen != tp.b.current().Status().Gen {
				t.Fatalf("gens differ: %d vs %d", gen, tp.b.current().Status().Gen)
			}
			n := tp.a
			if tp.a.current().controlling != tt.controlling {
				n = tp.b
			}
			before := tp.other(n).current().Status().Attempts
			if before < 1 {
				t.Fatalf("connected after %d attempts", before)
			}
			start := time.Now()
			if tt.restart {
				tp.other(n).current().HandlePresence(false)
				tp.restart(n)
				tp.other(n).current().HandlePresence(true)
				n.current().HandlePresence(true)
			} else {
				p := n.current()
				inLoop(t, p, func() error { return p.cur.agent.Close() })
			}
			tp.waitConnected(connectTimeout, gen)
			t.Logf("reconnected after %v (gen %d -> %d)", time.Since(start), gen, tp.a.current().Status().Gen)
			// The side that stayed counts the new attempt (a small count,
			// not the attempt's random name).
			if after := tp.other(n).current().Status().Attempts; after <= before || after > before+10 {
				t.Fatalf("attempts %d -> %d, want one or a few more", before, after)
			}
		})
	}
}

// Messages of other attempts, of the wrong role, and garbage change
// nothing on a connected pair.
func TestStaleAndGarbageSignalsIgnored(t *testing.T) {
	tp := newTestPair(t)
	tp.online()
	tp.waitConnected(connectTimeout, 0)
	gen := tp.a.current().Status().Gen
	_, callsA := tp.a.lastPath()
	_, callsB := tp.b.lastPath()

	pwd := "0123456789012345678901"
	stale := []signalMsg{
		{Kind: kindAnswer, Gen: gen + 1, Ufrag: "abcd", Pwd: pwd},
		{Kind: kindAnswer, Gen: gen, Ufrag: "abcd", Pwd: pwd}, // repeated: already started
		{Kind: kindCandidate, Gen: gen + 1, Candidate: "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host"},
		{Kind: kindHello, Seen: gen},
	}
	garbage := [][]byte{
		nil, []byte("{"), []byte(`{"v":1,"kind":"offer"}`), []byte(`{"v":1,"kind":"candidate","gen":1,"candidate":"x"}`),
		[]byte(`{"v":1,"kind":"answer","gen":18446744073709551615,"ufrag":"abcd","pwd":"` + pwd + `"}`),
		[]byte("\x00\xff"), []byte(`{"v":1,"kind":"hello","seen":-1}`),
	}
	for _, n := range []*testNode{tp.a, tp.b} {
		p := n.current()
		for _, m := range stale {
			p.HandleSignal(encodeSignal(m))
		}
		if p.controlling {
			// An offer to the controlling side is a role mix-up.
			p.HandleSignal(encodeSignal(signalMsg{Kind: kindOffer, Gen: gen + 2, Ufrag: "abcd", Pwd: pwd}))
		}
		for _, b := range garbage {
			p.HandleSignal(b)
		}
	}
	time.Sleep(500 * time.Millisecond)
	for _, n := range []*testNode{tp.a, tp.b} {
		st := n.current().Status()
		if st.Gen != gen || st.State != StateConnected {
			t.Errorf("%s: status %+v after stale signals; want still connected on gen %d", n.name, st, gen)
		}
	}
	if _, c := tp.a.lastPath(); c != callsA {
		t.Errorf("a: OnPath called %d more times", c-callsA)
	}
	if _, c := tp.b.lastPath(); c != callsB {
		t.Errorf("b: OnPath called %d more times", c-callsB)
	}
}

// Lost signals (offer, answer, hellos, candidates) are recovered by
// repeats and hellos well before an attempt would fail (7 s).
func TestPeersRecoverFromLostSignals(t *testing.T) {
	tests := []struct {
		name                            string
		dropControlling, dropControlled bool
	}{
		{"both directions", true, true},
		{"offer lost", true, false},
		{"answer lost", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp := newTestPair(t)
			ctl, ctd := tp.a, tp.b
			if !ctl.current().controlling {
				ctl, ctd = ctd, ctl
			}
			ctl.drop.Store(tt.dropControlling)
			ctd.drop.Store(tt.dropControlled)
			tp.online()
			time.Sleep(300 * time.Millisecond)
			ctl.drop.Store(false)
			ctd.drop.Store(false)
			took := tp.waitConnected(3*time.Second, 0)
			t.Logf("connected %v after the signaling came back", took)
		})
	}
}

func TestPresence(t *testing.T) {
	tp := newTestPair(t)
	a := tp.a.current()
	if st := a.Status(); st.State != StateNew {
		t.Fatalf("initial state %q, want new", st.State)
	}
	a.HandlePresence(false)
	waitState(t, a, StateWaiting)

	tp.online()
	tp.waitConnected(connectTimeout, 0)
	gen := a.Status().Gen
	// The rendezvous is for signaling only: a working path survives the
	// peer's session there ending.
	a.HandlePresence(false)
	time.Sleep(200 * time.Millisecond)
	if st := a.Status(); st.State != StateConnected || st.Gen != gen || st.Reason == "" {
		t.Fatalf("after presence offline on a working path: %+v; want connected with a note", st)
	}
	a.HandlePresence(true)
	time.Sleep(200 * time.Millisecond)
	if st := a.Status(); st.State != StateConnected || st.Gen != gen || st.Reason != "" {
		t.Fatalf("after presence back: %+v", st)
	}
}

// Candidates that overtake their offer are kept for it (controlled side).
func TestEarlyCandidatesBuffered(t *testing.T) {
	tp := newTestPair(t)
	n := tp.a
	if n.current().controlling {
		n = tp.b
	}
	p := n.current()
	const gen = 12345
	for i := range 3 {
		c := signalMsg{Kind: kindCandidate, Gen: gen, Candidate: "candidate:" + string(rune('1'+i)) + " 1 udp 2130706431 127.0.0.1 9 typ host"}
		p.HandleSignal(encodeSignal(c))
	}
	p.HandleSignal(encodeSignal(signalMsg{Kind: kindOffer, Gen: gen, Ufrag: "abcd", Pwd: "0123456789012345678901"}))
	got := inLoop(t, p, func() int {
		if p.cur == nil || p.cur.gen != gen {
			return -1
		}
		return p.cur.remotes
	})
	if got != 3 {
		t.Fatalf("agent got %d early candidates, want 3", got)
	}
}

func waitState(t *testing.T, p *Peer, want State) {
	t.Helper()
	for range 200 {
		if p.Status().State == want {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("state %+v, want %s", p.Status(), want)
}

// Everything a Peer starts (agents, readers, closers, pion's callback
// goroutines) is gone once Run has returned and the mux is closed.
func TestNoGoroutinesLeft(t *testing.T) {
	// Exact: each goroutine running now is allowed, any other is a leak
	// (pion's and ours alike), however many there are.
	opts := goleak.IgnoreCurrent()
	t.Run("pair", func(t *testing.T) {
		tp := newTestPair(t)
		tp.online()
		tp.waitConnected(connectTimeout, 0)
		p := tp.a.current()
		inLoop(t, p, func() error { return p.cur.agent.Close() })
		tp.waitConnected(connectTimeout, 0)
	})
	goleak.VerifyNone(t, opts)
}

// A peer that vanishes without a word. The controlled side keeps the path
// while ICE may recover (disconnected) and drops it when the attempt
// fails; the controlling side starts a new attempt as soon as the pair goes
// quiet. Either way the peer coming back reconnects.
func TestPathLostWhenPeerVanishes(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for ICE's failed timeout (7 s)")
	}
	for _, observeControlling := range []bool{false, true} {
		name := map[bool]string{false: "controlled side", true: "controlling side"}[observeControlling]
		t.Run(name, func(t *testing.T) {
			tp := newTestPair(t)
			tp.online()
			tp.waitConnected(connectTimeout, 0)
			gen := tp.a.current().Status().Gen
			watcher, n := tp.a, tp.b
			if watcher.current().controlling != observeControlling {
				watcher, n = tp.b, tp.a
			}
			n.mu.Lock()
			cancel, done := n.stop, n.done
			n.mu.Unlock()
			stopPeer(t, cancel, done)

			a := watcher.current()
			start := time.Now()
			if observeControlling {
				waitFor(t, disconnectedTimeout+2*time.Second, "a new attempt", func() bool {
					st := a.Status()
					return st.Gen != gen && st.State == StateChecking
				})
				t.Logf("new attempt after %v", time.Since(start))
				if path, _ := watcher.lastPath(); !path.IsZero() {
					t.Fatalf("path of the old attempt still %+v", path)
				}
			} else {
				waitStateWithin(t, a, StateDisconnected, disconnectedTimeout+2*time.Second)
				if path, _ := watcher.lastPath(); path.IsZero() {
					t.Fatal("path dropped on disconnected; ICE may still recover it")
				}
				t.Logf("disconnected after %v", time.Since(start))
				waitStateWithin(t, a, StateFailed, disconnectedTimeout+failedTimeout+2*time.Second)
				t.Logf("failed after %v: %s", time.Since(start), a.Status().Reason)
				if path, _ := watcher.lastPath(); !path.IsZero() {
					t.Fatalf("path still %+v after failure", path)
				}
				if a.Status().Reason == "" {
					t.Error("failed without a reason")
				}
			}

			tp.start(n)
			n.current().HandlePresence(true)
			tp.waitConnected(connectTimeout, gen)
		})
	}
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no %s within %v", what, d)
}

func waitStateWithin(t *testing.T, p *Peer, want State, d time.Duration) {
	t.Helper()
	waitFor(t, d, "state "+want.String()+" (now "+p.Status().State.String()+")", func() bool { return p.Status().State == want })
}
