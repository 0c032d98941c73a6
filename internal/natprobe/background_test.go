package natprobe

import (
	"testing"
)

func TestSTUNServer(t *testing.T) {
	tests := []struct {
		urls []string
		want string
	}{
		{[]string{"turn:r:3478?transport=udp", "stun:198.18.0.2:3478"}, "198.18.0.2:3478"},
		{[]string{"stun:r.example"}, "r.example:3478"},
		{[]string{"stun:[2001:db8::1]:3479"}, "[2001:db8::1]:3479"},
		{[]string{"stun:[2001:db8::1]"}, "[2001:db8::1]:3478"},
		{[]string{"turns:r:5349"}, ""},
		{[]string{"stuns:r:5349", "stun:"}, ""},
		{nil, ""},
	}
	for _, tt := range tests {
		if got := STUNServer(tt.urls); got != tt.want {
			t.Errorf("STUNServer(%q) = %q, want %q", tt.urls, got, tt.want)
		}
	}
}
