// Package natkind is the NAT vocabulary every other package speaks, and
// the policy that follows from it: the RFC 4787/5780 behaviours and the
// classic NAT types (Classify), which pairs of types can only meet through
// a relay (NeedsRelay), the one-sentence advice of `punchd nat` (Advice),
// why `punchd status` says a peer is relayed (RelayReason), and the
// CHANGE-REQUEST attribute both ends of an RFC 5780 test use. It holds no
// I/O.
package natkind
