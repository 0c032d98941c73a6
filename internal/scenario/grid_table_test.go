package scenario

import (
	"testing"

	"github.com/punchd/punchd/internal/lab"
)

// Every cell the grid runs has its expected path written out, once.
func TestExpectedPathsComplete(t *testing.T) {
	types := lab.AllNATTypes()
	if n := len(types) * (len(types) + 1) / 2; len(expectedPaths) != n {
		t.Errorf("table has %d pairs, want %d (every unordered pair once)", len(expectedPaths), n)
	}
	for _, c := range GridCases() {
		if got := ExpectedPath(c.NATA, c.NATB, c.SameNAT); got != "direct" && got != "relay" {
			t.Errorf("%s: no expected path", c.Describe())
		}
		if ExpectedPath(c.NATA, c.NATB, c.SameNAT) != ExpectedPath(c.NATB, c.NATA, c.SameNAT) {
			t.Errorf("%s: the expected path depends on the order", c.Describe())
		}
	}
}
