// Package relaychoice decides, for each peer of `punchd up` without a
// direct path, whether another peer we reach directly should relay its
// packets instead of the TURN relay, from round-trip probes over both.
// The tunnel carries the relayed packets and the probes; the daemon says
// which peers are direct and shows the choice. It is apart from the
// daemon because the choice needs only that (Config), and its rule
// (Choose) is tested on its own.
package relaychoice
