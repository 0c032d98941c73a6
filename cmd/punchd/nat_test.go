package main

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/punchd/punchd/internal/natkind"
	"github.com/punchd/punchd/internal/natprobe"
	"github.com/punchd/punchd/internal/turnserver"
)

func TestNATServer(t *testing.T) {
	tests := []struct {
		server, rendezvous, want, err string
	}{
		{"198.18.0.1:3479", "http://ignored:8478", "198.18.0.1:3479", ""},
		{"", "http://rendezvous.example:8478", "rendezvous.example:3478", ""},
		{"", "https://[2001:db8::1]:8478", "[2001:db8::1]:3478", ""},
		{"", "", "", "--server"},
		{"", "rendezvous.example", "", "bad --rendezvous"},
	}
	for _, tt := range tests {
		got, err := natServer(tt.server, tt.rendezvous)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("natServer(%q, %q): %v, want an error with %q", tt.server, tt.rendezvous, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("natServer(%q, %q) = %q, %v; want %q", tt.server, tt.rendezvous, got, err, tt.want)
		}
	}
}

// `punchd nat --json` against an in-process RFC 5780 server on loopback:
// JSON only on stdout, progress on stderr. (No port-mapping probe: it
// would ask this machine's real gateway.)
func TestNATCommandJSON(t *testing.T) {
	s, err := turnserver.ListenServer(turnserver.ServerConfig{STUNListen: "127.0.0.1:0", AltIP: netip.MustParseAddr("127.0.0.2")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	root := newRootCommand()
	var stdout, stderr bytes.Buffer
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	root.SetArgs([]string{"nat", "--server", s.Addr().String(), "--json", "--no-port-mapping", "--config", writeFile(t, "empty.yaml", "")})
	if err := root.Execute(); err != nil {
		t.Fatalf("punchd nat: %v\n%s", err, stderr.String())
	}
	var rep natprobe.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("stdout is not one JSON report: %v\n%s", err, stdout.String())
	}
	if rep.NATType != natkind.TypeOpen || rep.Mapping != natkind.EndpointIndependent || rep.PortMapping != nil {
		t.Fatalf("report %+v", rep)
	}
	if !strings.Contains(stderr.String(), "punchd nat: binding:") {
		t.Errorf("no progress on stderr:\n%s", stderr.String())
	}
}
