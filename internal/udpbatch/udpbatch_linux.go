// Package udpbatch reads a UDP socket many datagrams per system call
// (Linux recvmmsg) without allocating per datagram. golang.org/x/net's
// ReadBatch does the same call but allocates a net.UDPAddr (and its IP)
// for every datagram's source; on a relay path without UDP GRO that is two
// allocations per tunnel packet. Here the source comes back as a
// netip.AddrPort, a value.
//
// It also owns the send side's batching: the UDP GSO layout of a batch
// (gso_linux.go) and the one writer that sends batches with GSO and falls
// back without it (Writer), shared by the TURN server and the tunnel.
package udpbatch

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Message is one datagram slot: the caller provides Buf (and OOB for
// control messages, or nil); Read fills the rest.
type Message struct {
	Buf   []byte
	OOB   []byte
	N     int            // bytes read into Buf
	NN    int            // bytes of control messages in OOB
	Flags int            // recvmsg flags, e.g. unix.MSG_TRUNC
	Addr  netip.AddrPort // source
}

// Reader reads one socket; one goroutine at a time.
type Reader struct {
	rc    syscall.RawConn
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrAny
	// The call's state, in the Reader so that the callback RawConn.Read
	// takes is made once and nothing escapes per call.
	fn      func(fd uintptr) bool
	n, got  int
	callErr error
}

// NewReader reads c (a *net.UDPConn) up to max datagrams per call.
func NewReader(c syscall.Conn, max int) (*Reader, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("batched UDP reads: %w", err)
	}
	r := &Reader{
		rc:    rc,
		hdrs:  make([]unix.Mmsghdr, max),
		iovs:  make([]unix.Iovec, max),
		names: make([]unix.RawSockaddrAny, max),
	}
	r.fn = r.recvmmsg
	return r, nil
}

// recvmmsg is the RawConn.Read callback: true when done, false to wait
// for the socket to be readable.
func (r *Reader) recvmmsg(fd uintptr) bool {
	k, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.hdrs[0])), uintptr(r.n), 0, 0, 0)
	switch errno {
	case 0:
		r.got = int(k)
		return true
	case unix.EAGAIN, unix.EINTR:
		return false
	default:
		r.callErr = os.NewSyscallError("recvmmsg", errno)
		return true
	}
}

// Read waits for datagrams and fills msgs[:n] with up to len(msgs) of
// them (at most the Reader's max). Every msgs[i].Buf must be non-empty.
// After the socket is closed it returns an error matching net.ErrClosed.
func (r *Reader) Read(msgs []Message) (int, error) {
	n := min(len(msgs), len(r.hdrs))
	if n == 0 {
		return 0, nil
	}
	for i := 0; i < n; i++ {
		m := &msgs[i]
		r.iovs[i].Base = &m.Buf[0]
		r.iovs[i].SetLen(len(m.Buf))
		h := &r.hdrs[i]
		h.Len = 0
		h.Hdr.Name = (*byte)(unsafe.Pointer(&r.names[i]))
		h.Hdr.Namelen = unix.SizeofSockaddrAny
		h.Hdr.Iov = &r.iovs[i]
		h.Hdr.SetIovlen(1)
		h.Hdr.Flags = 0
		if len(m.OOB) > 0 {
			h.Hdr.Control = &m.OOB[0]
			h.Hdr.SetControllen(len(m.OOB))
		} else {
			h.Hdr.Control = nil
			h.Hdr.SetControllen(0)
		}
	}
	r.n, r.got, r.callErr = n, 0, nil
	if err := r.rc.Read(r.fn); err != nil {
		return 0, err
	}
	if r.callErr != nil {
		return 0, r.callErr
	}
	got := r.got
	for i := 0; i < got; i++ {
		m, h := &msgs[i], &r.hdrs[i]
		m.N = int(h.Len)
		m.NN = int(h.Hdr.Controllen)
		m.Flags = int(h.Hdr.Flags)
		m.Addr = addrPort(&r.names[i])
	}
	return got, nil
}

// addrPort decodes a kernel socket address; the zero AddrPort for a
// family other than IPv4 and IPv6.
func addrPort(sa *unix.RawSockaddrAny) netip.AddrPort {
	switch sa.Addr.Family {
	case unix.AF_INET:
		s := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(s.Addr), port(&s.Port))
	case unix.AF_INET6:
		s := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom16(s.Addr), port(&s.Port))
	}
	return netip.AddrPort{}
}

// port reads a sin_port, which is in network byte order whatever the host's.
func port(p *uint16) uint16 {
	return binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(p))[:])
}

// Stream reads a socket a batch at a time into buffers of its own and
// hands out one datagram at a time, for code that wants ReadFrom (the
// sockets pion reads). One goroutine at a time.
type Stream struct {
	rd      *Reader
	msgs    []Message
	n, next int
}

// NewStream reads c up to batch datagrams per call into buffers of
// bufSize bytes (longer datagrams are cut: Message.Flags has MSG_TRUNC).
func NewStream(c syscall.Conn, batch, bufSize int) (*Stream, error) {
	rd, err := NewReader(c, batch)
	if err != nil {
		return nil, err
	}
	s := &Stream{rd: rd, msgs: make([]Message, batch)}
	for i := range s.msgs {
		s.msgs[i].Buf = make([]byte, bufSize)
	}
	return s, nil
}

// Next returns the next datagram, reading a batch when the last one is
// used up. The message is valid until the call after the next batch read.
func (s *Stream) Next() (*Message, error) {
	if s.next >= s.n {
		n, err := s.rd.Read(s.msgs)
		if err != nil {
			return nil, err
		}
		s.n, s.next = n, 0
	}
	m := &s.msgs[s.next]
	s.next++
	return m, nil
}

// Data is the datagram's bytes.
func (m *Message) Data() []byte { return m.Buf[:m.N] }
