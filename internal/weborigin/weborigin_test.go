package weborigin

import (
	"net/http/httptest"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" = refused
	}{
		{"https://game.example", "https://game.example"},
		{"https://game.example/", "https://game.example"},
		{"HTTPS://Game.Example:443", "https://game.example"},
		{"http://game.example:80", "http://game.example"},
		{"http://198.18.0.1:8080", "http://198.18.0.1:8080"},
		{"http://[2001:db8::1]:8080", "http://[2001:db8::1]:8080"},
		{"*", ""},
		{"https://*.example", ""},
		{"game.example", ""},
		{"ftp://game.example", ""},
		{"https://game.example/app", ""},
		{"https://user@game.example", ""},
		{"https://game.example?x=1", ""},
		{"null", ""},
	}
	for _, tt := range tests {
		a, err := Parse([]string{tt.in})
		if tt.want == "" {
			if err == nil {
				t.Errorf("Parse(%q) accepted %v", tt.in, a.Origins())
			}
			continue
		}
		if err != nil || len(a.Origins()) != 1 || a.Origins()[0] != tt.want {
			t.Errorf("Parse(%q) = %v, %v; want %s", tt.in, a.Origins(), err, tt.want)
		}
	}
}

func TestCheck(t *testing.T) {
	a, err := Parse([]string{"https://game.example", "http://localhost:8080"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		origin string
		want   Verdict
	}{
		{"", NoOrigin},
		{"https://game.example", Allowed},
		{"http://localhost:8080", Allowed},
		{"http://localhost:8081", Foreign},
		{"http://localhost", Foreign},
		{"https://game.example.evil", Foreign},
		{"null", Foreign},
		{"https://game.example/path", Foreign},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("GET", "http://r/", nil)
		if tt.origin != "" {
			r.Header.Set("Origin", tt.origin)
		}
		w := httptest.NewRecorder()
		if got := a.Check(w, r); got != tt.want {
			t.Errorf("Check(%q) = %v, want %v", tt.origin, got, tt.want)
		}
		acao := w.Header().Get("Access-Control-Allow-Origin")
		if (tt.want == Allowed) != (acao == tt.origin && acao != "") {
			t.Errorf("Check(%q): Access-Control-Allow-Origin %q", tt.origin, acao)
		}
	}
	var none *Allowlist
	if !none.Empty() || none.Allowed("https://game.example") {
		t.Error("nil allowlist allows")
	}
}

// FuzzAllowed: any Origin header a stranger sends is either refused or is,
// once normalized, exactly a listed origin.
func FuzzAllowed(f *testing.F) {
	a, err := Parse([]string{"https://game.example", "http://198.18.0.1:8080"})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"https://game.example", "https://GAME.example:443", "http://198.18.0.1:8080", "null", "https://game.example.evil", "http://[::1]:80", "https://game.example/%2e"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, origin string) {
		if !a.Allowed(origin) {
			return
		}
		n, err := normalize(origin)
		if err != nil {
			t.Fatalf("allowed %q that does not normalize: %v", origin, err)
		}
		if n != "https://game.example" && n != "http://198.18.0.1:8080" {
			t.Fatalf("allowed %q as %q, which is not listed", origin, n)
		}
		// Independently of normalize: what passes starts with a listed
		// scheme and host, whatever the case.
		low := strings.ToLower(strings.TrimSpace(origin))
		if !strings.HasPrefix(low, "https://game.example") && !strings.HasPrefix(low, "http://198.18.0.1:8080") {
			t.Fatalf("allowed %q", origin)
		}
	})
}
