// Package batchconn carries TURN over TCP and TLS in fewer system calls.
// A TURN client or server writes one frame (a ChannelData message, a STUN
// message) per Write, so a relayed bulk transfer costs one send (and, over
// TLS, one record) per packet; and pion's TURN server reads a stream with
// a 1600-byte buffer, one receive per packet. Conn keeps net.Conn's
// interface and
//
//   - queues writes, whole, and lets one flusher goroutine write what
//     queued while it was busy in one call: no delay when the link is
//     idle (the flusher writes at once), many frames per send (and per TLS
//     record) under load;
//   - optionally buffers reads, so small reads are served from one
//     larger receive.
//
// A Write returns once queued, as a TCP send returns once in the socket
// buffer; it waits while the queue is full, as a full socket buffer makes
// a send wait. The first write error is returned by every later Write.
package batchconn

import (
	"bufio"
	"errors"
	"net"
	"sync"
)

const (
	// MaxQueued bounds the bytes waiting for the flusher; beyond it Write
	// waits (the kernel's send buffer holds the rest).
	MaxQueued = 256 << 10
	// ReadBuffer is the read buffer of Conns made with buffered reads: a
	// TLS record's worth (a read from TLS never returns more), about ten
	// MTU-sized frames per receive over TCP. Every accepted connection
	// holds one, so it stays small.
	ReadBuffer = 16 << 10
	// keepSpare bounds the write buffer kept between bursts.
	keepSpare = 64 << 10
)

// Conn is a net.Conn with coalesced writes (see the package comment).
type Conn struct {
	net.Conn
	r *bufio.Reader // nil: reads go straight to Conn

	mu       sync.Mutex
	cond     sync.Cond
	queued   []byte // waiting for the flusher
	spare    []byte // the flusher's last buffer, reused
	inFlight bool   // the flusher is writing
	err      error  // first write error, or net.ErrClosed after Close
	closed   bool

	done      sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// New wraps c; with bufferReads its reads go through a ReadBuffer-sized
// buffer. The flusher goroutine ends with Close.
func New(c net.Conn, bufferReads bool) *Conn {
	b := &Conn{Conn: c}
	b.cond.L = &b.mu
	if bufferReads {
		b.r = bufio.NewReaderSize(c, ReadBuffer)
	}
	b.done.Add(1)
	go func() {
		defer b.done.Done()
		b.flush()
	}()
	return b
}

// Read reads from the buffer, or the connection.
func (b *Conn) Read(p []byte) (int, error) {
	if b.r != nil {
		return b.r.Read(p)
	}
	return b.Conn.Read(p)
}

// Write queues p (whole: frames never interleave) for the flusher.
func (b *Conn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.err == nil && len(b.queued) > 0 && len(b.queued)+len(p) > MaxQueued {
		b.cond.Wait()
	}
	if b.err != nil {
		return 0, b.err
	}
	b.queued = append(b.queued, p...)
	if !b.inFlight {
		b.cond.Broadcast()
	}
	return len(p), nil
}

// flush writes what is queued, as much per call as there is.
func (b *Conn) flush() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for {
		for len(b.queued) == 0 && !b.closed {
			b.cond.Wait()
		}
		if b.closed {
			return
		}
		out := b.queued
		b.queued, b.spare = b.spare[:0], nil
		b.inFlight = true
		b.cond.Broadcast() // writers waiting for room
		b.mu.Unlock()
		_, err := b.Conn.Write(out)
		b.mu.Lock()
		b.inFlight = false
		if cap(out) <= keepSpare {
			b.spare = out[:0]
		}
		if err != nil && b.err == nil {
			b.err = err
			b.cond.Broadcast()
		}
	}
}

// Close closes the connection (what is still queued is dropped) and stops
// the flusher; idempotent.
func (b *Conn) Close() error {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closed = true
		if b.err == nil {
			b.err = net.ErrClosed
		}
		b.cond.Broadcast()
		b.mu.Unlock()
		b.closeErr = b.Conn.Close()
		b.done.Wait()
	})
	if errors.Is(b.closeErr, net.ErrClosed) {
		return nil
	}
	return b.closeErr
}

// Listener wraps the connections a net.Listener accepts in Conns with
// buffered reads.
type Listener struct {
	net.Listener
}

// Accept returns the next connection, wrapped.
func (l Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return New(c, true), nil
}
