package daemon

import (
	"fmt"
	"strings"

	"github.com/pion/stun/v4"

	"github.com/punchd/punchd/internal/icepeer"
	"github.com/punchd/punchd/internal/rvclient"
	"github.com/punchd/punchd/internal/signalwire"
)

// The rendezvous is untrusted, and the STUN/TURN servers it offers decide
// where a daemon sends STUN from its WireGuard socket and which hosts it
// opens TCP/TLS connections to. The client already cuts the list to a few
// well-formed entries (signalwire.SaneICEServers); here the user's own
// choice applies on top: --stun and --turn add servers, and
// --pin-ice-servers uses only those.

// ParseSTUN checks a --stun value; HOST:PORT means stun:HOST:PORT.
func ParseSTUN(v string) (string, error) {
	u := v
	if !strings.HasPrefix(u, "stun:") {
		u = "stun:" + u
	}
	parsed, err := stun.ParseURI(u)
	if err != nil || parsed.Scheme != stun.SchemeTypeSTUN || parsed.Port < 1 || parsed.Port > 65535 {
		return "", fmt.Errorf("bad --stun %q: want HOST:PORT or stun:HOST:PORT (e.g. stun.example.net:3478)", v)
	}
	return u, nil
}

// iceChoice is which servers the agents use given what the rendezvous
// offered (nil before the first registration).
type iceChoice struct {
	pinned bool
	stun   []string
	turn   []ExternalTURN
}

func (c iceChoice) servers(offered *rvclient.Registration, turnServer func(ExternalTURN) (icepeer.ICEServer, error)) (out []icepeer.ICEServer, skipped []error) {
	if offered != nil && !c.pinned {
		for _, s := range offered.ICEServers {
			out = append(out, icepeer.ICEServer{URL: s.URL, Username: s.Username, Credential: s.Credential})
		}
	}
	for _, u := range c.stun {
		out = append(out, icepeer.ICEServer{URL: u})
	}
	for _, t := range c.turn {
		s, err := turnServer(t)
		if err != nil {
			skipped = append(skipped, fmt.Errorf("external TURN server %s skipped: %w", t.URL, err))
			continue
		}
		out = append(out, s)
	}
	return out, skipped
}

// warnings is what `punchd status` says about the ICE servers.
func (c iceChoice) warnings(offered *rvclient.Registration) []string {
	if offered == nil || c.pinned {
		return nil
	}
	var w []string
	if !signalwire.HasSTUN(offered.ICEServers) {
		msg := "the rendezvous offers no STUN server: without one no server-reflexive candidates are found and most paths end up relayed (by the rendezvous' relay, which a hostile rendezvous would want); "
		if len(c.stun) > 0 {
			msg += "using the --stun servers instead"
		} else {
			msg += "give --stun HOST:PORT of a STUN server you trust"
		}
		w = append(w, msg)
	}
	if n := len(offered.Refused); n > 0 {
		w = append(w, fmt.Sprintf("left out %d ICE server entries the rendezvous offered (at most %d STUN and %d TURN servers, well-formed, are used): %s",
			n, signalwire.MaxSTUNServers, signalwire.MaxTURNServers, strings.Join(offered.Refused, "; ")))
	}
	return w
}
