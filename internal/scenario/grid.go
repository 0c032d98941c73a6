package scenario

import "github.com/punchd/punchd/internal/lab"

// ExpectedPath is the physics of the NAT pair, not a tuning target: a
// direct path exists unless one side is symmetric and the other filters by
// port (port-restricted or symmetric), or a side has no UDP at all.
func ExpectedPath(a, b lab.NATType, sameNAT bool) string {
	if sameNAT {
		return "direct" // the LAN between them filters nothing
	}
	hard := func(x lab.NATType) bool { return x == lab.NATPortRestricted || x == lab.NATSymmetric }
	switch {
	case a == lab.NATUDPBlocked || b == lab.NATUDPBlocked:
		return "relay"
	case a == lab.NATSymmetric && hard(b), b == lab.NATSymmetric && hard(a):
		return "relay"
	default:
		return "direct"
	}
}

// GridCases is every unordered pair of NAT types plus two hosts behind one NAT.
func GridCases() []Options {
	types := lab.AllNATTypes()
	var out []Options
	for i, a := range types {
		for _, b := range types[i:] {
			out = append(out, Options{NATA: a, NATB: b})
		}
	}
	out = append(out, Options{NATA: lab.NATPortRestricted, SameNAT: true})
	return append(out, hardGridCases()...)
}
