// Package rendezvous is where peers meet: the WebSocket signaling server
// of `punchd rendezvous`. It routes sealed messages between registered
// peers and tells them who is online; it can neither read nor forge what
// peers say to each other (internal/sealed), and registration proves
// possession of the private key (internal/sealed too). The frames it
// speaks are internal/signalwire's; the daemon's client is internal/rvclient.
package rendezvous
