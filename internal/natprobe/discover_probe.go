package natprobe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/stun/v4"
	"github.com/punchd/punchd/internal/udpretry"
)

// A prober is one UDP socket of the NAT discovery client: it sends Binding
// requests (with retransmits) and hands each answer to the request that
// waits for it, by transaction ID. It also notices Binding requests sent to
// it (the hairpinning test). Its reader goroutine ends with Close.
type prober struct {
	conn *net.UDPConn

	mu      sync.Mutex
	waiting map[[stun.TransactionIDSize]byte]chan stunReply
	expect  map[[stun.TransactionIDSize]byte]chan struct{} // requests we hope to receive

	done      chan struct{}
	closeOnce sync.Once
}

// stunReply is what one Binding response said.
type stunReply struct {
	from   netip.AddrPort // UDP source of the answer
	mapped netip.AddrPort // XOR-MAPPED-ADDRESS (MAPPED-ADDRESS from old servers)
	other  netip.AddrPort // OTHER-ADDRESS (or CHANGED-ADDRESS), zero when absent
	origin netip.AddrPort // RESPONSE-ORIGIN, zero when absent
	code   int            // STUN error code of an error response, 0 on success
	rtt    time.Duration  // from the first transmission
}

func newProber(network string) (*prober, error) {
	c, err := net.ListenUDP(network, nil)
	if err != nil {
		return nil, fmt.Errorf("open a UDP socket (%s): %w", network, err)
	}
	p := &prober{
		conn:    c,
		waiting: map[[stun.TransactionIDSize]byte]chan stunReply{},
		expect:  map[[stun.TransactionIDSize]byte]chan struct{}{},
		done:    make(chan struct{}),
	}
	go p.read()
	return p, nil
}

func (p *prober) localPort() uint16 { return p.conn.LocalAddr().(*net.UDPAddr).AddrPort().Port() }

// Close closes the socket and waits for the reader; idempotent.
func (p *prober) Close() {
	p.closeOnce.Do(func() { _ = p.conn.Close() })
	<-p.done
}

func (p *prober) read() {
	defer close(p.done)
	buf := make([]byte, 1500)
	for {
		n, from, err := p.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // ICMP errors and the like: the retransmit timer decides
		}
		p.dispatch(buf[:n], netip.AddrPortFrom(from.Addr().Unmap(), from.Port()))
	}
}

// dispatch hands one datagram to whoever waits for it; anything else is
// dropped. Untrusted input: it only decodes.
func (p *prober) dispatch(b []byte, from netip.AddrPort) {
	m := &stun.Message{Raw: b}
	if err := m.Decode(); err != nil {
		return
	}
	if m.Type.Method != stun.MethodBinding {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if m.Type.Class == stun.ClassRequest {
		if ch, ok := p.expect[m.TransactionID]; ok {
			delete(p.expect, m.TransactionID)
			close(ch)
		}
		return
	}
	ch, ok := p.waiting[m.TransactionID]
	if !ok {
		return
	}
	r, ok := parseReply(m, from)
	if !ok {
		return
	}
	delete(p.waiting, m.TransactionID)
	ch <- r // buffered, one reply per transaction
}

// parseReply reads a Binding success or error response.
func parseReply(m *stun.Message, from netip.AddrPort) (stunReply, bool) {
	r := stunReply{from: from}
	switch m.Type.Class {
	case stun.ClassErrorResponse:
		var ec stun.ErrorCodeAttribute
		if err := ec.GetFrom(m); err != nil {
			return r, false
		}
		// RFC 8489 section 14.8: the class is 3 to 6, so a code outside
		// 300-699 is junk, and a code of 0 would read as success here.
		if ec.Code < 300 || ec.Code > 699 {
			return r, false
		}
		r.code = int(ec.Code)
		return r, true
	case stun.ClassSuccessResponse:
	default:
		return r, false
	}
	var xa stun.XORMappedAddress
	if err := xa.GetFrom(m); err == nil {
		r.mapped = addrPort(xa.IP, xa.Port)
	} else {
		var ma stun.MappedAddress
		if err := ma.GetFrom(m); err != nil {
			return r, false
		}
		r.mapped = addrPort(ma.IP, ma.Port)
	}
	if !r.mapped.IsValid() {
		return r, false
	}
	var oa stun.OtherAddress
	if err := oa.GetFrom(m); err == nil {
		r.other = addrPort(oa.IP, oa.Port)
	} else {
		// RFC 3489 servers name it CHANGED-ADDRESS.
		var ca stun.MappedAddress
		if err := ca.GetFromAs(m, stun.AttrChangedAddress); err == nil {
			r.other = addrPort(ca.IP, ca.Port)
		}
	}
	var ro stun.ResponseOrigin
	if err := ro.GetFrom(m); err == nil {
		r.origin = addrPort(ro.IP, ro.Port)
	}
	return r, true
}

func addrPort(ip net.IP, port int) netip.AddrPort {
	a, ok := netip.AddrFromSlice(ip)
	if !ok || port <= 0 || port > 65535 {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(port))
}

// transact sends a Binding request with the given extra attributes to to,
// retransmitting, and waits up to timeout for the answer.
func (p *prober) transact(ctx context.Context, to netip.AddrPort, timeout time.Duration, extra ...stun.Setter) (stunReply, error) {
	m, err := stun.Build(append([]stun.Setter{stun.TransactionID, stun.BindingRequest}, append(extra, stun.Fingerprint)...)...)
	if err != nil {
		return stunReply{}, err
	}
	ch := make(chan stunReply, 1)
	p.mu.Lock()
	p.waiting[m.TransactionID] = ch
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.waiting, m.TransactionID)
		p.mu.Unlock()
	}()
	start := time.Now()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	dst := net.UDPAddrFromAddrPort(to)
	for i := 0; ; i++ {
		if _, err := p.conn.WriteToUDP(m.Raw, dst); err != nil && i == 0 {
			return stunReply{}, fmt.Errorf("send to %s: %w", to, err)
		}
		wake, last := udpretry.WakeAfter(start, i, timeout)
		timer.Reset(time.Until(wake))
		select {
		case r := <-ch:
			r.rtt = time.Since(start)
			return r, nil
		case <-timer.C:
			if last {
				return stunReply{}, udpretry.ErrNoAnswer
			}
		case <-ctx.Done():
			return stunReply{}, ctx.Err()
		}
	}
}

