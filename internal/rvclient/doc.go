// Package rvclient is the daemon's side of the rendezvous: it registers
// at a signaling server (proving it holds its private key), keeps that
// registration alive across lost connections, watches peers' presence,
// joins group topics, and seals and opens the messages it exchanges with
// peers through the server (internal/sealed). It speaks internal/signalwire's
// frames and nothing else, so it works against any server that speaks
// them; it treats the server as hostile: whatever the server sends costs
// at most a counter and a rate-limited log line.
package rvclient
