package batchconn

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingConn counts the writes that reach the connection.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// frame is [writer][seq uint32][len uint32][payload].
func frame(writer byte, seq uint32, size int) []byte {
	b := make([]byte, hdrLen+size)
	b[0] = writer
	binary.BigEndian.PutUint32(b[1:5], seq)
	binary.BigEndian.PutUint32(b[5:9], uint32(size))
	for i := range size {
		b[hdrLen+i] = byte(seq) + byte(i)
	}
	return b
}

const hdrLen = 9

// Frames written by concurrent writers arrive whole, each writer's in
// order, in fewer writes than frames under load.
func TestFramesArriveWholeAndCoalesce(t *testing.T) {
	for _, tt := range []struct {
		name             string
		writers, perEach int
		size             int
		bufferReads      bool
	}{
		{"one writer, small frames", 1, 2000, 100, false},
		{"four writers, MTU frames", 4, 500, 1400, true},
		{"frames larger than the queue", 1, 4, MaxQueued + 100, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cl, sv := tcpPair(t)
			cc := &countingConn{Conn: cl}
			b := New(cc, tt.bufferReads)
			defer b.Close()
			var wg sync.WaitGroup
			for w := range tt.writers {
				wg.Go(func() {
					for i := range tt.perEach {
						if _, err := b.Write(frame(byte(w), uint32(i), tt.size)); err != nil {
							t.Error(err)
							return
						}
					}
				})
			}
			next := make([]uint32, tt.writers)
			total := tt.writers * tt.perEach
			_ = sv.SetReadDeadline(time.Now().Add(20 * time.Second))
			hdr := make([]byte, hdrLen)
			var bad error
			for range total {
				if _, err := io.ReadFull(sv, hdr); err != nil {
					bad = err
					break
				}
				w, seq, size := hdr[0], binary.BigEndian.Uint32(hdr[1:5]), int(binary.BigEndian.Uint32(hdr[5:9]))
				if int(w) >= tt.writers || size != tt.size {
					bad = errors.New("broken frame header")
					break
				}
				body := make([]byte, size)
				if _, err := io.ReadFull(sv, body); err != nil {
					bad = err
					break
				}
				if seq != next[w] || !bytes.Equal(append(hdr, body...), frame(w, seq, tt.size)) {
					bad = errors.New("frame out of order or broken")
					break
				}
				next[w]++
			}
			if bad != nil {
				b.Close()
			}
			wg.Wait()
			if bad != nil {
				t.Fatal(bad)
			}
			if n := cc.writes.Load(); tt.size < 2000 && n >= int64(total) {
				t.Errorf("%d writes for %d frames: nothing coalesced", n, total)
			}
		})
	}
}

// Buffered reads serve small reads from one receive.
func TestBufferedReads(t *testing.T) {
	cl, sv := tcpPair(t)
	b := New(sv, true)
	defer b.Close()
	want := bytes.Repeat([]byte("0123456789"), 1000)
	if _, err := cl.Write(want); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 0, len(want))
	buf := make([]byte, 100)
	_ = b.SetReadDeadline(time.Now().Add(5 * time.Second))
	for len(got) < len(want) {
		n, err := b.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:n]...)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("read back different bytes")
	}
}

// A peer that never reads makes Write wait once the queue and the socket
// buffers are full (backpressure, bounded memory); Close ends the wait,
// and later Writes fail; Close is idempotent.
func TestBackpressureAndClose(t *testing.T) {
	cl, _ := tcpPair(t)
	b := New(cl, false)
	blocked := make(chan error, 1)
	go func() {
		chunk := make([]byte, 64<<10)
		for i := 0; i < 4096; i++ { // 256 MiB: far beyond any socket buffer
			if _, err := b.Write(chunk); err != nil {
				blocked <- err
				return
			}
		}
		blocked <- nil
	}()
	select {
	case err := <-blocked:
		t.Fatalf("256 MiB written to a peer that never reads (err %v)", err)
	case <-time.After(500 * time.Millisecond):
	}
	b.mu.Lock()
	queued := len(b.queued)
	b.mu.Unlock()
	if queued > MaxQueued+64<<10 {
		t.Fatalf("%d bytes queued, bound is %d", queued, MaxQueued)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-blocked:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("blocked Write ended with %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a blocked Write")
	}
	if _, err := b.Write([]byte("x")); err == nil {
		t.Fatal("Write after Close succeeded")
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
