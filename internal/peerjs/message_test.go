package peerjs

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestValidID(t *testing.T) {
	tests := []struct {
		id string
		ok bool
	}{
		{"alice", true},
		{"3f0c1b2e-8c1d-4c3a-9f0e-2b7d5a6c9e11", true},
		{"player one", true},
		{"a_b-c d", true},
		{"", false},
		{"-alice", false},
		{"alice-", false},
		{"a--b", false},
		{"a  b", false},
		{"a.b", false},
		{"a/b", false},
		{"ä", false},
		{strings.Repeat("a", MaxIDLen), true},
		{strings.Repeat("a", MaxIDLen+1), false},
	}
	for _, tt := range tests {
		if got := ValidID(tt.id); got != tt.ok {
			t.Errorf("ValidID(%q) = %v, want %v", tt.id, got, tt.ok)
		}
	}
}

func TestParseClientMessage(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Message // Type "" = refused
	}{
		{"heartbeat", `{"type":"HEARTBEAT"}`, Message{Type: TypeHeartbeat}},
		{"heartbeat drops the rest", `{"type":"HEARTBEAT","dst":"x","payload":{"a":1}}`, Message{Type: TypeHeartbeat}},
		{"offer", `{"type":"OFFER","dst":"bob","payload":{"sdp":{"type":"offer","sdp":"v=0"},"type":"data","connectionId":"dc_1"}}`,
			Message{Type: TypeOffer, Dst: "bob", Payload: json.RawMessage(`{"sdp":{"type":"offer","sdp":"v=0"},"type":"data","connectionId":"dc_1"}`)}},
		{"answer", `{"type":"ANSWER","dst":"bob","payload":{}}`, Message{Type: TypeAnswer, Dst: "bob", Payload: json.RawMessage(`{}`)}},
		{"candidate", `{"type":"CANDIDATE","dst":"bob","payload":{"candidate":{}}}`, Message{Type: TypeCandidate, Dst: "bob", Payload: json.RawMessage(`{"candidate":{}}`)}},
		{"claimed src is dropped", `{"type":"OFFER","src":"mallory","dst":"bob","payload":{}}`, Message{Type: TypeOffer, Dst: "bob", Payload: json.RawMessage(`{}`)}},
		{"leave without dst", `{"type":"LEAVE"}`, Message{Type: TypeLeave}},
		{"leave to a peer", `{"type":"LEAVE","dst":"bob"}`, Message{Type: TypeLeave, Dst: "bob"}},
		{"expire", `{"type":"EXPIRE","dst":"bob"}`, Message{Type: TypeExpire, Dst: "bob"}},
		{"null payload", `{"type":"ANSWER","dst":"bob","payload":null}`, Message{Type: TypeAnswer, Dst: "bob", Payload: json.RawMessage(`null`)}},
		{"offer without dst", `{"type":"OFFER","payload":{}}`, Message{}},
		{"offer to a bad id", `{"type":"OFFER","dst":"../x","payload":{}}`, Message{}},
		{"server-only type", `{"type":"OPEN"}`, Message{}},
		{"id-taken from a client", `{"type":"ID-TAKEN","dst":"bob"}`, Message{}},
		{"unknown type", `{"type":"HELLO","dst":"bob"}`, Message{}},
		{"lower case type", `{"type":"offer","dst":"bob"}`, Message{}},
		{"no type", `{"dst":"bob"}`, Message{}},
		{"string payload", `{"type":"OFFER","dst":"bob","payload":"x"}`, Message{}},
		{"array payload", `{"type":"OFFER","dst":"bob","payload":[1]}`, Message{}},
		{"not json", `hello`, Message{}},
		{"two messages", `{"type":"HEARTBEAT"}{"type":"HEARTBEAT"}`, Message{}},
		{"array", `[{"type":"HEARTBEAT"}]`, Message{}},
		{"type not a string", `{"type":1}`, Message{}},
		{"empty", ``, Message{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseClientMessage([]byte(tt.in))
			if tt.want.Type == "" {
				if err == nil {
					t.Fatalf("accepted: %+v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Type != tt.want.Type || got.Src != "" || got.Dst != tt.want.Dst || string(got.Payload) != string(tt.want.Payload) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// FuzzParseClientMessage: whatever a client sends, the parser returns a
// message the server can forward (encode must not panic, the result must
// parse again to the same thing) or an error.
func FuzzParseClientMessage(f *testing.F) {
	for _, s := range []string{`{"type":"HEARTBEAT"}`, `{"type":"OFFER","dst":"bob","payload":{"sdp":"x"}}`, `{"type":"LEAVE"}`, `{"type":"CANDIDATE","dst":"a b","payload":null}`, `{"type":"EXPIRE","dst":"x","payload":{"a":[1,2,{"b":"\u0000"}]}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseClientMessage(b)
		if err != nil {
			return
		}
		m.Src = "sender"
		out := encode(m)
		again, err := ParseClientMessage(out)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", out, err)
		}
		if again.Type != m.Type || again.Dst != m.Dst {
			t.Fatalf("round trip changed %+v into %+v", m, again)
		}
	})
}
