package peerjs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// MessageType is the "type" of a PeerServer message.
type MessageType string

// The message types of the PeerServer protocol. Clients send HEARTBEAT
// and the forwarded ones (OFFER, ANSWER, CANDIDATE, LEAVE, EXPIRE); the
// server sends OPEN, ID-TAKEN, ERROR and, for a peer that is gone,
// EXPIRE and LEAVE.
const (
	TypeOpen      MessageType = "OPEN"
	TypeLeave     MessageType = "LEAVE"
	TypeCandidate MessageType = "CANDIDATE"
	TypeOffer     MessageType = "OFFER"
	TypeAnswer    MessageType = "ANSWER"
	TypeExpire    MessageType = "EXPIRE"
	TypeHeartbeat MessageType = "HEARTBEAT"
	TypeIDTaken   MessageType = "ID-TAKEN"
	TypeError     MessageType = "ERROR"
)

// forwarded reports whether the server relays messages of type t to their
// dst.
func (t MessageType) forwarded() bool {
	switch t {
	case TypeOffer, TypeAnswer, TypeCandidate, TypeLeave, TypeExpire:
		return true
	}
	return false
}

// Message is one frame on the WebSocket. Payload stays raw: the server
// routes it and never looks inside (SDP and candidates are the peers'
// business).
type Message struct {
	Type    MessageType     `json:"type"`
	Src     string          `json:"src,omitempty"`
	Dst     string          `json:"dst,omitempty"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// MaxIDLen bounds peer IDs (PeerServer's own are 36-character UUIDs).
const MaxIDLen = 128

// ValidID is the peerjs client's own rule (letters and digits, single
// spaces, '_' or '-' between them), with a length bound.
func ValidID(id string) bool {
	if id == "" || len(id) > MaxIDLen {
		return false
	}
	prevSep := true // no separator first
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
			prevSep = false
		case c == ' ' || c == '_' || c == '-':
			if prevSep {
				return false
			}
			prevSep = true
		default:
			return false
		}
	}
	return !prevSep
}

// validToken accepts what peerjs clients make (base36 random strings) and
// anything else printable without spaces, up to 64 bytes.
func validToken(tok string) bool {
	if tok == "" || len(tok) > 64 {
		return false
	}
	for i := 0; i < len(tok); i++ {
		if tok[i] <= ' ' || tok[i] > '~' {
			return false
		}
	}
	return true
}

var errNotObject = errors.New("payload must be a JSON object")

// ParseClientMessage decodes a frame a client sent and checks it: a known
// client type, a valid dst for forwarded messages (LEAVE may omit it:
// "I am leaving"), an object (or null) payload. The src a client claims
// is dropped; the server sets it to the sender's ID.
func ParseClientMessage(b []byte) (Message, error) {
	var m Message
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&m); err != nil {
		return Message{}, fmt.Errorf("not a JSON message: %w", err)
	}
	if dec.More() {
		return Message{}, errors.New("trailing data after the JSON message")
	}
	m.Src = ""
	switch {
	case m.Type == TypeHeartbeat:
		return Message{Type: TypeHeartbeat}, nil
	case !m.Type.forwarded():
		return Message{}, fmt.Errorf("unknown message type %.32q", string(m.Type))
	case m.Dst == "" && m.Type == TypeLeave:
	case !ValidID(m.Dst):
		return Message{}, fmt.Errorf("%s: bad dst %.32q", m.Type, m.Dst)
	}
	if p := bytes.TrimSpace(m.Payload); len(p) > 0 && p[0] != '{' && !bytes.Equal(p, []byte("null")) {
		return Message{}, fmt.Errorf("%s: %w", m.Type, errNotObject)
	}
	return m, nil
}

// encode marshals a message the server sends.
func encode(m Message) []byte {
	b, err := json.Marshal(m)
	if err != nil {
		// Only a payload that is not valid JSON can fail, and payloads
		// come from ParseClientMessage, which decoded them.
		panic("peerjs: encode: " + err.Error())
	}
	return b
}

// errorMessage is ERROR with PeerServer's {"msg": ...} payload.
func errorMessage(msg string) []byte {
	p, _ := json.Marshal(struct {
		Msg string `json:"msg"`
	}{msg})
	return encode(Message{Type: TypeError, Payload: p})
}

// The texts PeerServer sends, which peerjs clients show to users.
const (
	msgInvalidKey    = "Invalid key provided"
	msgInvalidToken  = "Invalid token provided"
	msgInvalidID     = "Invalid id provided"
	msgNoParams      = "No id, token, or key supplied to websocket server"
	msgLimitExceeded = "Server has reached its concurrent user limit"
	msgIDTaken       = "ID is taken"
)
