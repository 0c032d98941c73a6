package birthday

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"
)

// lowestPort is the lowest port random probes aim at: NATs hand out
// ephemeral ports, not the well-known ones.
const lowestPort = 1024

// Easy is the port-restricted side of an attempt. It sends its probes
// through send (the tunnel socket, so the path found is the one WireGuard
// already uses) and learns of the ack from Deliver, which the socket's
// reader calls for every birthday packet.
type Easy struct {
	cfg     Config
	key     Key
	session Session
	send    func(b []byte, to netip.AddrPort) error
	acks    chan ack
	Stats   Stats
}

type ack struct {
	p    Packet
	from netip.AddrPort
}

// NewEasy prepares the easy side; send writes one datagram.
func NewEasy(cfg Config, key Key, session Session, send func(b []byte, to netip.AddrPort) error) *Easy {
	return &Easy{cfg: cfg.Limits(), key: key, session: session, send: send, acks: make(chan ack, 4)}
}

// Deliver hands over a birthday packet that arrived from from. It never
// blocks; packets that are not this session's acks are counted as junk.
func (e *Easy) Deliver(b []byte, from netip.AddrPort) {
	p, err := Open(&e.key, e.session, b)
	if err != nil || p.Kind != KindAck {
		// A spray that got through (our probe opened the filter first)
		// is fine too, but the ack that follows is what counts.
		if err != nil {
			e.Stats.Junk.Add(1)
		}
		return
	}
	select {
	case e.acks <- ack{p: p, from: netip.AddrPortFrom(from.Addr().Unmap(), from.Port())}:
	default:
	}
}

// Run probes ports of peer (the hard side's public IP): predicted first,
// then random ones, at most cfg.Probes at cfg.Rate, and returns the path
// when an ack comes back from the port it probed. It stops at the first
// hit, ErrMiss after the last probe (plus a second for late acks) or at
// cfg.Timeout.
func (e *Easy) Run(ctx context.Context, peer netip.Addr, predicted []uint16) (*Hit, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, e.cfg.Timeout)
	defer cancel()
	peer = peer.Unmap()
	ports := probeOrder(predicted, e.cfg.Probes, rand.N[int])
	p := newPacer(e.cfg.Rate)
	defer p.stop()
	sent := 0
	check := func(a ack) (*Hit, bool) {
		// The ack must come from the hard side's address, from the very
		// port the probe went to (the mapping it met).
		if a.from.Addr() != peer || a.from.Port() != a.p.Port {
			e.Stats.Junk.Add(1)
			return nil, false
		}
		return &Hit{Remote: a.from, Probes: sent, Sent: int(e.Stats.Sent.Load()), Elapsed: time.Since(start)}, true
	}
	for i, port := range ports {
		if i > 0 {
		wait:
			for {
				select {
				case <-p.t.C:
					break wait
				case a := <-e.acks:
					if hit, ok := check(a); ok {
						return hit, nil
					}
				case <-ctx.Done():
					return nil, e.ended(ctx)
				}
			}
		}
		b := Seal(&e.key, Packet{Kind: KindProbe, Session: e.session, Index: uint16(min(i, 0xffff)), Port: port})
		if err := e.send(b, netip.AddrPortFrom(peer, port)); err != nil {
			return nil, fmt.Errorf("birthday: probe %s:%d: %w", peer, port, err)
		}
		sent++
		e.Stats.Sent.Add(1)
	}
	late := time.NewTimer(lateAck)
	defer late.Stop()
	for {
		select {
		case a := <-e.acks:
			if hit, ok := check(a); ok {
				return hit, nil
			}
		case <-late.C:
			return nil, ErrMiss
		case <-ctx.Done():
			return nil, e.ended(ctx)
		}
	}
}

func (e *Easy) ended(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return ErrMiss
	}
	return ctx.Err()
}

// probeOrder lists up to n distinct ports: predicted ones first (in their
// order, skipping repeats and ports below lowestPort), then random ones
// from [lowestPort, 65535] (a partial Fisher-Yates shuffle, so no port is
// probed twice). randN(k) returns a number in [0, k).
func probeOrder(predicted []uint16, n int, randN func(int) int) []uint16 {
	const span = 65536 - lowestPort
	n = min(n, span)
	out := make([]uint16, 0, n)
	seen := make(map[uint16]bool, n)
	for _, p := range predicted {
		if len(out) == n {
			return out
		}
		if p >= lowestPort && !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	// Shuffle lazily: swapped holds the displaced entries of a virtual
	// array [lowestPort..65535].
	swapped := make(map[int]int)
	at := func(i int) int {
		if v, ok := swapped[i]; ok {
			return v
		}
		return i + lowestPort
	}
	for i := 0; len(out) < n && i < span; i++ {
		j := i + randN(span-i)
		vi, vj := at(i), at(j)
		swapped[j] = vi
		swapped[i] = vj
		if p := uint16(vj); !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}
