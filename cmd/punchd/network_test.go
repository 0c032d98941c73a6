package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/punchd/punchd/internal/network"
)

func TestNetworkNew(t *testing.T) {
	empty := writeFile(t, "empty.yaml", "")
	tests := []struct {
		name    string
		args    []string
		wantURL string
		wantErr string
	}{
		{"http", []string{"--rendezvous", "http://R.example:8478"}, "http://r.example:8478", ""},
		{"no scheme", []string{"--rendezvous", "10.0.0.1:8478"}, "http://10.0.0.1:8478", ""},
		{"from the config file", []string{"--config", writeFile(t, "rv.yaml", "rendezvous: https://r.example\n")}, "https://r.example", ""},
		{"no rendezvous", nil, "", "no rendezvous URL"},
		{"bad scheme", []string{"--rendezvous", "ftp://r.example"}, "", "scheme"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := newRootCommand()
			var stdout bytes.Buffer
			root.SetOut(&stdout)
			args := append([]string{"network", "new"}, tt.args...)
			if !strings.Contains(strings.Join(tt.args, " "), "--config") {
				args = append(args, "--config", empty)
			}
			root.SetArgs(args)
			err := root.Execute()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
			code, err := network.Parse(lines[len(lines)-1])
			if err != nil {
				t.Fatalf("the last line %q is not a code: %v", lines[len(lines)-1], err)
			}
			if code.Rendezvous != tt.wantURL {
				t.Fatalf("code's rendezvous %q, want %q", code.Rendezvous, tt.wantURL)
			}
		})
	}
}
