package main

import (
	"os"
	"strings"
	"testing"
)

func TestSecretOptions(t *testing.T) {
	private := writeFile(t, "secret", "fromfile\n")
	shared := writeFile(t, "shared", "fromshared\n")
	if err := os.Chmod(shared, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := writeFile(t, "punchd.yaml", "turn-secret: fromconfig\n")
	cfgShared := writeFile(t, "shared.yaml", "turn-secret: fromconfig\n")
	if err := os.Chmod(cfgShared, 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		env  map[string]string
		args []string
		want string
		warn string
		err  string
	}{
		{"argument", nil, []string{"--turn-secret", "fromarg"}, "fromarg", "visible to every local user", ""},
		{"environment", map[string]string{"PUNCHD_TURN_SECRET": "fromenv"}, nil, "fromenv", "", ""},
		{"file", nil, []string{"--turn-secret-file", private}, "fromfile", "", ""},
		{"file from environment", map[string]string{"PUNCHD_TURN_SECRET_FILE": private}, nil, "fromfile", "", ""},
		{"shared file", nil, []string{"--turn-secret-file", shared}, "fromshared", "readable by others", ""},
		{"config file", nil, []string{"--config", cfg}, "fromconfig", "", ""},
		{"shared config file", nil, []string{"--config", cfgShared}, "fromconfig", "holds turn-secret", ""},
		{"both", nil, []string{"--turn-secret", "x", "--turn-secret-file", private}, "", "", "not both"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			root := newRootCommand()
			cmd, _, err := root.Find([]string{"rendezvous"})
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.ParseFlags(c.args); err != nil {
				t.Fatal(err)
			}
			s, err := loadSettings(cmd)
			if err != nil {
				t.Fatal(err)
			}
			got, warnings, err := s.secret(cmd, "turn-secret")
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), "use one") {
					t.Fatalf("err %v, want one saying to give only one", err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("got %q %v, want %q", got, err, c.want)
			}
			if c.warn == "" && len(warnings) > 0 || c.warn != "" && (len(warnings) != 1 || !strings.Contains(warnings[0], c.warn)) {
				t.Fatalf("warnings %q, want %q", warnings, c.warn)
			}
		})
	}
}
