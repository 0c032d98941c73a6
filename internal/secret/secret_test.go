package secret

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func file(t *testing.T, body string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // WriteFile's mode is masked by umask
		t.Fatal(err)
	}
	return p
}

func TestResolve(t *testing.T) {
	private := file(t, "s3cret\n", 0o600)
	shared := file(t, "s3cret", 0o644)
	groupOnly := file(t, "s3cret", 0o640)
	empty := file(t, "\n", 0o600)
	cfgShared := file(t, "turn-secret: s3cret\n", 0o644)
	cases := []struct {
		name    string
		in      Input
		want    string
		warn    string // substring of the one warning; "" for none
		wantErr string
	}{
		{"file 0600", Input{Name: "turn-secret", File: private}, "s3cret", "", ""},
		{"file 0644", Input{Name: "turn-secret", File: shared}, "s3cret", "readable by others (mode 0644)", ""},
		{"file 0640", Input{Name: "turn-secret", File: groupOnly}, "s3cret", "readable by its group", ""},
		{"empty file", Input{Name: "turn-secret", File: empty}, "", "", "empty"},
		{"missing file", Input{Name: "turn-secret", File: filepath.Join(t.TempDir(), "nope")}, "", "", "no such file"},
		{"directory", Input{Name: "turn-secret", File: t.TempDir()}, "", "", "not a regular file"},
		{"both", Input{Name: "turn-secret", Value: "x", Origin: CommandLine, File: private}, "", "", "both --turn-secret and --turn-secret-file"},
		{"command line", Input{Name: "turn-secret", Value: "x", Origin: CommandLine}, "x", "visible to every local user", ""},
		{"environment", Input{Name: "turn-secret", Value: "x", Origin: Environment}, "x", "", ""},
		{"config file 0644", Input{Name: "turn-secret", Value: "x", Origin: ConfigFile, ConfigPath: cfgShared}, "x", "holds turn-secret", ""},
		{"config file 0600", Input{Name: "turn-secret", Value: "x", Origin: ConfigFile, ConfigPath: private}, "x", "", ""},
		{"unset", Input{Name: "turn-secret"}, "", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, warnings, err := c.in.Resolve()
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("got %q %v, want %q", got, err, c.want)
			}
			switch {
			case c.warn == "" && len(warnings) > 0:
				t.Fatalf("unexpected warnings %q", warnings)
			case c.warn != "" && (len(warnings) != 1 || !strings.Contains(warnings[0], c.warn)):
				t.Fatalf("warnings %q, want one with %q", warnings, c.warn)
			}
		})
	}
}

func TestReadableByOthers(t *testing.T) {
	if w, err := ReadableByOthers(file(t, "k", 0o600)); w != "" || err != nil {
		t.Fatalf("0600: %q %v", w, err)
	}
	if w, _ := ReadableByOthers(file(t, "k", 0o604)); !strings.Contains(w, "others") {
		t.Fatalf("0604: %q", w)
	}
	if w, err := ReadableByOthers(filepath.Join(t.TempDir(), "gone")); w != "" || err != nil {
		t.Fatalf("missing: %q %v", w, err)
	}
}
