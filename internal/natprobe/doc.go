// Package natprobe finds this host's NAT behaviour: the RFC 5780 mapping
// and filtering tests against a STUN server with two addresses (discover*.go),
// hairpinning, port preservation, IPv6, and STUN over TCP when UDP is
// blocked. Check adds the port-mapping probe and makes the report of
// `punchd nat` (check.go); Background runs Discover for the daemon after
// each registration at the rendezvous, at most once a minute, to explain
// relayed paths (background.go).
package natprobe
