package identity

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeyFileWarning(t *testing.T) {
	dir := t.TempDir()
	if w := KeyFileWarning(dir); w != "" {
		t.Fatalf("no key yet: %q", w)
	}
	if _, _, err := LoadOrCreate(dir); err != nil {
		t.Fatal(err)
	}
	if w := KeyFileWarning(dir); w != "" {
		t.Fatalf("fresh key (0600): %q", w)
	}
	for _, c := range []struct {
		mode os.FileMode
		want string
	}{{0o640, "readable by its group"}, {0o644, "readable by others"}} {
		if err := os.Chmod(filepath.Join(dir, keyFileName), c.mode); err != nil {
			t.Fatal(err)
		}
		if w := KeyFileWarning(dir); !strings.Contains(w, c.want) || !strings.Contains(w, "chmod 600") {
			t.Fatalf("mode %o: %q, want %q", c.mode, w, c.want)
		}
	}
}
