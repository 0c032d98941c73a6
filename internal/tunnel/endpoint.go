package tunnel

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/punchd/punchd/internal/identity"
)

// Path is where a peer's packets go, as ICE selected it.
type Path struct {
	// Direct, when valid, is the remote address: packets leave from the
	// shared socket straight to it.
	Direct netip.AddrPort
	// Relay, when set, takes each packet (the ice.Conn of a relay pair).
	Relay io.Writer
	// Channel, with Relay, is the relay pair's TURN channel: once bound,
	// the Bind writes ChannelData on the TURN client's socket itself, in
	// batches, and Relay only carries what goes before that.
	Channel TURNChannel
}

// IsZero reports whether there is no path.
func (p Path) IsZero() bool { return !p.Direct.IsValid() && p.Relay == nil }

// endpointPrefix marks the logical per-peer endpoints given to wireguard-go
// as "endpoint=" strings; ParseEndpoint maps them back.
const endpointPrefix = "punchd-peer:"

// maxPending is how many packets a peer without a path keeps. Enough for a
// handshake initiation and a few packets behind it; the point is that the
// first handshake goes out the moment ICE selects a pair, instead of
// WireGuard retrying 5 s later.
const maxPending = 8

// peerEndpoint is the logical endpoint of one peer. WireGuard keeps it for
// the peer (roaming is off); where packets really go is its current path.
type peerEndpoint struct {
	key  identity.PublicKey
	path atomic.Pointer[route] // nil: no path, packets are held
	// via, when set, is the peer relaying for this one (SetVia): it wins
	// over path while via has a direct path.
	via atomic.Pointer[peerEndpoint]

	mu      sync.Mutex // guards pending and passive; orders holds and flushes
	pending [][]byte
	passive bool
}

var _ conn.Endpoint = (*peerEndpoint)(nil)

func (e *peerEndpoint) ClearSrc()           {}
func (e *peerEndpoint) SrcToString() string { return "" }
func (e *peerEndpoint) DstToString() string {
	if p := e.path.Load(); p != nil && p.Direct.IsValid() {
		return p.Direct.String()
	}
	return endpointPrefix + e.key.Hex()
}

// DstToBytes feeds WireGuard's cookie MAC; it only needs to be stable per
// peer while the path holds.
func (e *peerEndpoint) DstToBytes() []byte {
	if p := e.path.Load(); p != nil && p.Direct.IsValid() {
		b, _ := p.Direct.MarshalBinary()
		return b
	}
	return e.key[:]
}

func (e *peerEndpoint) DstIP() netip.Addr {
	if p := e.path.Load(); p != nil && p.Direct.IsValid() {
		return p.Direct.Addr()
	}
	return netip.Addr{}
}

func (e *peerEndpoint) SrcIP() netip.Addr { return netip.Addr{} }

// holdLocked keeps a copy of pkts until the peer has a path, dropping the
// oldest. e.mu must be held.
func (e *peerEndpoint) holdLocked(pkts [][]byte) {
	for _, p := range pkts {
		if len(e.pending) == maxPending {
			copy(e.pending, e.pending[1:])
			e.pending = e.pending[:maxPending-1]
		}
		e.pending = append(e.pending, append([]byte(nil), p...))
	}
}

// addrEndpoint is a plain remote address: packets from sources that are no
// peer's current path, and endpoints given as ip:port.
type addrEndpoint struct{ dst netip.AddrPort }

func (e addrEndpoint) ClearSrc()           {}
func (e addrEndpoint) SrcToString() string { return "" }
func (e addrEndpoint) DstToString() string { return e.dst.String() }
func (e addrEndpoint) DstToBytes() []byte {
	b, _ := e.dst.MarshalBinary()
	return b
}
func (e addrEndpoint) DstIP() netip.Addr { return e.dst.Addr() }
func (e addrEndpoint) SrcIP() netip.Addr { return netip.Addr{} }

// EndpointFor is the endpoint string to give WireGuard for peer.
func (b *Bind) EndpointFor(peer identity.PublicKey) string {
	return endpointPrefix + peer.Hex()
}

// ParseEndpoint accepts EndpointFor strings and plain ip:port.
func (b *Bind) ParseEndpoint(s string) (conn.Endpoint, error) {
	if hexKey, ok := strings.CutPrefix(s, endpointPrefix); ok {
		key, err := parseHexKey(hexKey)
		if err != nil {
			return nil, fmt.Errorf("bad punchd endpoint %q: %w", s, err)
		}
		return b.peer(key), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, fmt.Errorf("bad endpoint %q: %w", s, err)
	}
	return addrEndpoint{dst: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())}, nil
}

func parseHexKey(s string) (identity.PublicKey, error) {
	var key identity.PublicKey
	raw, err := hex.DecodeString(s)
	if err != nil {
		return key, err
	}
	if len(raw) != len(key) {
		return key, fmt.Errorf("key is %d bytes, want %d", len(raw), len(key))
	}
	copy(key[:], raw)
	return key, nil
}

var errNoSocket = errors.New("tunnel socket is not open")
