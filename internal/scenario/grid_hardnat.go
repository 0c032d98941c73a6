package scenario

import "github.com/punchd/punchd/internal/lab"

// expectedVia is, per unordered pair of lab NAT types, how punchd gets a
// direct path where ExpectedPath (ICE alone) says relay, written out by
// hand:
//   - symmetric x port-restricted: birthday punching (256 mappings on the
//     symmetric side, up to 2,048 random probes from the other: a miss
//     has odds of about 3 in 10,000);
//   - sequential symmetric x port-restricted: prediction (the next ports
//     of a NAT that counts up are known);
//   - symmetric x symmetric: relay (the search space is 2^32), unless a
//     router maps the port (upnpVia).
//
// A UDP-blocked side stays relayed, and every pair ICE already gets direct
// needs nothing more.
var expectedVia = map[[2]lab.NATType]string{
	{lab.NATPortRestricted, lab.NATSymmetric}:           "birthday",
	{lab.NATPortRestricted, lab.NATSymmetricSequential}: "prediction",
}

// upnpVia is how a pair with miniupnpd on A's router goes direct where
// ICE alone would relay.
var upnpVia = map[[2]lab.NATType]string{
	{lab.NATSymmetric, lab.NATSymmetric}: "port mapping",
}

// ExpectedCell is the path a grid cell must end on and how it is made
// ("" for ICE's own pairs).
func ExpectedCell(o Options) (path, via string) {
	path = ExpectedPath(o.NATA, o.NATB, o.SameNAT)
	if o.SameNAT {
		return path, ""
	}
	table := expectedVia
	if o.UPnPA {
		table = upnpVia
	}
	via, ok := table[[2]lab.NATType{o.NATA, o.NATB}]
	if !ok {
		via = table[[2]lab.NATType{o.NATB, o.NATA}]
	}
	if via != "" {
		path = "direct"
	}
	return path, via
}

// hardGridCases are the grid's rows beyond the classic types: a
// sequential symmetric NAT, and two symmetric NATs with miniupnpd on one.
func hardGridCases() []Options {
	return []Options{
		{NATA: lab.NATSymmetricSequential, NATB: lab.NATPortRestricted},
		{NATA: lab.NATSymmetric, NATB: lab.NATSymmetric, UPnPA: true},
	}
}
