package rendezvous

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/punchd/punchd/internal/identity"
	"github.com/punchd/punchd/internal/sealed"
)

func TestSaneICEServers(t *testing.T) {
	turn := func(url string) ICEServer { return ICEServer{URL: url, Username: "1:x", Credential: "p"} }
	stunN := func(n int) []ICEServer {
		var out []ICEServer
		for i := range n {
			out = append(out, ICEServer{URL: fmt.Sprintf("stun:192.0.2.%d:3478", i+1)})
		}
		return out
	}
	turnN := func(n int) []ICEServer {
		var out []ICEServer
		for i := range n {
			out = append(out, turn(fmt.Sprintf("turn:192.0.2.%d:3478?transport=tcp", i+1)))
		}
		return out
	}
	cases := []struct {
		name        string
		in          []ICEServer
		kept, nRefd int
	}{
		{"ordinary", []ICEServer{{URL: "stun:rv.example:3478"}, turn("turn:rv.example:3478?transport=udp"), turn("turns:rv.example:5349?transport=tcp")}, 3, 0},
		{"thousands of STUN", stunN(5000), 4, 10},
		{"five TURN", turnN(5), 4, 1},
		{"four of each", append(stunN(4), turnN(4)...), 8, 0},
		{"http scheme", []ICEServer{{URL: "http://192.0.2.1/"}}, 0, 1},
		{"stuns scheme", []ICEServer{{URL: "stuns:192.0.2.1:5349"}}, 0, 1},
		{"empty", []ICEServer{{URL: ""}}, 0, 1},
		{"long URL", []ICEServer{{URL: "stun:" + strings.Repeat("a", 300) + ".example:3478"}}, 0, 1},
		{"long credential", []ICEServer{{URL: "turn:192.0.2.1:3478", Username: "u", Credential: strings.Repeat("p", 300)}}, 0, 1},
		{"TURN without credentials", []ICEServer{{URL: "turn:192.0.2.1:3478"}}, 0, 1},
		{"STUN with a query", []ICEServer{{URL: "stun:192.0.2.1:3478?transport=tcp"}}, 0, 1},
		{"bad port", []ICEServer{{URL: "stun:192.0.2.1:99999"}}, 0, 1},
		{"duplicate", []ICEServer{{URL: "stun:192.0.2.1:3478"}, {URL: "stun:192.0.2.1:3478"}}, 1, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			kept, refused := SaneICEServers(c.in)
			if len(kept) != c.kept || len(refused) != c.nRefd {
				t.Fatalf("kept %d refused %d (%v), want %d and %d", len(kept), len(refused), refused, c.kept, c.nRefd)
			}
		})
	}
}

func TestHasSTUN(t *testing.T) {
	for _, c := range []struct {
		in   []ICEServer
		want bool
	}{
		{nil, false},
		{[]ICEServer{{URL: "turn:192.0.2.1:3478", Username: "u", Credential: "p"}}, false},
		{[]ICEServer{{URL: "stun:192.0.2.1:3478"}}, true},
	} {
		if got := HasSTUN(c.in); got != c.want {
			t.Errorf("HasSTUN(%v) = %v", c.in, got)
		}
	}
}

// FuzzClientFrames feeds a client what a hostile rendezvous could send: it
// never panics, never hands on more ICE servers than the caps or one that
// does not parse, and never delivers a message (the fuzzer holds no key
// the client accepts).
func FuzzClientFrames(f *testing.F) {
	self, peer := newKey(f), newKey(f)
	reg := func(servers []ICEServer) []byte {
		return encodeFrame(frame{Type: typeRegistered, ICEServers: servers})
	}
	many := make([]ICEServer, 50)
	for i := range many {
		many[i] = ICEServer{URL: fmt.Sprintf("stun:10.0.0.%d:%d", i, 1000+i)}
	}
	f.Add(reg([]ICEServer{{URL: "stun:rv.example:3478"}, {URL: "turn:rv.example:3478", Username: "1:x", Credential: "p"}}))
	f.Add(reg(many))
	f.Add(encodeFrame(frame{Type: typePresence, ID: peer.PublicKey().String(), Online: true}))
	f.Add(encodeFrame(frame{Type: typeRecv, From: peer.PublicKey().String(), Payload: make([]byte, 120)}))
	f.Add(encodeFrame(frame{Type: typeError, Code: codeRateLimited}))
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
				if nSTUN > MaxSTUNServers || nTURN > MaxTURNServers {
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
		return encodeFrame(frame{Type: typeRecv, From: from.PublicKey().String(), Payload: payload})
	}
	c.handleBytes(recv(peer, good))
	c.handleBytes(recv(peer, good)) // replay
	c.handleBytes(recv(stranger, mustSeal(t, sealed.NewSealer(stranger, nil), self.PublicKey(), []byte("x"), now)))
	c.handleBytes(recv(peer, []byte("garbage that is not sealed at all, long enough to look like it maybe.....")))
	c.handleBytes([]byte("{not json"))
	bad, _ := json.Marshal(frame{V: Version, Type: typeRegistered, ICEServers: []ICEServer{{URL: "http://x"}}})
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
