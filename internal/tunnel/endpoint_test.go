package tunnel

import (
	"strings"
	"testing"
)

func TestParseEndpoint(t *testing.T) {
	b := NewBind(nil, BindOptions{})
	k := key(t)
	tests := []struct {
		in      string
		wantDst string // DstToString; "" for a peer endpoint without a path
		wantErr string
	}{
		{in: b.EndpointFor(k), wantDst: endpointPrefix + k.Hex()},
		{in: "198.18.0.1:51820", wantDst: "198.18.0.1:51820"},
		{in: "[::ffff:198.18.0.1]:51820", wantDst: "198.18.0.1:51820"},
		{in: "[2001:db8::1]:51820", wantDst: "[2001:db8::1]:51820"},
		{in: "punchd-peer:zz", wantErr: "bad punchd endpoint"},
		{in: "punchd-peer:" + strings.Repeat("ab", 31), wantErr: "31 bytes, want 32"},
		{in: "punchd-peer:", wantErr: "bad punchd endpoint"},
		{in: "example.com:51820", wantErr: "bad endpoint"},
		{in: "198.18.0.1", wantErr: "bad endpoint"},
		{in: "", wantErr: "bad endpoint"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			ep, err := b.ParseEndpoint(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want it to say %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := ep.DstToString(); got != tt.wantDst {
				t.Fatalf("DstToString %q, want %q", got, tt.wantDst)
			}
		})
	}
	// The same peer always maps to the same logical endpoint: WireGuard
	// keeps it, the Bind changes where it points.
	e1, _ := b.ParseEndpoint(b.EndpointFor(k))
	e2, _ := b.ParseEndpoint(b.EndpointFor(k))
	if e1 != e2 {
		t.Fatal("two logical endpoints for one peer")
	}
	b.SetPath(k, Path{Direct: mustAddrPort("198.18.0.9:4000")})
	if e1.DstToString() != "198.18.0.9:4000" || e1.DstIP().String() != "198.18.0.9" {
		t.Fatalf("with a direct path the endpoint shows %s / %s", e1.DstToString(), e1.DstIP())
	}
	b.SetPath(k, Path{})
	if e1.DstIP().IsValid() {
		t.Fatal("no path, yet a destination IP")
	}
}

// ParseEndpoint reads UAPI input: never panic, and a logical endpoint
// always round-trips.
func FuzzParseEndpoint(f *testing.F) {
	b := NewBind(nil, BindOptions{})
	f.Add("punchd-peer:" + strings.Repeat("00", 32))
	f.Add("198.18.0.1:51820")
	f.Add("[::1]:1")
	f.Add("punchd-peer:zz")
	f.Fuzz(func(t *testing.T, s string) {
		ep, err := b.ParseEndpoint(s)
		if err != nil {
			return
		}
		if pe, ok := ep.(*peerEndpoint); ok {
			if b.EndpointFor(pe.key) != strings.ToLower(s) {
				t.Fatalf("%q parsed to peer %s", s, pe.key.Hex())
			}
			return
		}
		if _, err := b.ParseEndpoint(ep.DstToString()); err != nil {
			t.Fatalf("%q -> %q does not parse again: %v", s, ep.DstToString(), err)
		}
	})
}
