package birthday

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestSignalRoundTrip(t *testing.T) {
	key, sess := testKey(5), Session{1, 2, 3, 4, 5, 6, 7, 8}
	ip := netip.MustParseAddr("198.18.0.3")
	g := GoSignal(sess, key, ip, []uint16{20001, 20002})
	if !IsSignal(g) {
		t.Fatal("go message not recognised as a birthday signal")
	}
	d, err := DecodeSignal(g)
	if err != nil {
		t.Fatal(err)
	}
	if d.Phase != PhaseGo || d.Session != sess || d.Key != key || d.IP != ip || len(d.Predicted) != 2 || d.Predicted[1] != 20002 {
		t.Fatalf("decoded %+v", d)
	}
	r, err := DecodeSignal(ResultSignal(sess, true, 31))
	if err != nil || !r.Hit || r.Probes != 31 || r.Phase != PhaseResult {
		t.Fatalf("result: %+v %v", r, err)
	}
	if IsSignal([]byte(`{"v":1,"kind":"offer"}`)) {
		t.Fatal("an ICE offer taken for a birthday signal")
	}
}

func TestDecodeSignalRejects(t *testing.T) {
	long := `[` + strings.Repeat("1,", maxPredicted) + `1]`
	tests := []struct{ name, in string }{
		{"not json", `{`},
		{"version", `{"v":2,"kind":"birthday","phase":"go","session":"0102030405060708"}`},
		{"session short", `{"v":1,"kind":"birthday","phase":"result","session":"01"}`},
		{"go without key", `{"v":1,"kind":"birthday","phase":"go","session":"0102030405060708","ip":"198.18.0.3"}`},
		{"go short key", `{"v":1,"kind":"birthday","phase":"go","session":"0102030405060708","key":"AAAA","ip":"198.18.0.3"}`},
		{"go bad ip", `{"v":1,"kind":"birthday","phase":"go","session":"0102030405060708","key":"` + strings.Repeat("A", 43) + `=","ip":"0.0.0.0"}`},
		{"go too many ports", `{"v":1,"kind":"birthday","phase":"go","session":"0102030405060708","key":"` + strings.Repeat("A", 43) + `=","ip":"198.18.0.3","predicted":` + long + `}`},
		{"result negative probes", `{"v":1,"kind":"birthday","phase":"result","session":"0102030405060708","probes":-1}`},
		{"unknown phase", `{"v":1,"kind":"birthday","phase":"later","session":"0102030405060708"}`},
		{"too big", `{"v":1,"kind":"birthday","x":"` + strings.Repeat("x", maxSignalBytes) + `"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := DecodeSignal([]byte(tt.in)); !errors.Is(err, errBadSignal) {
				t.Fatalf("DecodeSignal(%.60s): %v, want errBadSignal", tt.in, err)
			}
		})
	}
}

func FuzzDecodeSignal(f *testing.F) {
	f.Add(GoSignal(Session{1}, testKey(1), netip.MustParseAddr("198.18.0.3"), []uint16{1, 2}))
	f.Add(ResultSignal(Session{1}, false, 2048))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := DecodeSignal(b)
		if err != nil {
			return
		}
		if d.Phase == PhaseGo && (!d.IP.IsValid() || len(d.Predicted) > maxPredicted) {
			t.Fatalf("accepted a bad go: %+v", d)
		}
	})
}
