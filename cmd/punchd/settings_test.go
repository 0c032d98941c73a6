package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// settingsFor parses args for the `up` command and returns its settings,
// without running it.
func settingsFor(t *testing.T, args ...string) (*settings, error) {
	t.Helper()
	root := newRootCommand()
	up, _, err := root.Find([]string{"up"})
	if err != nil {
		t.Fatal(err)
	}
	if err := up.ParseFlags(args); err != nil {
		return nil, err
	}
	return loadSettings(up)
}

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSettingsPrecedence(t *testing.T) {
	cfg := writeFile(t, "punchd.yaml", "interface: fromfile0\nmtu: 1300\nstate-dir: /from/file\npeer: [a, b]\n")
	tests := []struct {
		name string
		env  map[string]string
		args []string
		key  string
		want string
	}{
		{"file beats default", nil, nil, "interface", "fromfile0"},
		{"env beats file", map[string]string{"PUNCHD_INTERFACE": "fromenv0"}, nil, "interface", "fromenv0"},
		{"flag beats env", map[string]string{"PUNCHD_INTERFACE": "fromenv0"}, []string{"--interface", "fromflag0"}, "interface", "fromflag0"},
		{"hyphenated key from env", map[string]string{"PUNCHD_STATE_DIR": "/from/env"}, nil, "state-dir", "/from/env"},
		{"default when unset", nil, nil, "listen-port", "0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			s, err := settingsFor(t, append([]string{"--config", cfg}, tt.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.str(tt.key); got != tt.want {
				t.Fatalf("%s = %q, want %q", tt.key, got, tt.want)
			}
		})
	}
}

func TestSettingsLists(t *testing.T) {
	cfg := writeFile(t, "punchd.yaml", "peer: [a, b]\n")
	s, err := settingsFor(t, "--config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(s.list("peer"), "|"); got != "a|b" {
		t.Fatalf("peers from file: %q", got)
	}
	t.Setenv("PUNCHD_PEER", "x,y z")
	s, err = settingsFor(t, "--config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(s.list("peer"), "|"); got != "x|y|z" {
		t.Fatalf("peers from env: %q", got)
	}
	s, err = settingsFor(t, "--config", cfg, "--peer", "p1", "--peer", "p2")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(s.list("peer"), "|"); got != "p1|p2" {
		t.Fatalf("peers from flags: %q", got)
	}
}

func TestBadConfig(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"unknown key", "rendezvouz: http://x\n", `unknown key "rendezvouz"`},
		{"not yaml", "peer: [unclosed\n", "bad config file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := settingsFor(t, "--config", writeFile(t, "c.yaml", tt.body))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("want error containing %q, got %v", tt.want, err)
			}
		})
	}
	_, err := settingsFor(t, "--config", "/nonexistent/punchd.yaml")
	if err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("missing file: %v", err)
	}
}

// The shipped example must load with every command's keys.
func TestExampleConfigLoads(t *testing.T) {
	s, err := settingsFor(t, "--config", "../../configs/punchd.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if s.str("interface") != "punch0" || len(s.list("overlay-prefix")) != 2 {
		t.Fatalf("example config not read: interface=%q prefixes=%v", s.str("interface"), s.list("overlay-prefix"))
	}
	if _, err := parseOverlayPrefixes(s.list("overlay-prefix")); err != nil {
		t.Fatal(err)
	}
}

func TestParseOverlayPrefixes(t *testing.T) {
	tests := []struct {
		in      []string
		wantErr string
	}{
		{[]string{"10.188.0.0/16", "fd50:756e:6368::/48"}, ""},
		{[]string{"10.188.0.0/16"}, ""},
		{[]string{"10.188.0.1/16"}, "host bits"},
		{[]string{"10.0.0.0/8", "10.188.0.0/16"}, "at most one IPv4"},
		{[]string{"nonsense"}, "bad --overlay-prefix"},
		{nil, "no --overlay-prefix"},
	}
	for _, tt := range tests {
		_, err := parseOverlayPrefixes(tt.in)
		if (err == nil) != (tt.wantErr == "") || err != nil && !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%v: got %v, want %q", tt.in, err, tt.wantErr)
		}
	}
}

func TestResolvePeersErrors(t *testing.T) {
	_, err := resolvePeers([]string{"bob"}, map[string]string{"alice": "x"})
	if err == nil || !strings.Contains(err.Error(), "known aliases: alice") {
		t.Fatalf("unknown alias: %v", err)
	}
	_, err = resolvePeers([]string{"alice"}, map[string]string{"alice": "not-an-id"})
	if err == nil || !strings.Contains(err.Error(), "peers.alice") {
		t.Fatalf("bad alias target: %v", err)
	}
	if _, err := resolvePeers(nil, nil); err == nil {
		t.Fatal("no peers accepted")
	}
}

// The systemd units must pass systemd-analyze verify (which only warns on
// stderr for unknown keys, so any output about the unit is a failure) and
// keep least privilege.
func TestSystemdUnits(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed (apt-get install systemd): cannot verify the units")
	}
	bin, err := os.Executable() // any executable file stands in for punchd
	if err != nil {
		t.Fatal(err)
	}
	units := map[string]string{"punchd.service": "CAP_NET_ADMIN", "punchd-rendezvous.service": "CAP_NET_BIND_SERVICE"}
	dir := t.TempDir()
	for name, capability := range units {
		body, err := os.ReadFile(filepath.Join("../../configs", name))
		if err != nil {
			t.Fatal(err)
		}
		text := string(body)
		for _, must := range []string{"Restart=on-failure", "CapabilityBoundingSet=" + capability, "AmbientCapabilities=" + capability, "NoNewPrivileges=yes", "DynamicUser=yes", "Type=notify"} {
			if !strings.Contains(text, must) {
				t.Errorf("%s lacks %q", name, must)
			}
		}
		if strings.Contains(text, "User=root") {
			t.Errorf("%s runs as root", name)
		}
		text = strings.ReplaceAll(text, "/usr/local/bin/punchd", bin)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	cmd := exec.Command(sa, "verify", filepath.Join(dir, "punchd.service"), filepath.Join(dir, "punchd-rendezvous.service"))
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.Contains(line, dir) || strings.Contains(line, ".service") {
			t.Errorf("systemd-analyze: %s", line)
		}
	}
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out.String())
	}
}
