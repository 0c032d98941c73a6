package icepeer

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/pion/ice/v4"
	"github.com/punchd/punchd/internal/natkind"
)

// Signal messages between the ICE sides of two peers. They travel sealed
// through the rendezvous, so only the peer can write them, but that peer
// may be buggy or of another version: every field is checked.
//
//	offer     controlling -> controlled: attempt gen and its ICE credentials
//	answer    controlled  -> controlling: our credentials for attempt gen
//	candidate either way: one trickled candidate (ice.Candidate.Marshal)
//	hello     controlled  -> controlling: "send me an offer". Seen is the
//	          last gen the controlled side took (0: none); Failed says that
//	          attempt failed on its side.
//	nat       either way: the sender's NAT type, as its RFC 5780 probe
//	          found it, so that each side can say why a path is relayed;
//	          offers, answers and hellos carry it too, once known.
//
// gen names one attempt (one agent on each side); anything of another gen
// than the current one is dropped.
type signalMsg struct {
	V         int    `json:"v"`
	Kind      string `json:"kind"`
	Gen       uint64 `json:"gen,omitempty"`
	Ufrag     string `json:"ufrag,omitempty"`
	Pwd       string `json:"pwd,omitempty"`
	Candidate string `json:"candidate,omitempty"`
	Seen      uint64 `json:"seen,omitempty"`
	Failed    bool   `json:"failed,omitempty"`
	NAT       string `json:"nat,omitempty"`
}

const signalVersion = 1

const (
	kindOffer     = "offer"
	kindAnswer    = "answer"
	kindCandidate = "candidate"
	kindHello     = "hello"
	kindNAT       = "nat"
)

// Bounds on what a peer may send. A candidate line is ~100 bytes; RFC 8445
// allows credentials up to 256 characters.
const (
	maxSignalBytes    = 4 << 10
	maxCandidateBytes = 1 << 10
	maxCredential     = 256
)

var errBadSignal = errors.New("bad ICE signal from peer")

func decodeSignal(b []byte) (signalMsg, error) {
	var m signalMsg
	if len(b) > maxSignalBytes {
		return signalMsg{}, fmt.Errorf("%w: %d bytes, limit %d", errBadSignal, len(b), maxSignalBytes)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return signalMsg{}, fmt.Errorf("%w: %w", errBadSignal, err)
	}
	if m.V != signalVersion {
		return signalMsg{}, fmt.Errorf("%w: version %d, this punchd speaks %d (upgrade the older side)", errBadSignal, m.V, signalVersion)
	}
	switch m.Kind {
	case kindOffer, kindAnswer:
		// RFC 8445 §5.3: ufrag at least 4 and pwd at least 22 characters.
		if m.Gen == 0 || len(m.Ufrag) < 4 || len(m.Ufrag) > maxCredential || len(m.Pwd) < 22 || len(m.Pwd) > maxCredential {
			return signalMsg{}, fmt.Errorf("%w: %s without a valid gen and credentials", errBadSignal, m.Kind)
		}
	case kindCandidate:
		if m.Gen == 0 || m.Candidate == "" || len(m.Candidate) > maxCandidateBytes {
			return signalMsg{}, fmt.Errorf("%w: candidate without gen or body", errBadSignal)
		}
		if _, err := ice.UnmarshalCandidate(m.Candidate); err != nil {
			return signalMsg{}, fmt.Errorf("%w: candidate %q: %w", errBadSignal, m.Candidate, err)
		}
	case kindHello:
	case kindNAT:
		if m.NAT == "" {
			return signalMsg{}, fmt.Errorf("%w: nat message without a NAT type", errBadSignal)
		}
	default:
		return signalMsg{}, fmt.Errorf("%w: unknown kind %q (is the peer a newer punchd?)", errBadSignal, m.Kind)
	}
	if m.NAT != "" && !slices.Contains(append(natkind.NATTypes(), natkind.TypeUnknown), natkind.NATType(m.NAT)) {
		return signalMsg{}, fmt.Errorf("%w: unknown NAT type %q", errBadSignal, m.NAT)
	}
	return m, nil
}

func encodeSignal(m signalMsg) []byte {
	m.V = signalVersion
	b, err := json.Marshal(m)
	if err != nil {
		panic("nat: marshal signal: " + err.Error()) // plain fields only: cannot fail
	}
	return b
}
