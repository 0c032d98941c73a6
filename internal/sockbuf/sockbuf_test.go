package sockbuf

import (
	"net"
	"os"
	"testing"
)

func TestSet(t *testing.T) {
	tests := []struct {
		name    string
		conn    func(t *testing.T) any
		want    func(Sizes) bool
		wantErr bool
	}{
		{"udp socket", openUDP, func(s Sizes) bool {
			// Root forces the full size; others get at least the default.
			if os.Geteuid() == 0 {
				return !s.Short(Size)
			}
			return s.Recv > 0 && s.Send > 0
		}, false},
		{"closed socket", func(t *testing.T) any {
			c := openUDP(t).(*net.UDPConn)
			c.Close()
			return c
		}, func(s Sizes) bool { return s == Sizes{} }, true},
		{"not a socket", func(*testing.T) any { return struct{}{} }, func(s Sizes) bool { return s == Sizes{} }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Set(tt.conn(t), Size)
			if (err != nil) != tt.wantErr || !tt.want(got) {
				t.Errorf("Set = %+v, %v; want error %v", got, err, tt.wantErr)
			}
		})
	}
}

func TestShort(t *testing.T) {
	tests := []struct {
		s    Sizes
		want bool
	}{
		{Sizes{Size, Size}, false},
		{Sizes{Size + 1, Size}, false},
		{Sizes{Size - 1, Size}, true},
		{Sizes{Size, 212992}, true},
		{Sizes{}, true},
	}
	for _, tt := range tests {
		if got := tt.s.Short(Size); got != tt.want {
			t.Errorf("%+v.Short = %v, want %v", tt.s, got, tt.want)
		}
	}
}

func openUDP(t *testing.T) any {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
