package icepeer

import (
	"errors"
	"strings"
	"testing"
)

const testCand = "candidate:1 1 udp 2130706431 192.0.2.1 51820 typ host"

func TestDecodeSignal(t *testing.T) {
	pwd := strings.Repeat("p", 22)
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"offer", `{"v":1,"kind":"offer","gen":7,"ufrag":"abcd","pwd":"` + pwd + `"}`, true},
		{"answer", `{"v":1,"kind":"answer","gen":7,"ufrag":"abcd","pwd":"` + pwd + `"}`, true},
		{"candidate", `{"v":1,"kind":"candidate","gen":7,"candidate":"` + testCand + `"}`, true},
		{"hello", `{"v":1,"kind":"hello"}`, true},
		{"hello after failure", `{"v":1,"kind":"hello","seen":7,"failed":true}`, true},
		{"nat", `{"v":1,"kind":"nat","nat":"symmetric"}`, true},
		{"nat unknown", `{"v":1,"kind":"nat","nat":"unknown"}`, true},
		{"nat made up", `{"v":1,"kind":"nat","nat":"very-strict"}`, false},
		{"nat empty", `{"v":1,"kind":"nat"}`, false},
		{"empty", ``, false},
		{"not json", `hello`, false},
		{"array", `[]`, false},
		{"no version", `{"kind":"hello"}`, false},
		{"future version", `{"v":2,"kind":"hello"}`, false},
		{"unknown kind", `{"v":1,"kind":"bye"}`, false},
		{"offer without gen", `{"v":1,"kind":"offer","ufrag":"abcd","pwd":"` + pwd + `"}`, false},
		{"short ufrag", `{"v":1,"kind":"offer","gen":1,"ufrag":"abc","pwd":"` + pwd + `"}`, false},
		{"short pwd", `{"v":1,"kind":"answer","gen":1,"ufrag":"abcd","pwd":"short"}`, false},
		{"negative gen", `{"v":1,"kind":"candidate","gen":-1,"candidate":"` + testCand + `"}`, false},
		{"candidate without body", `{"v":1,"kind":"candidate","gen":1}`, false},
		{"garbage candidate", `{"v":1,"kind":"candidate","gen":1,"candidate":"candidate:x"}`, false},
		{"huge", `{"v":1,"kind":"hello","pad":"` + strings.Repeat("x", maxSignalBytes) + `"}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeSignal([]byte(tt.in))
			if (err == nil) != tt.ok {
				t.Fatalf("decodeSignal(%.60q) error = %v, want ok=%v", tt.in, err, tt.ok)
			}
			if err != nil && !errors.Is(err, errBadSignal) {
				t.Fatalf("error does not wrap errBadSignal: %v", err)
			}
		})
	}
}

func TestSignalRoundTrip(t *testing.T) {
	msgs := []signalMsg{
		{Kind: kindOffer, Gen: randomGen(), Ufrag: "abcdefgh", Pwd: strings.Repeat("x", 32)},
		{Kind: kindCandidate, Gen: 1<<53 - 1, Candidate: testCand},
		{Kind: kindHello, Seen: 42, Failed: true},
	}
	for _, m := range msgs {
		got, err := decodeSignal(encodeSignal(m))
		m.V = signalVersion
		if err != nil || got != m {
			t.Fatalf("round trip of %+v = %+v, %v", m, got, err)
		}
	}
}

// FuzzDecodeSignal: whatever a peer sends, decoding must not panic, and
// what it accepts must survive a re-encode.
func FuzzDecodeSignal(f *testing.F) {
	f.Add([]byte(`{"v":1,"kind":"offer","gen":7,"ufrag":"abcd","pwd":"pppppppppppppppppppppp"}`))
	f.Add([]byte(`{"v":1,"kind":"candidate","gen":7,"candidate":"` + testCand + `"}`))
	f.Add([]byte(`{"v":1,"kind":"candidate","gen":7,"candidate":"candidate:1 1 udp 1 ::1 1 typ srflx raddr 0.0.0.0 rport 0"}`))
	f.Add([]byte(`{"v":1,"kind":"hello","seen":1,"failed":true}`))
	f.Add([]byte(`{"v":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeSignal(b)
		if err != nil {
			return
		}
		if _, err := decodeSignal(encodeSignal(m)); err != nil {
			t.Fatalf("accepted %q but not its re-encoding: %v", b, err)
		}
	})
}