// expectRequest registers a transaction ID this socket hopes to receive
// as a request (sent by another of our sockets) and returns a channel that
// is closed when it arrives.
func (p *prober) expectRequest(id [stun.TransactionIDSize]byte) <-chan struct{} {
	ch := make(chan struct{})
	p.mu.Lock()
	p.expect[id] = ch
	p.mu.Unlock()
	return ch
}

// sendRequest sends one Binding request (no answer is awaited) and
// returns its transaction ID.
func (p *prober) sendRequest(to netip.AddrPort, id [stun.TransactionIDSize]byte) error {
	m, err := stun.Build(stun.NewTransactionIDSetter(id), stun.BindingRequest, stun.Fingerprint)
	if err != nil {
		return err
	}
	_, err = p.conn.WriteToUDP(m.Raw, net.UDPAddrFromAddrPort(to))
	return err
}

// tcpBinding asks server for the mapped address over TCP (RFC 5389 STUN
// over TCP, which coturn and punchd's TURN listener answer): when UDP gets
// no answer, this tells "UDP blocked" from "server down".
func tcpBinding(ctx context.Context, server netip.AddrPort, timeout time.Duration) (netip.AddrPort, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", server.String())
	if err != nil {
		return netip.AddrPort{}, 0, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	m, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if err != nil {
		return netip.AddrPort{}, 0, err
	}
	if _, err := c.Write(m.Raw); err != nil {
		return netip.AddrPort{}, 0, err
	}
	hdr := make([]byte, stunHeaderSize)
	if _, err := io.ReadFull(c, hdr); err != nil {
		return netip.AddrPort{}, 0, err
	}
	n := int(hdr[2])<<8 | int(hdr[3])
	body := make([]byte, n) // at most 64 KiB: the length field is 16 bits
	if _, err := io.ReadFull(c, body); err != nil {
		return netip.AddrPort{}, 0, err
	}
	resp := &stun.Message{Raw: append(hdr, body...)}
	if err := resp.Decode(); err != nil {
		return netip.AddrPort{}, 0, fmt.Errorf("bad STUN answer over TCP: %w", err)
	}
	if resp.TransactionID != m.TransactionID {
		return netip.AddrPort{}, 0, errors.New("STUN answer over TCP for another transaction")
	}
	r, ok := parseReply(resp, server)
	if !ok || r.code != 0 {
		return netip.AddrPort{}, 0, errors.New("STUN answer over TCP without a mapped address")
	}
	return r.mapped, time.Since(start), nil
}

// stunHeaderSize is a STUN message header's length (RFC 5389 section 6).
const stunHeaderSize = 20
