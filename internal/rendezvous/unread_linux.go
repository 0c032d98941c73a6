package rendezvous

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// unreadBytes is how many bytes the kernel holds for conn that nobody
// has read yet (SIOCINQ), or -1 when it cannot tell. A client whose pong
// sits unread in its socket is alive: the server is behind, not the
// client.
func unreadBytes(conn net.Conn) int {
	// Under TLS, the connection cap (LimitListener) and the shared TLS
	// port's dispatch (tlsmux) is the TCP connection.
	for range 8 {
		w, ok := conn.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		conn = w.NetConn()
	}
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return -1
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1
	}
	n := -1
	if err := rc.Control(func(fd uintptr) {
		if v, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ); err == nil {
			n = v
		}
	}); err != nil {
		return -1
	}
	return n
}
