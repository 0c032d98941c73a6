package tunnel

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"
)

func mustAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func TestCheckInterfaceName(t *testing.T) {
	for name, ok := range map[string]bool{
		"punch0": true, "wg-lab.1": true, "abcdefghijklmno": true,
		"": false, "abcdefghijklmnop": false, ".": false, "..": false,
		"a/b": false, "a b": false, "a:b": false, "a\tb": false,
	} {
		if err := checkInterfaceName(name); (err == nil) != ok {
			t.Errorf("checkInterfaceName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}

func TestTUNErrors(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{syscall.EPERM, "needs root or CAP_NET_ADMIN"},
		{fmt.Errorf("open: %w", syscall.EACCES), "needs root or CAP_NET_ADMIN"},
		{syscall.ENOENT, "load the tun module: modprobe tun"},
		{syscall.EBUSY, "interface punch0 already exists; is another punchd running? use --interface"},
		{syscall.EINVAL, "not a TUN; use --interface"},
		{errors.New("something else"), "create TUN punch0: something else"},
	}
	for _, tt := range tests {
		got := tunError("punch0", tt.err)
		if !strings.Contains(got.Error(), tt.want) || !errors.Is(got, tt.err) {
			t.Errorf("tunError(%v) = %q, want it to say %q and wrap the cause", tt.err, got, tt.want)
		}
	}
}

func TestParseStatsPeers(t *testing.T) {
	k1, k2 := key(t), key(t)
	text := strings.Join([]string{
		"private_key=" + strings.Repeat("11", 32),
		"listen_port=51820",
		"public_key=" + k1.Hex(),
		"endpoint=punchd-peer:" + k1.Hex(),
		"last_handshake_time_sec=1700000000",
		"last_handshake_time_nsec=250",
		"rx_bytes=100",
		"tx_bytes=200",
		"persistent_keepalive_interval=25",
		"allowed_ip=10.188.0.2/32",
		"public_key=" + k2.Hex(),
		"last_handshake_time_sec=0",
		"last_handshake_time_nsec=0",
		"rx_bytes=0",
		"tx_bytes=92",
		"errno=0",
	}, "\n") + "\n"
	st, err := parseStats(text)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 2 {
		t.Fatalf("%d peers, want 2", len(st))
	}
	want1 := PeerStats{RxBytes: 100, TxBytes: 200, LastHandshake: time.Unix(1700000000, 250)}
	if got := st[k1]; got.RxBytes != want1.RxBytes || got.TxBytes != want1.TxBytes || !got.LastHandshake.Equal(want1.LastHandshake) {
		t.Errorf("peer 1: %+v, want %+v", got, want1)
	}
	if got := st[k2]; got.TxBytes != 92 || !got.LastHandshake.IsZero() {
		t.Errorf("peer 2 (never shook hands): %+v", got)
	}
}
