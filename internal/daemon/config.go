// Package daemon owns the life of `punchd up`: it wires the identity, the
// rendezvous client, one ICE peer per remote and the WireGuard device
// together, and answers the control socket. It holds no protocol logic of
// its own; that lives in the packages it wires.
package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"

	"github.com/punchd/punchd/internal/birthday"
	"github.com/punchd/punchd/internal/icepeer"
	"github.com/punchd/punchd/internal/identity"
	"github.com/punchd/punchd/internal/network"
)

// Peer is one remote host this daemon links to.
type Peer struct {
	Key   identity.PublicKey
	Alias string // from the config file's peers map; empty when given as an ID
}

// Config is everything `punchd up` needs; cmd/punchd fills it from flags,
// environment and config file.
type Config struct {
	Key             identity.PrivateKey
	Interface       string
	MTU             int
	ListenPort      uint16 // 0: the kernel picks, so several daemons can share a host
	OverlayPrefixes []netip.Prefix
	RendezvousURL   string
	Peers           []Peer
	// Network, when set, joins that network: every member announced on
	// it is linked like a --peer. Its rendezvous is used when
	// RendezvousURL is empty.
	Network *network.Code
	// Name is how this host is shown to the network's members.
	Name string
	// PeerRelay: carry traffic between two peers we reach directly when
	// they cannot punch, and send through such a peer ourselves when it
	// beats the TURN relay (see peerrelay.go).
	PeerRelay     bool
	ControlSocket string
	// TURN lists relays besides the rendezvous' own (e.g. a coturn).
	TURN []ExternalTURN
	// STUN lists STUN servers (stun:HOST:PORT) besides the rendezvous'.
	STUN []string
	// PinICEServers uses only STUN and TURN, never the servers the
	// rendezvous offers.
	PinICEServers bool
	// ForceRelay uses relay candidates only.
	ForceRelay bool
	// Birthday bounds birthday punching (symmetric x port-restricted);
	// NoBirthday turns it off.
	Birthday   birthday.Config
	NoBirthday bool
	// NoPortMapping leaves the gateway alone: no UPnP/NAT-PMP/PCP
	// mapping of the tunnel port.
	NoPortMapping bool
	// DebugListen, when set, serves net/http/pprof there.
	DebugListen string
	// MetricsListen, when set, serves Prometheus metrics there (/metrics).
	MetricsListen string
	Logger        *slog.Logger
}

// ExternalTURN is a TURN server given with --turn: either a shared secret
// (coturn's use-auth-secret; credentials are made per attempt) or a fixed
// user and password.
type ExternalTURN struct {
	URL      string // turn:host:port[?transport=tcp] or turns:host:port
	Secret   string
	Username string
	Password string
}

// turnCredentialTTL is how long credentials made from a secret live;
// they are made fresh for every ICE attempt.
const turnCredentialTTL = 24 * time.Hour

func (t ExternalTURN) server(self identity.PublicKey) (icepeer.ICEServer, error) {
	if t.Secret == "" {
		return icepeer.ICEServer{URL: t.URL, Username: t.Username, Credential: t.Password}, nil
	}
	user, pass, err := turn.GenerateLongTermTURNRESTCredentials(t.Secret, self.String(), turnCredentialTTL)
	return icepeer.ICEServer{URL: t.URL, Username: user, Credential: pass}, err
}

// Validate checks what can be checked before starting.
func (t ExternalTURN) Validate() error {
	if _, err := stun.ParseURI(t.URL); err != nil || !strings.HasPrefix(t.URL, "turn") {
		return fmt.Errorf("bad --turn %q: want turn:HOST:PORT[?transport=tcp] or turns:HOST:PORT", t.URL)
	}
	if t.Secret == "" && (t.Username == "" || t.Password == "") {
		return fmt.Errorf("--turn %s needs --turn-secret, or --turn-user and --turn-password", t.URL)
	}
	return nil
}

