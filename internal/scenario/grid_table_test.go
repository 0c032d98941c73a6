package scenario

import (
	"testing"

	"github.com/punchd/punchd/internal/lab"
)

// Every cell the grid runs has its expected path written out, once.
func TestExpectedPathsComplete(t *testing.T) {
	types := lab.AllNATTypes()
	for i, a := range types {
		for _, b := range types[i:] {
			_, ab := expectedPaths[[2]lab.NATType{a, b}]
			_, ba := expectedPaths[[2]lab.NATType{b, a}]
			if ab == ba && a != b {
				t.Errorf("%s x %s: in the table %v times, want once", a, b, map[bool]int{true: 2, false: 0}[ab])
			}
			if !ab && !ba {
				t.Errorf("%s x %s: not in the table", a, b)
			}
		}
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
