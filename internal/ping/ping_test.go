package ping

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/punchd/punchd/internal/control"
)

var loopback = netip.MustParseAddr("127.0.0.1")

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// pair starts a responder on loopback answering what arrives on iface,
// and a pinger toward it; both closed by the test's end.
func pair(t *testing.T, iface string) (*Responder, *Pinger) {
	t.Helper()
	r, err := Listen(loopback, iface, quiet())
	if err != nil {
		t.Skipf("port %d on loopback taken: %v", Port, err)
	}
	t.Cleanup(func() { r.Close() })
	p, err := NewPinger(loopback)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return r, p
}

func TestPingRoundTrip(t *testing.T) {
	r, p := pair(t, loopbackName(t))
	for seq, size := range []int{0, headerLen, 100, MaxSize, 10 * MaxSize} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		rtt, err := p.Ping(ctx, uint32(seq), size)
		cancel()
		if err != nil || rtt <= 0 {
			t.Fatalf("ping size %d: rtt %v, err %v", size, rtt, err)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

// The responder reflects probes only, and a pinger takes only the echo of
// its own probe.
func TestResponderIgnoresOtherTraffic(t *testing.T) {
	r, err := Listen(loopback, loopbackName(t), quiet())
	if err != nil {
		t.Skipf("port %d on loopback taken: %v", Port, err)
	}
	defer r.Close()
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopback, Port)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, junk := range []string{"", "hello", magic, strings.Repeat("x", 64)} {
		if _, err := c.Write([]byte(junk)); err != nil {
			t.Fatal(err)
		}
	}
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := c.Read(make([]byte, 100)); err == nil {
		t.Fatalf("responder answered non-probe traffic with %d bytes", n)
	}
}

func TestPingTimesOutAndCancels(t *testing.T) {
	// Nothing listens there: on loopback that is ECONNREFUSED or a timeout.
	p, err := NewPinger(netip.MustParseAddr("127.0.0.2"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := p.Ping(ctx, 1, 64); err == nil {
		t.Fatal("ping to nobody succeeded")
	}
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if _, err := p.Ping(ctx, 2, 64); err == nil {
		t.Fatal("ping with a cancelled context succeeded")
	}
}

func TestFindPeer(t *testing.T) {
	peers := []control.PeerStatus{
		{ID: "abcdef1111", Alias: "alice"},
		{ID: "abcdef2222"},
		{ID: "zzzz"},
	}
	tests := []struct {
		want, id, err string
	}{
		{want: "abcdef1111", id: "abcdef1111"},
		{want: "alice", id: "abcdef1111"},
		{want: "abcdef2", id: "abcdef2222"},
		{want: "zz", id: "zzzz"},
		{want: "abcdef", err: "starts 2 peers"},
		{want: "bob", err: "no peer"},
		{want: " ", err: "give the peer"},
	}
	for _, tt := range tests {
		p, err := findPeer(peers, tt.want)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("findPeer(%q): err %v, want one saying %q", tt.want, err, tt.err)
		case tt.err == "" && (err != nil || p.ID != tt.id):
			t.Errorf("findPeer(%q) = %q, %v; want %q", tt.want, p.ID, err, tt.id)
		}
	}
}

func loopbackName(t *testing.T) string {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback != 0 {
			return i.Name
		}
	}
	t.Skip("no loopback interface")
	return ""
}

// otherInterface is any interface but loopback: probes sent on loopback
// did not arrive on it.
func otherInterface(t *testing.T) string {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback == 0 {
			return i.Name
		}
	}
	t.Skip("no interface besides loopback to bind the responder to")
	return ""
}

// A probe is answered only when it arrived on the responder's interface
// (the tunnel): the weak host model delivers datagrams for the overlay
// address from any interface.
func TestResponderAnswersOnlyItsInterface(t *testing.T) {
	for _, tt := range []struct {
		name  string
		iface func(*testing.T) string
		reply bool
	}{
		{"arrived on its interface", loopbackName, true},
		{"arrived elsewhere", otherInterface, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, p := pair(t, tt.iface(t))
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			_, err := p.Ping(ctx, 1, 64)
			if got := err == nil; got != tt.reply {
				t.Fatalf("reply %v, want %v (err %v)", got, tt.reply, err)
			}
			if !tt.reply && r.OffPath() == 0 {
				t.Fatal("the ignored probe was not counted")
			}
		})
	}
}

func TestListenUnknownInterface(t *testing.T) {
	if _, err := Listen(loopback, "punchd-no-such0", quiet()); err == nil || !strings.Contains(err.Error(), "punchd-no-such0") {
		t.Fatalf("err %v, want one naming the interface", err)
	}
}
