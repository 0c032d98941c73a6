package signalwire

import (
	"strings"
	"testing"
)

func FuzzDecodeFrame(f *testing.F) {
	f.Add([]byte(`{"v":2,"type":"send","to":"x","payload":"AAAA"}`))
	f.Add([]byte(`{"v":2,"type":"challenge"}`))
	f.Add([]byte(`{"v":1,"type":"challenge"}`))
	f.Add([]byte(`{"v":1,"type":"join","topics":["` + strings.Repeat("ab", 32) + `"]}`))
	f.Add([]byte(`{"v":1,"type":"announce","topic":"` + strings.Repeat("0f", 32) + `","payload":"AAAA"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := Decode(b)
		if err != nil {
			return
		}
		if _, err := Decode(Encode(fr)); err != nil {
			t.Fatalf("accepted frame does not round-trip: %v", err)
		}
	})
}
