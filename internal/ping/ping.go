// Package ping is punchd's overlay ping: UDP echoes between the daemons'
// overlay addresses. It measures the path through the tunnel, WireGuard and
// relay included, and needs no raw socket, so `punchd ping` runs without
// privileges.
package ping

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"
)

// Port is where every daemon answers on its overlay addresses.
const Port = 28773

// A probe is magic, sequence number and a random token (so stray or late
// replies are told apart), padded to the size asked for.
const (
	magic     = "punchdP1"
	headerLen = len(magic) + 4 + 8
	// MaxSize bounds a probe; replies are never larger than requests.
	MaxSize = 1400
)

// Responder echoes probes that reach its address back to their sender.
type Responder struct {
	conn    *net.UDPConn
	pc      *ipv4.PacketConn
	ifIndex int // the only interface probes are answered from
	log     *slog.Logger
	offPath atomic.Uint64
	wg      sync.WaitGroup
	once    sync.Once
}

// Listen answers probes on addr (an overlay IPv4 address of this host) that
// arrived on the interface iface (the tunnel). Linux delivers a datagram
// to any local address whatever interface it came in on (the weak host
// model), so without the check a host on the LAN could reach the
// responder by routing the overlay address at this machine.
func Listen(addr netip.Addr, iface string, log *slog.Logger) (*Responder, error) {
	if log == nil {
		log = slog.Default()
	}
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, fmt.Errorf("ping responder: interface %s: %w", iface, err)
	}
	conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, Port)))
	if err != nil {
		return nil, fmt.Errorf("ping responder on %s: %w (is another punchd using this overlay address?)", netip.AddrPortFrom(addr, Port), err)
	}
	pc := ipv4.NewPacketConn(conn)
	if err := pc.SetControlMessage(ipv4.FlagInterface, true); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("ping responder on %s: ask for the arrival interface: %w", addr, err)
	}
	r := &Responder{conn: conn, pc: pc, ifIndex: ifi.Index, log: log}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.serve()
	}()
	return r, nil
}

func (r *Responder) serve() {
	buf := make([]byte, MaxSize)
	var lastLog time.Time
	for {
		n, cm, from, err := r.pc.ReadFrom(buf)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				r.log.Debug("ping responder stopped", "err", err)
			}
			return
		}
		if cm == nil || cm.IfIndex != r.ifIndex {
			r.offPath.Add(1)
			if time.Since(lastLog) >= time.Minute {
				lastLog = time.Now()
				r.log.Info("ping responder ignores probes that did not arrive through the tunnel", "from", from.String(), "ignored", r.offPath.Load())
			}
			continue
		}
		// Only probes: the responder must not reflect arbitrary traffic.
		if n < headerLen || string(buf[:len(magic)]) != magic {
			continue
		}
		if _, err := r.conn.WriteTo(buf[:n], from); err != nil {
			r.log.Debug("ping reply", "to", from, "err", err)
		}
	}
}

// OffPath is how many datagrams were ignored because they did not arrive
// on the tunnel interface.
func (r *Responder) OffPath() uint64 { return r.offPath.Load() }

// Close stops answering; idempotent.
func (r *Responder) Close() error {
	var err error
	r.once.Do(func() {
		err = r.conn.Close()
		r.wg.Wait()
	})
	return err
}

// Pinger sends probes to one peer's responder.
type Pinger struct {
	conn  *net.UDPConn
	token uint64
	buf   []byte
}

// NewPinger opens a socket for probing dst (the peer's overlay address).
func NewPinger(dst netip.Addr) (*Pinger, error) {
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, Port)))
	if err != nil {
		return nil, fmt.Errorf("ping %s: %w", dst, err)
	}
	return &Pinger{conn: conn, token: uint64(time.Now().UnixNano()), buf: make([]byte, MaxSize)}, nil
}

// Ping sends probe seq of size bytes (headerLen..MaxSize) and waits for its
// echo until ctx is done; it returns the round-trip time.
func (p *Pinger) Ping(ctx context.Context, seq uint32, size int) (time.Duration, error) {
	size = min(max(size, headerLen), MaxSize)
	probe := make([]byte, size)
	copy(probe, magic)
	binary.BigEndian.PutUint32(probe[len(magic):], seq)
	binary.BigEndian.PutUint64(probe[len(magic)+4:], p.token)
	start := time.Now()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = start.Add(time.Second)
	}
	if err := p.conn.SetDeadline(deadline); err != nil {
		return 0, err
	}
	// Cancelling ctx (Ctrl-C) ends the wait at once.
	stop := context.AfterFunc(ctx, func() { _ = p.conn.SetDeadline(time.Now()) })
	defer stop()
	if _, err := p.conn.Write(probe); err != nil {
		return 0, fmt.Errorf("send probe: %w", err)
	}
	// Late replies to earlier probes may arrive first; skip them.
	for i := 0; i < 64; i++ {
		n, err := p.conn.Read(p.buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if ctx.Err() != nil && time.Now().Before(deadline) {
					return 0, ctx.Err()
				}
				return 0, fmt.Errorf("no reply within %v", deadline.Sub(start).Round(time.Millisecond))
			}
			// ECONNREFUSED: the peer's host is there but nothing answers.
			return 0, fmt.Errorf("no reply: %w (is the peer's punchd running?)", err)
		}
		if n == size && string(p.buf[:headerLen]) == string(probe[:headerLen]) {
			return time.Since(start), nil
		}
	}
	return 0, errors.New("no matching reply among 64 datagrams")
}

// Close closes the socket; idempotent.
func (p *Pinger) Close() error {
	err := p.conn.Close()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
