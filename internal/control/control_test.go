package control

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestStatusRoundTrip(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "punchd.sock")
	want := Status{
		Self: Self{ID: "abc", OverlayIPv4: "10.188.1.2", Interface: "punch0"},
		Peers: []PeerStatus{{
			ID: "def", State: "connected", Path: "direct",
			LocalCandidate:  &Candidate{Type: "srflx", Address: "198.18.0.11:4000"},
			RemoteCandidate: &Candidate{Type: "host", Address: "198.18.0.20:5000"},
			RxBytes:         1 << 20, TxBytes: 42,
		}},
	}
	srv, err := Listen(sock, func() Status { return want }, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := GetStatus(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	if got.Self.ID != want.Self.ID || len(got.Peers) != 1 || got.Peers[0].Path != "direct" ||
		got.Peers[0].LocalCandidate.Type != "srflx" || got.Peers[0].RxBytes != 1<<20 {
		t.Fatalf("status mismatch: got %+v", got)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode: %v %v", fi, err)
	}

	// A second daemon on the same socket must be refused, not steal it.
	if _, err := Listen(sock, func() Status { return Status{} }, nil); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second Listen: want in-use error, got %v", err)
	}

	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket not removed: %v", err)
	}
}

func TestStaleSocketReplaced(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "punchd.sock")
	if err := os.WriteFile(sock, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := Listen(sock, func() Status { return Status{} }, nil)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	srv.Close()
}

func TestGetStatusNoDaemon(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := GetStatus(ctx, filepath.Join(t.TempDir(), "missing.sock"))
	if err == nil || !strings.Contains(err.Error(), "is `punchd up` running") {
		t.Fatalf("want actionable error, got %v", err)
	}
}

func TestWriteTable(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 10, 0, time.UTC)
	hs := now.Add(-5 * time.Second)
	tests := []struct {
		name   string
		st     Status
		want   []string
		absent []string
	}{
		{"no peers", Status{Self: Self{ID: "me"}}, []string{"self       me", "no peers yet"}, []string{"drops"}},
		{"warnings and refused input", Status{Self: Self{ID: "me", Warnings: []string{"the rendezvous offers no STUN server: x"},
			SignalingRefused: map[string]uint64{"replay": 2, "bad-seal": 1}}},
			[]string{"WARNING    the rendezvous offers no STUN server: x", "refused    bad-seal 1, replay 2"}, nil},
		{"no warnings", Status{Self: Self{ID: "me"}}, nil, []string{"WARNING", "refused"}},
		{"direct peer", Status{Self: Self{ID: "me", RendezvousConnected: true}, Peers: []PeerStatus{{
			ID: "peerid0123456789", State: "connected", Path: "direct", OverlayIPv4: "10.188.0.9",
			LocalCandidate: &Candidate{Type: "srflx", Address: "1.2.3.4:5"}, RxBytes: 2048, LastHandshake: &hs,
		}}}, []string{"peerid012345…", "direct", "srflx 1.2.3.4:5", "2.0 KiB", "5s ago", "(connected)"}, nil},
		{"relayed with reason", Status{Peers: []PeerStatus{{ID: "p", Path: "relay", Reason: "no direct pair answered"}}},
			[]string{"reconnecting", "p: no direct pair answered"}, nil},
		{"relay over tcp", Status{Peers: []PeerStatus{{ID: "p", Path: "relay",
			LocalCandidate: &Candidate{Type: "relay", Address: "1.2.3.4:5", RelayProtocol: "tcp"}}}}, []string{"relay/tcp 1.2.3.4:5"}, nil},
		{"relay over udp", Status{Peers: []PeerStatus{{ID: "p", Path: "relay",
			LocalCandidate: &Candidate{Type: "relay", Address: "1.2.3.4:5", RelayProtocol: "udp", RelayFamily: "ipv4"}}}}, []string{"relay 1.2.3.4:5"}, []string{"relay/"}},
		{"relay over udp on IPv6", Status{Peers: []PeerStatus{{ID: "p", Path: "relay",
			LocalCandidate: &Candidate{Type: "relay", Address: "1.2.3.4:5", RelayProtocol: "udp", RelayFamily: "ipv6"}}}}, []string{"relay/udp6 1.2.3.4:5"}, nil},
		{"network member relayed by another", Status{Peers: []PeerStatus{{ID: "peerid0123456789", Member: true, MemberName: "bob",
			State: "connected", Path: "relay", RelayVia: "alice", Reason: "relay via alice: 1ms round trip"}}},
			[]string{"bob (peerid012345…)", "relay via alice", "peerid012345: relay via alice: 1ms"}, nil},
		{"drops", Status{Self: Self{ID: "me", Drops: Drops{RelayQueue: 12, STUNQueue: 3}}},
			[]string{"drops      12 relayed packets", "3 STUN"}, nil},
		{"direct by birthday", Status{Peers: []PeerStatus{{ID: "p", Path: "direct", Via: "birthday", Probes: 231}}},
			[]string{"direct (birthday, 231 probes)"}, nil},
		{"port mapping", Status{Self: Self{ID: "me", PortMapping: &PortMapping{Protocol: "pcp", External: "198.18.0.3:51820", LeaseLeftSeconds: 7000}}},
			[]string{"portmap    pcp 198.18.0.3:51820, lease 1h56m40s left"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			if err := tt.st.WriteTable(&b, now); err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("table lacks %q:\n%s", w, b.String())
				}
			}
			for _, a := range tt.absent {
				if strings.Contains(b.String(), a) {
					t.Errorf("table has %q:\n%s", a, b.String())
				}
			}
		})
	}
}

// Scripts read the warnings from `punchd status --json`.
func TestStatusJSONHasWarnings(t *testing.T) {
	b, err := json.Marshal(Status{Self: Self{Warnings: []string{"no STUN"}, SignalingRefused: map[string]uint64{"replay": 1}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"warnings":["no STUN"]`, `"signaling_refused":{"replay":1}`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON lacks %s: %s", want, b)
		}
	}
	b, _ = json.Marshal(Status{})
	if strings.Contains(string(b), "warnings") {
		t.Errorf("empty warnings not omitted: %s", b)
	}
}
