package turnserver

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"

	"github.com/pion/stun/v4"
	"github.com/punchd/punchd/internal/natkind"
)

// RFC 5780 lets a client tell a NAT's mapping and filtering behaviour apart
// by talking to one server on two IP addresses and two ports. The server
// answers Binding requests on all four combinations, tells the client the
// other address (OTHER-ADDRESS) and where each answer came from
// (RESPONSE-ORIGIN), and, when asked (CHANGE-REQUEST), answers from the
// other IP and/or the other port.
//
// The primary socket (primary IP, primary port) is shared with pion/turn:
// bindingTap sits between it and pion and takes the plain Binding requests
// (no credentials), everything else (Allocate, ChannelData, Send, and
// authenticated Bindings) still reaches pion. The other three sockets
// answer Binding requests only.

// STUN header facts (RFC 5389 section 6).
const (
	stunHeaderSize  = 20
	stunMagicCookie = 0x2112A442
)

// responder answers RFC 5780 Binding requests from four sockets, indexed
// [ip][port]: 0 is primary, 1 alternate. socks[0][0] belongs to pion/turn
// (the responder writes on it but never reads it or closes it).
type responder struct {
	socks [2][2]net.PacketConn
	addrs [2][2]netip.AddrPort
	lim   *stunLimiter // answers per source on the responder's own sockets
	log   *slog.Logger

	wg        sync.WaitGroup
	closeOnce sync.Once
}

// listenRFC5780 opens the three sockets besides primary: primary IP with
// the alternate port, and the alternate IP with both ports. altPort 0
// means the primary port + 1 (coturn's convention), or any free port when
// the primary port itself was picked by the kernel.
func listenRFC5780(primary net.PacketConn, altIP netip.Addr, altPort int, lim *stunLimiter, log *slog.Logger) (*responder, error) {
	pa, ok := primary.LocalAddr().(*net.UDPAddr)
	if !ok {
		return nil, fmt.Errorf("RFC 5780: primary socket is %T, not UDP", primary.LocalAddr())
	}
	p := pa.AddrPort()
	p = netip.AddrPortFrom(p.Addr().Unmap(), p.Port())
	if p.Addr().IsUnspecified() {
		return nil, errors.New("RFC 5780 needs the STUN socket bound to one address: give --stun-listen IP:PORT (the primary address)")
	}
	altIP = altIP.Unmap()
	if altIP == p.Addr() || altIP.Is4() != p.Addr().Is4() {
		return nil, fmt.Errorf("RFC 5780 alternate IP %s must differ from the primary %s and be of the same family: check --stun-alt-ip", altIP, p.Addr())
	}
	r := &responder{lim: lim, log: orDefault(log)}
	r.socks[0][0] = primary
	r.addrs[0][0] = p
	fail := func(err error) (*responder, error) {
		r.closeOwn()
		return nil, err
	}
	open := func(ip netip.Addr, port int) (net.PacketConn, netip.AddrPort, error) {
		a := netip.AddrPortFrom(ip, uint16(port))
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(a))
		if err != nil {
			return nil, a, listenError("RFC 5780 STUN", "--stun-alt-ip / --stun-alt-port", a.String(), err)
		}
		return c, c.LocalAddr().(*net.UDPAddr).AddrPort(), nil
	}
	if altPort == 0 && p.Port() != 0 && p.Port() < 65535 {
		altPort = int(p.Port()) + 1
	}
	var err error
	// Primary IP, alternate port first: with altPort 0 it picks the port
	// the alternate IP then uses too.
	if r.socks[0][1], r.addrs[0][1], err = open(p.Addr(), altPort); err != nil {
		return fail(err)
	}
	ap := int(r.addrs[0][1].Port())
	if r.socks[1][0], r.addrs[1][0], err = open(altIP, int(p.Port())); err != nil {
		return fail(err)
	}
	if r.socks[1][1], r.addrs[1][1], err = open(altIP, ap); err != nil {
		return fail(err)
	}
	for _, s := range [][2]int{{0, 1}, {1, 0}, {1, 1}} {
		r.wg.Add(1)
		go r.serve(s[0], s[1])
	}
	return r, nil
}

// serve answers Binding requests on one of the responder's own sockets
// until it is closed; anything else is dropped.
func (r *responder) serve(ip, port int) {
	defer r.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, from, err := r.socks[ip][port].ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			r.log.Debug("RFC 5780 read", "addr", r.addrs[ip][port].String(), "err", err)
			continue
		}
		// The primary socket's requests were charged before the tap.
		if ua, ok := from.(*net.UDPAddr); ok && r.lim != nil && isUnauthenticatedRequest(buf[:n]) && !r.lim.allow(ua.AddrPort().Addr()) {
			continue
		}
		r.handle(ip, port, buf[:n], from)
	}
}

// closeOwn closes the sockets the responder opened (not the primary) and
// waits for their goroutines; idempotent.
func (r *responder) closeOwn() {
	r.closeOnce.Do(func() {
		for _, s := range [][2]int{{0, 1}, {1, 0}, {1, 1}} {
			if c := r.socks[s[0]][s[1]]; c != nil {
				_ = c.Close()
			}
		}
	})
	r.wg.Wait()
}

