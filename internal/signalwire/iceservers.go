package signalwire

import (
	"fmt"

	"github.com/pion/stun/v4"
)

// The rendezvous tells each client which STUN and TURN servers to use, and
// every daemon treats it as hostile: a server list is where it could make
// daemons send STUN from their WireGuard socket, or open TCP/TLS
// connections, to any host it likes, by the thousand. So a list is cut to
// a few well-formed entries before anything uses it.
const (
	MaxSTUNServers = 4 // STUN servers taken from one registration
	// MaxTURNServers fits a rendezvous with IPv4 and IPv6 that offers
	// TURN over UDP, TCP and TLS on each family.
	MaxTURNServers = 6
	maxICEURL      = 256 // bytes of one URL
	maxICESecret   = 256 // bytes of a user name or credential
)

// SaneICEServers keeps the first MaxSTUNServers stun: and MaxTURNServers
// turn:/turns: servers of in that parse (pion's own parser) and are of
// sane size, without duplicates; refused says what was left out and why.
func SaneICEServers(in []ICEServer) (kept []ICEServer, refused []string) {
	var nSTUN, nTURN int
	seen := make(map[ICEServer]bool)
	for i, s := range in {
		if len(refused) > 8 {
			refused = append(refused, fmt.Sprintf("%d more entries not looked at", len(in)-i))
			break
		}
		why := iceServerProblem(s)
		if why == "" && seen[s] {
			why = "duplicate"
		}
		if why == "" {
			u, _ := stun.ParseURI(s.URL) // checked by iceServerProblem
			switch u.Scheme {
			case stun.SchemeTypeSTUN:
				if nSTUN++; nSTUN > MaxSTUNServers {
					why = fmt.Sprintf("more than %d STUN servers", MaxSTUNServers)
				}
			default:
				if nTURN++; nTURN > MaxTURNServers {
					why = fmt.Sprintf("more than %d TURN servers", MaxTURNServers)
				}
			}
		}
		if why != "" {
			refused = append(refused, fmt.Sprintf("%.80q: %s", s.URL, why))
			continue
		}
		seen[s] = true
		kept = append(kept, s)
	}
	return kept, refused
}

func iceServerProblem(s ICEServer) string {
	if len(s.URL) > maxICEURL {
		return fmt.Sprintf("URL longer than %d bytes", maxICEURL)
	}
	if len(s.Username) > maxICESecret || len(s.Credential) > maxICESecret {
		return fmt.Sprintf("user name or credential longer than %d bytes", maxICESecret)
	}
	u, err := stun.ParseURI(s.URL)
	if err != nil {
		return "not a STUN/TURN URL: " + err.Error()
	}
	if u.Port < 1 || u.Port > 65535 {
		return fmt.Sprintf("port %d out of range", u.Port)
	}
	switch u.Scheme {
	case stun.SchemeTypeSTUN:
	case stun.SchemeTypeTURN, stun.SchemeTypeTURNS:
		if s.Username == "" || s.Credential == "" {
			return "TURN server without credentials"
		}
	default:
		return "scheme " + u.Scheme.String() + " not used (only stun:, turn: and turns:)"
	}
	return ""
}

// HasSTUN reports whether servers include a STUN server.
func HasSTUN(servers []ICEServer) bool {
	for _, s := range servers {
		if u, err := stun.ParseURI(s.URL); err == nil && u.Scheme == stun.SchemeTypeSTUN {
			return true
		}
	}
	return false
}
