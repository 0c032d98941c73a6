// Package sdnotify tells systemd that a Type=notify service is ready (or
// stopping), with the sd_notify datagram protocol: one datagram of
// "KEY=VALUE" lines to the unix socket named by $NOTIFY_SOCKET. No
// maintained helper for it is among the modules this project may use, and
// the protocol is these few lines.
package sdnotify

import (
	"fmt"
	"net"
	"os"
)

// The states punchd reports.
const (
	Ready    = "READY=1"
	Stopping = "STOPPING=1"
)

// Notify sends state to the socket in $NOTIFY_SOCKET. It reports false,
// nil when the variable is unset (not run by systemd as Type=notify).
func Notify(state string) (bool, error) {
	return NotifySocket(os.Getenv("NOTIFY_SOCKET"), state)
}

// NotifySocket sends state to the socket at path: a file system path, or
// an abstract socket name starting with '@'. An empty path sends nothing.
func NotifySocket(path, state string) (bool, error) {
	if path == "" {
		return false, nil
	}
	if path[0] != '/' && path[0] != '@' {
		return false, fmt.Errorf("NOTIFY_SOCKET %q is neither a path nor an abstract socket name", path)
	}
	// Go's net package maps a leading '@' to the abstract namespace.
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return false, fmt.Errorf("tell systemd %s: %w", state, err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return false, fmt.Errorf("tell systemd %s: %w", state, err)
	}
	return true, nil
}
