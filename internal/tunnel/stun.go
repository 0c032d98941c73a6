package tunnel

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	sysroute "github.com/punchd/punchd/internal/route" // tunnel has a route type of its own
)

// stunQueue bounds STUN packets waiting for ICE. ICE's checks are a few per
// 50 ms per peer; when ICE lags this far, dropping is what UDP would do.
const stunQueue = 256

type stunPacket struct {
	data []byte
	from *net.UDPAddr
}

// stunConn is the net.PacketConn that pion's UDP mux reads and writes: it
// sees only the STUN packets the classifier hands it and writes through the
// shared socket. It follows the rules the mux needs (docs/architecture.md,
// "Packet path"):
// ReadFrom errors only on shutdown (any error kills the mux for good),
// LocalAddr is a specific IP (with 0.0.0.0 the mux would enumerate every
// interface, the TUN included), deadlines are no-ops (the mux's write
// watchdog would otherwise stall WireGuard), and Close leaves the socket.
type stunConn struct {
	b        *Bind
	in       chan stunPacket
	done     chan struct{}
	doneOnce sync.Once
	local    atomic.Pointer[net.UDPAddr]
	override atomic.Pointer[netip.Addr]
}

func newSTUNConn(b *Bind) *stunConn {
	c := &stunConn{b: b, in: make(chan stunPacket, stunQueue), done: make(chan struct{})}
	c.local.Store(&net.UDPAddr{IP: net.IPv4zero})
	return c
}

func (c *stunConn) deliver(pkt []byte, from *net.UDPAddr) {
	select {
	case c.in <- stunPacket{data: append([]byte(nil), pkt...), from: from}:
	default:
		c.b.stunDrops.Add(1)
	}
}

func (c *stunConn) setLocal(a *net.UDPAddr) { c.local.Store(a) }

func (c *stunConn) shutdown() { c.doneOnce.Do(func() { close(c.done) }) }

func (c *stunConn) ReadFrom(p []byte) (int, net.Addr, error) {
	select {
	case pkt := <-c.in:
		return copy(p, pkt.data), pkt.from, nil
	case <-c.done:
		return 0, nil, net.ErrClosed
	}
}

func (c *stunConn) WriteTo(p []byte, addr net.Addr) (int, error) { return c.b.writeTo(p, addr) }
func (c *stunConn) LocalAddr() net.Addr                          { return c.local.Load() }
func (c *stunConn) Close() error                                 { return nil }
func (c *stunConn) SetDeadline(time.Time) error                  { return nil }
func (c *stunConn) SetReadDeadline(time.Time) error              { return nil }
func (c *stunConn) SetWriteDeadline(time.Time) error             { return nil }

// advertiseAddr is the address ICE announces as the host candidate: the
// override, else the bound address, else the source address of the
// default route, else the first usable interface address. b.mu is held.
func (b *Bind) advertiseAddr(port uint16) *net.UDPAddr {
	if ip := b.stun.override.Load(); ip != nil && ip.IsValid() {
		return &net.UDPAddr{IP: ip.AsSlice(), Port: int(port)}
	}
	if b.opts.ListenAddr.IsValid() && !b.opts.ListenAddr.IsUnspecified() {
		return &net.UDPAddr{IP: b.opts.ListenAddr.AsSlice(), Port: int(port)}
	}
	if ip := sysroute.DefaultSource(); ip.IsValid() {
		return &net.UDPAddr{IP: ip.AsSlice(), Port: int(port)}
	}
	if ip, ok := firstInterfaceAddr(b.exclude); ok {
		return &net.UDPAddr{IP: ip.AsSlice(), Port: int(port)}
	}
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port)}
}

func firstInterfaceAddr(exclude string) (netip.Addr, bool) {
	ifs, err := net.Interfaces()
	if err != nil {
		return netip.Addr{}, false
	}
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 || ifc.Name == exclude {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if pn, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(pn.IP.To4()); ok && pn.IP.To4() != nil && !ip.IsLinkLocalUnicast() {
					return ip, true
				}
			}
		}
	}
	return netip.Addr{}, false
}
