package signalwire

import (
	"fmt"
	"strings"
	"testing"
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
		{"seven TURN", turnN(7), 6, 1},
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
