// Package sockbuf gives UDP sockets large kernel buffers. Every socket on
// the data path needs them (the tunnel socket, the TURN client's socket,
// the TURN server's listening and relay sockets): with Linux's default
// 208 KiB a single TCP stream through the tunnel overflows the receive
// queue, and each dropped datagram is a TCP retransmit inside the tunnel.
package sockbuf

import (
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// Size is what the data path asks for: enough for a burst of a 64-packet
// batch per peer at a few Gbit/s while the reader is descheduled.
const Size = 7 << 20

// Advice is what to tell an operator whose buffers came out short.
const Advice = "raise net.core.rmem_max and net.core.wmem_max (sysctl -w net.core.rmem_max=7340032 net.core.wmem_max=7340032) or grant CAP_NET_ADMIN"

// Sizes are the usable buffer sizes of a socket (half of what getsockopt
// reports: the kernel doubles every request for its bookkeeping).
type Sizes struct{ Recv, Send int }

// Short reports whether either buffer is smaller than size: the kernel's
// limits capped it, and the caller should say how to raise them.
func (s Sizes) Short(size int) bool { return s.Recv < size || s.Send < size }

// Set asks for size bytes of receive and send buffer on c, forcing past
// net.core.rmem_max/wmem_max when the process may (CAP_NET_ADMIN) and
// otherwise taking what those limits allow. It returns the sizes the
// kernel granted. Something that is not a socket (a test double) is left
// alone and yields the zero Sizes.
func Set(c any, size int) (Sizes, error) {
	var got Sizes
	err := control(c, func(fd int) error {
		err := errors.Join(
			set(fd, unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, size),
			set(fd, unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, size))
		var gerr error
		got, gerr = get(fd)
		return errors.Join(err, gerr)
	})
	return got, err
}

// Get reads c's usable buffer sizes; the zero Sizes for something that is
// not a socket.
func Get(c any) (Sizes, error) {
	var got Sizes
	err := control(c, func(fd int) error {
		var err error
		got, err = get(fd)
		return err
	})
	return got, err
}

func control(c any, fn func(fd int) error) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return fmt.Errorf("socket buffers: %w", err)
	}
	var fnErr error
	if err := rc.Control(func(fd uintptr) { fnErr = fn(int(fd)) }); err != nil {
		return fmt.Errorf("socket buffers: %w", err)
	}
	return fnErr
}

func set(fd, force, plain, size int) error {
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, force, size) == nil {
		return nil
	}
	// Without CAP_NET_ADMIN: the kernel caps this at rmem_max/wmem_max.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, plain, size); err != nil {
		return fmt.Errorf("setsockopt buffer: %w", err)
	}
	return nil
}

func get(fd int) (Sizes, error) {
	r, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
	if err != nil {
		return Sizes{}, fmt.Errorf("getsockopt receive buffer: %w", err)
	}
	s, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF)
	if err != nil {
		return Sizes{}, fmt.Errorf("getsockopt send buffer: %w", err)
	}
	return Sizes{Recv: r / 2, Send: s / 2}, nil
}
