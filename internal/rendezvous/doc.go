// Package rendezvous is where peers meet: a WebSocket signaling server and
// its client. The server routes sealed messages between registered peers
// and tells them who is online; it can neither read nor forge what peers
// say to each other (internal/sealed), and registration proves possession of
// the private key (internal/sealed too). The frames both sides speak are
// internal/signalwire's.
package rendezvous
