// Package signalwire is the wire vocabulary of punchd's signaling: the
// JSON frames client and rendezvous server exchange (types, error codes,
// the shape check every received frame passes before it is acted on) and
// the sanity rules for the ICE server list a hostile rendezvous may offer.
// Both rvclient.Client and rendezvous.Server speak it; the cryptography
// inside the frames (proof, sealed payloads) is internal/sealed's.
package signalwire

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/punchd/punchd/internal/sealed"
)

// Version is in every frame; a server refuses frames of another version
// with an error that says which side to upgrade. Version 2: registration
// and sealing are Noise protocols (internal/sealed); a version 1 side
// would misread every proof and sealed message, so the two never talk.
const Version = 2

// Frame types.
const (
	TypeChallenge  = "challenge"  // server: prove you hold your key
	TypeRegister   = "register"   // client: my ID and the proof
	TypeRegistered = "registered" // server: welcome, here are ICE servers
	TypeWatch      = "watch"      // client: tell me about these peers
	TypePresence   = "presence"   // server: a watched peer came or went
	TypeSend       = "send"       // client: deliver this sealed payload
	TypeRecv       = "recv"       // server: a sealed payload for you
	TypeError      = "error"      // either: what went wrong
	TypeJoin       = "join"       // client: subscribe me to these group topics
	TypeAnnounce   = "announce"   // client: pass this sealed announcement to the topic
	TypeAnnounced  = "announced"  // server: a sealed announcement on a topic you joined
)

// Error codes in error frames.
const (
	CodeBadFrame     = "bad-frame"
	CodeVersion      = "version"
	CodeAuth         = "auth-failed"
	CodePeerOffline  = "peer-offline"
	CodeRateLimited  = "rate-limited"
	CodeTooManyPeers = "too-many-peers"
	CodeReplaced     = "replaced"
	CodeTopicFull    = "topic-full"
	CodeNotJoined    = "not-joined"
	CodeNotWatched   = "not-watched" // send to an ID the sender does not watch
	CodePeerBusy     = "peer-busy"   // the recipient's queue is full
)

// Frame is one signaling message; which fields are set depends on Type.
type Frame struct {
	V    int    `json:"v"`
	Type string `json:"type"`

	// challenge
	ServerKey []byte `json:"server_key,omitempty"`
	Nonce     []byte `json:"nonce,omitempty"`
	// register
	ID    string `json:"id,omitempty"`
	Proof []byte `json:"proof,omitempty"`
	// registered
	ICEServers []ICEServer `json:"ice_servers,omitempty"`
	// watch
	IDs []string `json:"ids,omitempty"`
	// presence (ID), send (To), recv (From)
	Online  bool   `json:"online,omitempty"`
	To      string `json:"to,omitempty"`
	From    string `json:"from,omitempty"`
	Payload []byte `json:"payload,omitempty"`
	// join (Topics); announce, announced (Topic, Payload)
	Topics []string `json:"topics,omitempty"`
	Topic  string   `json:"topic,omitempty"`
	// error
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

// ICEServer is a STUN or TURN server as the rendezvous announces it; TURN
// entries carry time-limited credentials for the registered peer.
type ICEServer struct {
	URL        string `json:"url"`
	Username   string `json:"username,omitempty"`
	Credential string `json:"credential,omitempty"`
}

var (
	// ErrBadFrame wraps every reason Decode refuses a frame.
	ErrBadFrame = errors.New("bad frame")
	// ErrVersion is a frame of another protocol version: nothing more
	// can be said to that side, so it ends the connection.
	ErrVersion = errors.New("protocol version mismatch")
)

func versionError(v int) error {
	upgrade := "the other side"
	switch {
	case v < Version:
		upgrade = "the other side (it is older)"
	case v > Version:
		upgrade = "this punchd (it is older)"
	}
	return fmt.Errorf("%w: %w: frame version %d, this side speaks %d; upgrade %s so both run the same punchd release", ErrBadFrame, ErrVersion, v, Version, upgrade)
}

// maxWatch bounds how many peers one client may watch.
const maxWatch = 1024

// Decode parses and checks a frame's shape; it never panics.
func Decode(b []byte) (Frame, error) {
	var f Frame
	if err := json.Unmarshal(b, &f); err != nil {
		return f, fmt.Errorf("%w: %v", ErrBadFrame, err)
	}
	if f.V != Version {
		return f, versionError(f.V)
	}
	switch f.Type {
	case TypeChallenge:
		if len(f.ServerKey) != 32 || len(f.Nonce) != sealed.ChallengeNonce {
			return f, fmt.Errorf("%w: challenge needs a 32-byte key and %d-byte nonce", ErrBadFrame, sealed.ChallengeNonce)
		}
	case TypeRegister:
		if f.ID == "" || len(f.Proof) != sealed.ProofSize {
			return f, fmt.Errorf("%w: register needs id and proof", ErrBadFrame)
		}
	case TypeWatch:
		if len(f.IDs) > maxWatch {
			return f, fmt.Errorf("%w: watch of %d ids (max %d)", ErrBadFrame, len(f.IDs), maxWatch)
		}
	case TypeSend:
		if f.To == "" || len(f.Payload) == 0 {
			return f, fmt.Errorf("%w: send needs to and payload", ErrBadFrame)
		}
	case TypeRecv:
		if f.From == "" || len(f.Payload) == 0 {
			return f, fmt.Errorf("%w: recv needs from and payload", ErrBadFrame)
		}
	case TypePresence:
		if f.ID == "" {
			return f, fmt.Errorf("%w: presence needs id", ErrBadFrame)
		}
	case TypeJoin:
		if len(f.Topics) > MaxTopicsPerClient {
			return f, fmt.Errorf("%w: join of %d topics (max %d)", ErrBadFrame, len(f.Topics), MaxTopicsPerClient)
		}
		for _, t := range f.Topics {
			if !validTopic(t) {
				return f, fmt.Errorf("%w: join: topic %q is not 64 hex digits", ErrBadFrame, t)
			}
		}
	case TypeAnnounce, TypeAnnounced:
		if !validTopic(f.Topic) || len(f.Payload) == 0 || len(f.Payload) > MaxAnnounceBytes {
			return f, fmt.Errorf("%w: %s needs a topic and a payload of 1..%d bytes", ErrBadFrame, f.Type, MaxAnnounceBytes)
		}
	case TypeRegistered, TypeError:
	default:
		return f, fmt.Errorf("%w: unknown type %q", ErrBadFrame, f.Type)
	}
	return f, nil
}

// Encode marshals f as a frame of this Version.
func Encode(f Frame) []byte {
	f.V = Version
	b, err := json.Marshal(f)
	if err != nil {
		panic("signalwire: marshal frame: " + err.Error()) // plain fields only
	}
	return b
}
