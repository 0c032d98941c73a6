// Package membership is a `punchd up` host's part in a network (--network):
// it announces the host to the other members through the rendezvous,
// opens their sealed announcements (internal/network), keeps the roster,
// and asks the daemon to link with members that joined and unlink those
// that left. It is apart from the daemon because that is its whole
// conversation with it (Host); the daemon keeps the address book and the
// tunnels.
package membership
