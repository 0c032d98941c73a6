package scenario

import "github.com/punchd/punchd/internal/lab"

// expectedPaths is the path every unordered pair of lab NAT types must
// take, written out by hand from what each NAT does to a hole punch (not
// derived from natkind.NeedsRelay: TestNATAdviceMatchesGrid checks that
// rule against this table). A direct path exists unless one side is
// symmetric (a new port per destination, so the peer's punch aims at the
// wrong port) and the other filters by port (port-restricted or
// symmetric), or a side has no UDP at all.
var expectedPaths = map[[2]lab.NATType]string{
	{lab.NATNone, lab.NATNone}:           "direct",
	{lab.NATNone, lab.NATFullCone}:       "direct",
	{lab.NATNone, lab.NATRestricted}:     "direct",
	{lab.NATNone, lab.NATPortRestricted}: "direct",
	{lab.NATNone, lab.NATSymmetric}:      "direct", // nothing filters at the open end
	{lab.NATNone, lab.NATUDPBlocked}:     "relay",

	{lab.NATFullCone, lab.NATFullCone}:       "direct",
	{lab.NATFullCone, lab.NATRestricted}:     "direct",
	{lab.NATFullCone, lab.NATPortRestricted}: "direct",
	{lab.NATFullCone, lab.NATSymmetric}:      "direct", // full cone takes any source port
	{lab.NATFullCone, lab.NATUDPBlocked}:     "relay",

	{lab.NATRestricted, lab.NATRestricted}:     "direct",
	{lab.NATRestricted, lab.NATPortRestricted}: "direct",
	{lab.NATRestricted, lab.NATSymmetric}:      "direct", // filters by address only: the new port gets in
	{lab.NATRestricted, lab.NATUDPBlocked}:     "relay",

	{lab.NATPortRestricted, lab.NATPortRestricted}: "direct",
	{lab.NATPortRestricted, lab.NATSymmetric}:      "relay", // the punch lands on a port nobody sent to
	{lab.NATPortRestricted, lab.NATUDPBlocked}:     "relay",

	{lab.NATSymmetric, lab.NATSymmetric}:  "relay",
	{lab.NATSymmetric, lab.NATUDPBlocked}: "relay",

	{lab.NATUDPBlocked, lab.NATUDPBlocked}: "relay",

	// Beyond the classic types, the rows the grid runs (hardGridCases):
	// a symmetric NAT that counts its ports up is still symmetric to ICE.
	{lab.NATPortRestricted, lab.NATSymmetricSequential}: "relay",
}

// ExpectedPath is the path ("direct" or "relay") hosts behind a and b
// must take, from expectedPaths; two hosts behind one NAT (sameNAT) meet
// directly on the LAN between them, which filters nothing. It is the
// physics of the NAT pair, not a tuning target. "" for a pair the table
// lacks.
func ExpectedPath(a, b lab.NATType, sameNAT bool) string {
	if sameNAT {
		return "direct"
	}
	if p, ok := expectedPaths[[2]lab.NATType{a, b}]; ok {
		return p
	}
	return expectedPaths[[2]lab.NATType{b, a}]
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
