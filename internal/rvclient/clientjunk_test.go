package rvclient

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/punchd/punchd/internal/identity"
	"github.com/punchd/punchd/internal/sealed"
	"github.com/punchd/punchd/internal/signalwire"
)

// FuzzClientFrames feeds a client what a hostile rendezvous could send: it
// never panics, never hands on more ICE servers than the caps or one that
// does not parse, and never delivers a message (the fuzzer holds no key
// the client accepts).
func FuzzClientFrames(f *testing.F) {
	self, peer := newKey(f), newKey(f)
	reg := func(servers []signalwire.ICEServer) []byte {
		return signalwire.Encode(signalwire.Frame{Type: signalwire.TypeRegistered, ICEServers: servers})
	}
	many := make([]signalwire.ICEServer, 50)
	for i := range many {
		many[i] = signalwire.ICEServer{URL: fmt.Sprintf("stun:10.0.0.%d:%d", i, 1000+i)}
	}
	f.Add(reg([]signalwire.ICEServer{{URL: "stun:rv.example:3478"}, {URL: "turn:rv.example:3478", Username: "1:x", Credential: "p"}}))
	f.Add(reg(many))
	f.Add(signalwire.Encode(signalwire.Frame{Type: signalwire.TypePresence, ID: peer.PublicKey().String(), Online: true}))
	f.Add(signalwire.Encode(signalwire.Frame{Type: signalwire.TypeRecv, From: peer.PublicKey().String(), Payload: make([]byte, 120)}))
	f.Add(signalwire.Encode(signalwire.Frame{Type: signalwire.TypeError, Code: signalwire.CodeRateLimited}))
	f.Add([]byte(`{"v":2,"type":"registered","ice_servers":[{"url":"turns:x:1?transport=tcp","username":"a","credential":"b"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c := newClient(ClientConfig{
			Key:   self,
			Watch: []identity.PublicKey{peer.PublicKey()},
			OnRegistered: func(r Registration) {
				var nSTUN, nTURN int
				for _, s := range r.ICEServers {
					u, err := stun.ParseURI(s.URL)
					if err != nil {
						t.Fatalf("handed on an ICE server that does not parse: %q", s.URL)
					}
					if u.Scheme == stun.SchemeTypeSTUN {
						nSTUN++
					} else {
						nTURN++
					}
				}
				if nSTUN > signalwire.MaxSTUNServers || nTURN > signalwire.MaxTURNServers {
					t.Fatalf("handed on %d STUN and %d TURN servers", nSTUN, nTURN)
				}
			},
			OnMessage: func(identity.PublicKey, []byte) { t.Fatal("delivered a message nobody sealed") },
		}, discardLogger())
		c.handleBytes(b)
	})
}

func TestClientDropsJunkCounted(t *testing.T) {
	self, peer, stranger := newKey(t), newKey(t), newKey(t)
	var got []string
	c := newClient(ClientConfig{Key: self, Watch: []identity.PublicKey{peer.PublicKey()},
		OnMessage: func(_ identity.PublicKey, b []byte) { got = append(got, string(b)) }}, discardLogger())
	now := time.Now()
	good := mustSeal(t, sealed.NewSealer(peer, nil), self.PublicKey(), []byte("offer"), now)
	recv := func(from identity.PrivateKey, payload []byte) []byte {
		return signalwire.Encode(signalwire.Frame{Type: signalwire.TypeRecv, From: from.PublicKey().String(), Payload: payload})
	}
	c.handleBytes(recv(peer, good))
	c.handleBytes(recv(peer, good)) // replay
	c.handleBytes(recv(stranger, mustSeal(t, sealed.NewSealer(stranger, nil), self.PublicKey(), []byte("x"), now)))
	c.handleBytes(recv(peer, []byte("garbage that is not sealed at all, long enough to look like it maybe.....")))
	c.handleBytes([]byte("{not json"))
	bad, _ := json.Marshal(signalwire.Frame{V: signalwire.Version, Type: signalwire.TypeRegistered, ICEServers: []signalwire.ICEServer{{URL: "http://x"}}})
	c.handleBytes(bad)
	if len(got) != 1 || got[0] != "offer" {
		t.Fatalf("delivered %q", got)
	}
	want := map[string]uint64{JunkReplay: 1, JunkUnknownSender: 1, JunkBadSeal: 1, JunkBadFrame: 1, JunkBadICEServer: 1}
	d := c.Dropped()
	for k, v := range want {
		if d[k] != v {
			t.Errorf("%s: %d, want %d (all: %v)", k, d[k], v, d)
		}
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