// overlayPlan is the addresses every participant gets, derived from keys.
type overlayPlan struct {
	self  []netip.Prefix                        // our addresses with the overlay's prefix length
	peers map[identity.PublicKey][]netip.Prefix // host routes (/32, /128) per peer
}

// addressBook hands out the overlay addresses derived from keys and
// refuses collisions: two keys hashing to one address inside a small
// prefix would otherwise silently steal each other's traffic. Members of
// a network come and go, so addresses are claimed and released at run
// time; it is not safe for concurrent use.
type addressBook struct {
	prefixes []netip.Prefix
	owner    map[netip.Addr]string
	byKey    map[identity.PublicKey][]netip.Prefix
}

func newAddressBook(prefixes []netip.Prefix) (*addressBook, error) {
	if len(prefixes) == 0 {
		return nil, errors.New("no overlay prefix configured: set --overlay-prefix (e.g. 10.188.0.0/16)")
	}
	return &addressBook{prefixes: prefixes, owner: make(map[netip.Addr]string), byKey: make(map[identity.PublicKey][]netip.Prefix)}, nil
}

// claimSelf claims this host's addresses, with the overlay's prefix lengths.
func (b *addressBook) claimSelf(self identity.PublicKey) ([]netip.Prefix, error) {
	addrs, err := b.claim(self, "this host")
	if err != nil {
		return nil, err
	}
	out := make([]netip.Prefix, len(addrs))
	for i, a := range addrs {
		out[i] = netip.PrefixFrom(a.Addr(), b.prefixes[i].Bits())
	}
	return out, nil
}

// claim claims key's addresses and returns them as host routes.
func (b *addressBook) claim(key identity.PublicKey, who string) ([]netip.Prefix, error) {
	if _, dup := b.byKey[key]; dup {
		return nil, fmt.Errorf("peer %s is given twice", key)
	}
	var routes []netip.Prefix
	for _, pfx := range b.prefixes {
		a, err := identity.OverlayAddr(pfx, key)
		if err != nil {
			return nil, fmt.Errorf("overlay prefix %s: %w", pfx, err)
		}
		if prev, ok := b.owner[a]; ok {
			return nil, fmt.Errorf("overlay address %s collides for %s and %s: choose a larger --overlay-prefix", a, prev, who)
		}
		routes = append(routes, netip.PrefixFrom(a, a.BitLen()))
	}
	for _, r := range routes {
		b.owner[r.Addr()] = who
	}
	b.byKey[key] = routes
	return routes, nil
}

// release frees key's addresses.
func (b *addressBook) release(key identity.PublicKey) {
	for _, r := range b.byKey[key] {
		delete(b.owner, r.Addr())
	}
	delete(b.byKey, key)
}

// planOverlay claims the addresses of this host and the configured peers.
func planOverlay(self identity.PublicKey, peers []Peer, prefixes []netip.Prefix) (overlayPlan, *addressBook, error) {
	book, err := newAddressBook(prefixes)
	if err != nil {
		return overlayPlan{}, nil, err
	}
	plan := overlayPlan{peers: make(map[identity.PublicKey][]netip.Prefix, len(peers))}
	if plan.self, err = book.claimSelf(self); err != nil {
		return overlayPlan{}, nil, err
	}
	for _, p := range peers {
		if p.Key == self {
			return overlayPlan{}, nil, fmt.Errorf("--peer %s is this host's own ID", p.Key)
		}
		routes, err := book.claim(p.Key, "peer "+p.Key.Short())
		if err != nil {
			return overlayPlan{}, nil, err
		}
		plan.peers[p.Key] = routes
	}
	return plan, book, nil
}

// firstOf returns the first address of the given family, or the zero Addr.
func firstOf(prefixes []netip.Prefix, v4 bool) netip.Addr {
	for _, p := range prefixes {
		if p.Addr().Is4() == v4 {
			return p.Addr()
		}
	}
	return netip.Addr{}
}
