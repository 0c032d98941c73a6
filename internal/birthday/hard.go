package birthday

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// ErrMiss means an attempt ended at its cap or deadline without a hit.
var ErrMiss = errors.New("birthday attempt missed: no probe met a mapping within the caps")

// Hit is the path an attempt found.
type Hit struct {
	// Conn is the hard side's winning socket (nil on the easy side, whose
	// path is its own socket); the caller owns it.
	Conn *net.UDPConn
	// Remote is the other side's address on this path.
	Remote netip.AddrPort
	// Probes is how many probes the easy side had sent when it heard the
	// ack (the hard side: the index of the probe that reached it, plus one).
	Probes int
	// Sent is how many packets this side sent in the attempt.
	Sent int
	// Elapsed is the time from Run to the hit.
	Elapsed time.Duration
}

// Stats count what an attempt sent and what it dropped.
type Stats struct {
	Sent atomic.Int64 // packets sent
	Junk atomic.Int64 // packets that were not this session's, or failed the MAC
}

// Hard is the symmetric side of an attempt: Config.Sockets sockets, each
// of which sends one spray packet to the easy side and answers the first
// probe that reaches it.
type Hard struct {
	cfg     Config
	key     Key
	session Session
	conns   []*net.UDPConn
	Stats   Stats

	closeOnce sync.Once
	keep      *net.UDPConn // the winner, not closed by Close
	mu        sync.Mutex
}

// ListenHard opens cfg.Sockets UDP sockets on local (port 0 each). Call it
// in the network namespace the sockets belong to.
func ListenHard(cfg Config, key Key, session Session, local netip.Addr) (*Hard, error) {
	cfg = cfg.Limits()
	h := &Hard{cfg: cfg, key: key, session: session}
	network := "udp4"
	if local.Is6() && !local.Is4In6() {
		network = "udp6"
	}
	for range cfg.Sockets {
		c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 0)))
		if err != nil {
			h.Close()
			return nil, fmt.Errorf("birthday: open socket %d of %d on %s (lower birthday sockets or raise the fd limit): %w", len(h.conns)+1, cfg.Sockets, local, err)
		}
		h.conns = append(h.conns, c)
	}
	return h, nil
}

// Conn returns socket i, e.g. to learn its public mapping with STUN just
// before Run so the easy side can predict the next ones.
func (h *Hard) Conn(i int) *net.UDPConn { return h.conns[i] }

// Len is the number of sockets.
func (h *Hard) Len() int { return len(h.conns) }

// Close closes every socket but a winner handed out by Run; idempotent.
func (h *Hard) Close() {
	h.closeOnce.Do(func() {
		h.mu.Lock()
		keep := h.keep
		h.mu.Unlock()
		for _, c := range h.conns {
			if c != keep {
				c.Close()
			}
		}
	})
}

// Run sprays to peer (the easy side's public address) at cfg.Rate, one
// packet per socket in socket order, calls sprayed (when not nil) once the
// last one is out, so the easy side can be told to start probing, and
// waits for a probe. It returns the first hit, or ErrMiss at cfg.Timeout;
// either way every other socket is closed.
func (h *Hard) Run(ctx context.Context, peer netip.AddrPort, sprayed func()) (*Hit, error) {
	hit, err := h.run(ctx, peer, sprayed)
	if hit != nil {
		// A reader's stop may have set a deadline on the winner.
		_ = hit.Conn.SetReadDeadline(time.Time{})
	}
	return hit, err
}

func (h *Hard) run(ctx context.Context, peer netip.AddrPort, sprayed func()) (*Hit, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
	defer cancel()
	hits := make(chan *Hit, 1)
	var wg sync.WaitGroup
	for i, c := range h.conns {
		wg.Go(func() { h.answer(ctx, i, c, hits, start) })
	}
	// Closing the sockets is what stops the readers.
	defer wg.Wait()
	defer h.Close()

	spray := func() error {
		p := newPacer(h.cfg.Rate)
		defer p.stop()
		dst := net.UDPAddrFromAddrPort(peer)
		for i, c := range h.conns {
			if i > 0 {
				select {
				case <-p.t.C:
				case <-ctx.Done():
					return nil
				}
			}
			b := Seal(&h.key, Packet{Kind: KindSpray, Session: h.session, Index: uint16(i)})
			if _, err := c.WriteToUDP(b, dst); err != nil {
				return fmt.Errorf("birthday: spray from socket %d to %s: %w", i, peer, err)
			}
			h.Stats.Sent.Add(1)
		}
		if sprayed != nil {
			sprayed()
		}
		return nil
	}
	sprayErr := make(chan error, 1)
	go func() { sprayErr <- spray() }()
	select {
	case hit := <-hits:
		cancel()
		<-sprayErr
		hit.Sent = int(h.Stats.Sent.Load())
		return hit, nil
	case err := <-sprayErr:
		if err != nil {
			return nil, err
		}
	}
	select {
	case hit := <-hits:
		hit.Sent = int(h.Stats.Sent.Load())
		return hit, nil
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, ErrMiss
		}
		return nil, ctx.Err()
	}
}

// answer reads socket i until ctx ends or a probe arrives, which it
// answers (ackCopies times) and reports.
func (h *Hard) answer(ctx context.Context, i int, c *net.UDPConn, hits chan<- *Hit, start time.Time) {
	stop := context.AfterFunc(ctx, func() { _ = c.SetReadDeadline(time.Now()) })
	defer stop()
	buf := make([]byte, 64)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		p, err := Open(&h.key, h.session, buf[:n])
		if err != nil || p.Kind != KindProbe {
			h.Stats.Junk.Add(1)
			continue
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		h.mu.Lock()
		won := h.keep == nil
		if won {
			h.keep = c
		}
		h.mu.Unlock()
		if !won {
			return
		}
		_ = c.SetReadDeadline(time.Time{})
		ack := Seal(&h.key, Packet{Kind: KindAck, Session: h.session, Index: uint16(i), Port: p.Port})
		for range ackCopies {
			if _, err := c.WriteToUDPAddrPort(ack, from); err == nil {
				h.Stats.Sent.Add(1)
			}
		}
		hits <- &Hit{Conn: c, Remote: from, Probes: int(p.Index) + 1, Elapsed: time.Since(start)}
		return
	}
}