// isPlainBindingRequest reports whether b has the header of a STUN Binding
// request (RFC 5389 magic cookie, sane length). Credentials are checked
// after decoding.
func isPlainBindingRequest(b []byte) bool {
	if len(b) < stunHeaderSize || binary.BigEndian.Uint16(b[0:2]) != 0x0001 ||
		binary.BigEndian.Uint32(b[4:8]) != stunMagicCookie {
		return false
	}
	l := int(binary.BigEndian.Uint16(b[2:4]))
	return l%4 == 0 && l+stunHeaderSize == len(b)
}

// handle answers pkt if it is a plain Binding request, received on socket
// [ip][port] from from, and reports whether it took the packet (true also
// for malformed Binding requests, which are dropped). Packets it does not
// take belong to pion/turn.
func (r *responder) handle(ip, port int, pkt []byte, from net.Addr) bool {
	if !isPlainBindingRequest(pkt) {
		return false
	}
	src, ok := from.(*net.UDPAddr)
	if !ok {
		return false
	}
	req := &stun.Message{Raw: pkt}
	if err := req.Decode(); err != nil {
		r.log.Debug("dropped malformed STUN Binding request", "from", from.String(), "err", err)
		return true
	}
	if req.Contains(stun.AttrMessageIntegrity) || req.Contains(stun.AttrUsername) {
		return false // authenticated: pion's business
	}
	resp, sendIP, sendPort, err := r.answer(ip, port, req, src.AddrPort())
	if err != nil {
		r.log.Debug("dropped STUN Binding request", "from", from.String(), "err", err)
		return true
	}
	if _, err := r.socks[sendIP][sendPort].WriteTo(resp, src); err != nil {
		r.log.Debug("RFC 5780 answer", "to", from.String(), "err", err)
	}
	return true
}

// answer builds the response to a decoded Binding request that arrived on
// socket [ip][port] from src, and says which socket sends it.
func (r *responder) answer(ip, port int, req *stun.Message, src netip.AddrPort) (_ []byte, sendIP, sendPort int, _ error) {
	if req.Contains(stun.AttrFingerprint) {
		if err := stun.Fingerprint.Check(req); err != nil {
			return nil, 0, 0, fmt.Errorf("bad FINGERPRINT: %w", err)
		}
	}
	var unknown stun.UnknownAttributes
	for _, a := range req.Attributes {
		if a.Type.Required() && a.Type != stun.AttrChangeRequest {
			unknown = append(unknown, a.Type)
		}
	}
	if len(unknown) > 0 {
		b, err := errorResponse(req, stun.CodeUnknownAttribute, unknown)
		return b, ip, port, err
	}
	sendIP, sendPort = ip, port
	if v, err := req.Get(stun.AttrChangeRequest); err == nil {
		if len(v) != 4 {
			b, err := errorResponse(req, stun.CodeBadRequest)
			return b, ip, port, err
		}
		if v[3]&natkind.ChangeIP != 0 {
			sendIP = 1 - ip
		}
		if v[3]&natkind.ChangePort != 0 {
			sendPort = 1 - port
		}
	}
	mapped := src.Addr().Unmap()
	origin := r.addrs[sendIP][sendPort]
	other := r.addrs[1-ip][1-port]
	resp, err := stun.Build(stun.NewTransactionIDSetter(req.TransactionID), stun.BindingSuccess,
		&stun.XORMappedAddress{IP: mapped.AsSlice(), Port: int(src.Port())},
		&stun.ResponseOrigin{IP: origin.Addr().AsSlice(), Port: int(origin.Port())},
		&stun.OtherAddress{IP: other.Addr().AsSlice(), Port: int(other.Port())},
		stun.NewSoftware("punchd"),
		stun.Fingerprint)
	if err != nil {
		return nil, 0, 0, err
	}
	return resp.Raw, sendIP, sendPort, nil
}

func errorResponse(req *stun.Message, code stun.ErrorCode, extra ...stun.Setter) ([]byte, error) {
	setters := append([]stun.Setter{stun.NewTransactionIDSetter(req.TransactionID),
		stun.NewType(stun.MethodBinding, stun.ClassErrorResponse), code}, extra...)
	setters = append(setters, stun.Fingerprint)
	m, err := stun.Build(setters...)
	if err != nil {
		return nil, err
	}
	return m.Raw, nil
}

// bindingTap is the primary socket as pion/turn sees it: plain Binding
// requests are answered by the responder and never reach pion.
type bindingTap struct {
	net.PacketConn
	r *responder
}

func (c *bindingTap) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(p)
		if err != nil || !c.r.handle(0, 0, p[:n], addr) {
			return n, addr, err
		}
	}
}

// DetectAltIP returns a second address of this host that can serve as the
// RFC 5780 alternate IP for primary: same family, global unicast and not
// private (the clients that reach primary must reach it too). The zero
// Addr means there is none.
func DetectAltIP(primary netip.Addr) netip.Addr {
	return pickAltIP(primary, ownAddrs())
}

func pickAltIP(primary netip.Addr, own []netip.Addr) netip.Addr {
	primary = primary.Unmap()
	if !slices.Contains(own, primary) || !primary.IsGlobalUnicast() || primary.IsPrivate() {
		return netip.Addr{} // primary is not ours, or private (behind a NAT?): no guessing
	}
	for _, a := range own {
		a = a.Unmap()
		if a != primary && a.Is4() == primary.Is4() && a.IsGlobalUnicast() && !a.IsPrivate() {
			return a
		}
	}
	return netip.Addr{}
}
