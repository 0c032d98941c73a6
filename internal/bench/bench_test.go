package bench

import (
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{0.19, 0.35, 0.17}, 0.19},
	}
	for _, tt := range tests {
		if got := Median(tt.in); got != tt.want {
			t.Errorf("Median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestUDPBufErrors(t *testing.T) {
	const snmp = "Ip: Forwarding DefaultTTL\nIp: 1 64\n" +
		"Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\n" +
		"Udp: 258897 0 19399 262347 19399 7 0 0 0\n" +
		"UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\n" +
		"UdpLite: 0 0 0 0 5 5 0 0 0\n"
	tests := []struct {
		name    string
		in      string
		want    int64
		wantErr bool
	}{
		{"rcvbuf and sndbuf, not UdpLite", snmp, 19406, false},
		{"no udp", "Ip: Forwarding\nIp: 1\n", 0, true},
		{"missing column", "Udp: InDatagrams\nUdp: 5\n", 0, true},
		{"bad number", "Udp: RcvbufErrors SndbufErrors\nUdp: x 1\n", 0, true},
	}
	for _, tt := range tests {
		got, err := udpBufErrors([]byte(tt.in))
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("%s: got %d, %v; want %d, error %v", tt.name, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestCPUPerGB(t *testing.T) {
	tests := []struct {
		r    Result
		want float64
	}{
		{Result{}, 0},
		{Result{CPU: 2 * time.Second, Bytes: 1e9}, 2},
		{Result{CPU: time.Second, Bytes: 4e9}, 0.25},
	}
	for _, tt := range tests {
		if got := tt.r.CPUPerGB(); got != tt.want {
			t.Errorf("%+v.CPUPerGB() = %v, want %v", tt.r, got, tt.want)
		}
	}
}
