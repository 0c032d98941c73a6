package birthday

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
)

// SignalKind is the "kind" of a birthday message in the peers' sealed
// signaling, next to ICE's offers and candidates.
const SignalKind = "birthday"

// Phases of the exchange:
//
//	go     hard -> easy: the spray is out; probe IP (the hard side's public
//	       address), predicted ports first, under Key for Session
//	result easy -> hard: Hit (or a miss) and the probes it took; for the
//	       hard side's log and status, it finds the hit itself
const (
	PhaseGo     = "go"
	PhaseResult = "result"
)

// Bounds on what a peer may send.
const (
	maxSignalBytes = 16 << 10
	maxPredicted   = MaxSockets + 64
)

// Signal is one birthday message. It travels sealed through the
// rendezvous, so only the peer can write it, but the peer may be buggy or
// of another version: Decode checks every field.
type Signal struct {
	V         int      `json:"v"`
	Kind      string   `json:"kind"`
	Phase     string   `json:"phase"`
	Session   string   `json:"session"`
	Key       string   `json:"key,omitempty"`
	IP        string   `json:"ip,omitempty"`
	Predicted []uint16 `json:"predicted,omitempty"`
	Hit       bool     `json:"hit,omitempty"`
	Probes    int      `json:"probes,omitempty"`
}

// signalVersion matches the ICE signals' envelope version.
const signalVersion = 1

var errBadSignal = errors.New("bad birthday signal from peer")

// GoSignal renders the hard side's go message.
func GoSignal(sess Session, key Key, ip netip.Addr, predicted []uint16) []byte {
	return encode(Signal{Phase: PhaseGo, Session: sess.String(), Key: base64.StdEncoding.EncodeToString(key[:]),
		IP: ip.String(), Predicted: predicted})
}

// ResultSignal renders the easy side's result.
func ResultSignal(sess Session, hit bool, probes int) []byte {
	return encode(Signal{Phase: PhaseResult, Session: sess.String(), Hit: hit, Probes: probes})
}

func encode(s Signal) []byte {
	s.V, s.Kind = signalVersion, SignalKind
	b, err := json.Marshal(s)
	if err != nil {
		panic("birthday: marshal signal: " + err.Error()) // plain fields only: cannot fail
	}
	return b
}

// IsSignal reports whether a signaling payload is a birthday message
// (without checking it further).
func IsSignal(b []byte) bool {
	var k struct {
		Kind string `json:"kind"`
	}
	return len(b) <= maxSignalBytes && json.Unmarshal(b, &k) == nil && k.Kind == SignalKind
}

// Decoded is a checked Signal.
type Decoded struct {
	Phase     string
	Session   Session
	Key       Key // go only
	IP        netip.Addr
	Predicted []uint16
	Hit       bool
	Probes    int
}

// DecodeSignal parses and checks a birthday message.
func DecodeSignal(b []byte) (Decoded, error) {
	var d Decoded
	if len(b) > maxSignalBytes {
		return d, fmt.Errorf("%w: %d bytes, limit %d", errBadSignal, len(b), maxSignalBytes)
	}
	var s Signal
	if err := json.Unmarshal(b, &s); err != nil {
		return d, fmt.Errorf("%w: %w", errBadSignal, err)
	}
	if s.V != signalVersion || s.Kind != SignalKind {
		return d, fmt.Errorf("%w: version %d kind %q", errBadSignal, s.V, s.Kind)
	}
	sess, err := hex.DecodeString(s.Session)
	if err != nil || len(sess) != len(d.Session) {
		return d, fmt.Errorf("%w: session %q", errBadSignal, s.Session)
	}
	copy(d.Session[:], sess)
	d.Phase = s.Phase
	switch s.Phase {
	case PhaseGo:
		key, err := base64.StdEncoding.DecodeString(s.Key)
		if err != nil || len(key) != len(d.Key) {
			return d, fmt.Errorf("%w: go without a 32-byte key", errBadSignal)
		}
		copy(d.Key[:], key)
		ip, err := netip.ParseAddr(s.IP)
		if err != nil || !ip.IsValid() || ip.IsUnspecified() || ip.IsMulticast() {
			return d, fmt.Errorf("%w: go with address %q", errBadSignal, s.IP)
		}
		d.IP = ip.Unmap()
		if len(s.Predicted) > maxPredicted {
			return d, fmt.Errorf("%w: %d predicted ports, limit %d", errBadSignal, len(s.Predicted), maxPredicted)
		}
		d.Predicted = s.Predicted
	case PhaseResult:
		if s.Probes < 0 || s.Probes > MaxProbes {
			return d, fmt.Errorf("%w: result with %d probes", errBadSignal, s.Probes)
		}
		d.Hit, d.Probes = s.Hit, s.Probes
	default:
		return d, fmt.Errorf("%w: unknown phase %q (is the peer a newer punchd?)", errBadSignal, s.Phase)
	}
	return d, nil
}
