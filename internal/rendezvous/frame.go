// Package rendezvous is where peers meet: a WebSocket signaling server and
// its client. The server routes sealed messages between registered peers
// and tells them who is online; it can neither read nor forge what peers
// say to each other (see internal/sealed), and registration proves possession of
// the private key (internal/sealed, auth.go).
package rendezvous

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
	typeChallenge  = "challenge"  // server: prove you hold your key
	typeRegister   = "register"   // client: my ID and the proof
	typeRegistered = "registered" // server: welcome, here are ICE servers
	typeWatch      = "watch"      // client: tell me about these peers
	typePresence   = "presence"   // server: a watched peer came or went
	typeSend       = "send"       // client: deliver this sealed payload
	typeRecv       = "recv"       // server: a sealed payload for you
	typeError      = "error"      // either: what went wrong
	typeJoin       = "join"       // client: subscribe me to these group topics
	typeAnnounce   = "announce"   // client: pass this sealed announcement to the topic
	typeAnnounced  = "announced"  // server: a sealed announcement on a topic you joined
)

// Error codes in error frames.
const (
	codeBadFrame     = "bad-frame"
	codeVersion      = "version"
	codeAuth         = "auth-failed"
	codePeerOffline  = "peer-offline"
	codeRateLimited  = "rate-limited"
	codeTooManyPeers = "too-many-peers"
	codeReplaced     = "replaced"
	codeTopicFull    = "topic-full"
	codeNotJoined    = "not-joined"
	codeNotWatched   = "not-watched" // send to an ID the sender does not watch
	codePeerBusy     = "peer-busy"   // the recipient's queue is full
)

type frame struct {
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
	errBadFrame = errors.New("bad frame")
	// errVersion is a frame of another protocol version: nothing more
	// can be said to that side, so it ends the connection.
	errVersion = errors.New("protocol version mismatch")
)

func versionError(v int) error {
	upgrade := "the other side"
	switch {
	case v < Version:
		upgrade = "the other side (it is older)"
	case v > Version:
		upgrade = "this punchd (it is older)"
	}
	return fmt.Errorf("%w: %w: frame version %d, this side speaks %d; upgrade %s so both run the same punchd release", errBadFrame, errVersion, v, Version, upgrade)
}

// maxWatch bounds how many peers one client may watch.
const maxWatch = 1024

// decodeFrame parses and checks a frame's shape; it never panics.
func decodeFrame(b []byte) (frame, error) {
	var f frame
	if err := json.Unmarshal(b, &f); err != nil {
		return f, fmt.Errorf("%w: %v", errBadFrame, err)
	}
	if f.V != Version {
		return f, versionError(f.V)
	}
	switch f.Type {
	case typeChallenge:
		if len(f.ServerKey) != 32 || len(f.Nonce) != sealed.ChallengeNonce {
			return f, fmt.Errorf("%w: challenge needs a 32-byte key and %d-byte nonce", errBadFrame, sealed.ChallengeNonce)
		}
	case typeRegister:
		if f.ID == "" || len(f.Proof) != sealed.ProofSize {
			return f, fmt.Errorf("%w: register needs id and proof", errBadFrame)
		}
	case typeWatch:
		if len(f.IDs) > maxWatch {
			return f, fmt.Errorf("%w: watch of %d ids (max %d)", errBadFrame, len(f.IDs), maxWatch)
		}
	case typeSend:
		if f.To == "" || len(f.Payload) == 0 {
			return f, fmt.Errorf("%w: send needs to and payload", errBadFrame)
		}
	case typeRecv:
		if f.From == "" || len(f.Payload) == 0 {
			return f, fmt.Errorf("%w: recv needs from and payload", errBadFrame)
		}
	case typePresence:
		if f.ID == "" {
			return f, fmt.Errorf("%w: presence needs id", errBadFrame)
		}
	case typeJoin:
		if len(f.Topics) > maxTopicsPerClient {
			return f, fmt.Errorf("%w: join of %d topics (max %d)", errBadFrame, len(f.Topics), maxTopicsPerClient)
		}
		for _, t := range f.Topics {
			if !validTopic(t) {
				return f, fmt.Errorf("%w: join: topic %q is not 64 hex digits", errBadFrame, t)
			}
		}
	case typeAnnounce, typeAnnounced:
		if !validTopic(f.Topic) || len(f.Payload) == 0 || len(f.Payload) > maxAnnounceBytes {
			return f, fmt.Errorf("%w: %s needs a topic and a payload of 1..%d bytes", errBadFrame, f.Type, maxAnnounceBytes)
		}
	case typeRegistered, typeError:
	default:
		return f, fmt.Errorf("%w: unknown type %q", errBadFrame, f.Type)
	}
	return f, nil
}

func encodeFrame(f frame) []byte {
	f.V = Version
	b, err := json.Marshal(f)
	if err != nil {
		panic("rendezvous: marshal frame: " + err.Error()) // plain fields only
	}
	return b
}
