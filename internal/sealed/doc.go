// Package sealed holds the two Noise protocols punchd speaks with its
// identity key over the rendezvous: sealing of peer-to-peer messages
// (pattern K, with replay refusal; seal.go) and the registration proof
// that a client holds the key of the ID it claims (pattern X; auth.go).
// Both sides of the signaling channel use it, and neither needs to trust
// the rendezvous server for either property.
package sealed
