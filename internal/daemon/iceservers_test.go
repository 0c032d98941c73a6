package daemon

import (
	"errors"
	"strings"
	"testing"

	"github.com/punchd/punchd/internal/icepeer"
	"github.com/punchd/punchd/internal/rvclient"
	"github.com/punchd/punchd/internal/signalwire"
)

func TestParseSTUN(t *testing.T) {
	for _, c := range []struct{ in, want, err string }{
		{"stun.example.net:3478", "stun:stun.example.net:3478", ""},
		{"stun:192.0.2.1:3478", "stun:192.0.2.1:3478", ""},
		{"[2001:db8::1]:3478", "stun:[2001:db8::1]:3478", ""},
		{"turn:192.0.2.1:3478", "", "bad --stun"},
		{"stun:192.0.2.1:0", "", "bad --stun"},
		{"stun:192.0.2.1:3478?transport=tcp", "", "bad --stun"},
		{"", "", "bad --stun"},
	} {
		got, err := ParseSTUN(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseSTUN(%q) = %q, %v; want error %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ParseSTUN(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func TestICEChoice(t *testing.T) {
	offered := &rvclient.Registration{ICEServers: []signalwire.ICEServer{
		{URL: "stun:rv.example:3478"},
		{URL: "turn:rv.example:3478?transport=udp", Username: "1:x", Credential: "p"},
	}}
	noSTUN := &rvclient.Registration{ICEServers: []signalwire.ICEServer{
		{URL: "turn:rv.example:3478?transport=udp", Username: "1:x", Credential: "p"},
	}, Refused: []string{`"http://x": scheme`}}
	turn := ExternalTURN{URL: "turn:coturn.example:3478", Username: "u", Password: "p"}
	makeTURN := func(t ExternalTURN) (icepeer.ICEServer, error) {
		return icepeer.ICEServer{URL: t.URL, Username: t.Username, Credential: t.Password}, nil
	}
	cases := []struct {
		name     string
		choice   iceChoice
		offered  *rvclient.Registration
		urls     []string
		warnings []string // substrings, one per warning
	}{
		{"rendezvous only", iceChoice{}, offered, []string{"stun:rv.example:3478", "turn:rv.example:3478?transport=udp"}, nil},
		{"before registering", iceChoice{stun: []string{"stun:mine:3478"}}, nil, []string{"stun:mine:3478"}, nil},
		{"added", iceChoice{stun: []string{"stun:mine:3478"}, turn: []ExternalTURN{turn}}, offered,
			[]string{"stun:rv.example:3478", "turn:rv.example:3478?transport=udp", "stun:mine:3478", "turn:coturn.example:3478"}, nil},
		{"pinned", iceChoice{pinned: true, stun: []string{"stun:mine:3478"}}, noSTUN, []string{"stun:mine:3478"}, nil},
		{"no STUN offered", iceChoice{}, noSTUN, []string{"turn:rv.example:3478?transport=udp"},
			[]string{"offers no STUN server", "left out 1 ICE server"}},
		{"no STUN offered, own STUN", iceChoice{stun: []string{"stun:mine:3478"}}, noSTUN,
			[]string{"turn:rv.example:3478?transport=udp", "stun:mine:3478"}, []string{"using the --stun servers instead", "left out 1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			servers, skipped := c.choice.servers(c.offered, makeTURN)
			if len(skipped) > 0 {
				t.Fatal(skipped)
			}
			var urls []string
			for _, s := range servers {
				urls = append(urls, s.URL)
			}
			if strings.Join(urls, " ") != strings.Join(c.urls, " ") {
				t.Fatalf("servers %v, want %v", urls, c.urls)
			}
			w := c.choice.warnings(c.offered)
			if len(w) != len(c.warnings) {
				t.Fatalf("warnings %q, want %d", w, len(c.warnings))
			}
			for i := range w {
				if !strings.Contains(w[i], c.warnings[i]) {
					t.Errorf("warning %q lacks %q", w[i], c.warnings[i])
				}
			}
		})
	}
	_, skipped := iceChoice{turn: []ExternalTURN{turn}}.servers(nil, func(ExternalTURN) (icepeer.ICEServer, error) { return icepeer.ICEServer{}, errors.New("boom") })
	if len(skipped) != 1 {
		t.Fatalf("a failing TURN server is not reported: %v", skipped)
	}
}
