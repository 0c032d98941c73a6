package rendezvous

import (
	"net"
	"sync"
	"time"
)

// batchWriter sits under the WebSocket library's small bufio.Writer (see
// smallBuffers). Outside a batch it writes through: a pong or a close
// frame goes out at once. During a batch (the server's writer goroutine
// sending a client's queue) it gathers every frame in a buffer borrowed
// from a pool and writes them with one system call when the batch ends,
// under a socket write deadline. An idle peer therefore holds a 512-byte
// buffer only, while a frame larger than that (a sealed offer is about
// 1 KiB) still leaves in one write and one TCP segment instead of two or
// three; and a batch needs no timer or context of its own.
type batchWriter struct {
	conn net.Conn

	mu   sync.Mutex
	buf  *[]byte // borrowed from batchPool during a batch; nil outside
	err  error   // a failed write: the connection is broken
	held bool
}

// batchFlushAt bounds a batch's buffer: past it, the batch writes what it
// has and goes on.
const batchFlushAt = 64 << 10

var batchPool = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

func (w *batchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return 0, w.err
	}
	if !w.held {
		n, err := w.conn.Write(p)
		w.err = err
		return n, err
	}
	*w.buf = append(*w.buf, p...)
	if len(*w.buf) >= batchFlushAt {
		if err := w.flushLocked(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// begin starts a batch whose writes must all be done within timeout.
func (w *batchWriter) begin(timeout time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.held = true
	w.buf = batchPool.Get().(*[]byte)
	if w.err == nil {
		w.err = w.conn.SetWriteDeadline(time.Now().Add(timeout))
	}
}

// end writes what the batch gathered and ends it.
func (w *batchWriter) end() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	err := w.flushLocked()
	w.held = false
	if cap(*w.buf) <= batchFlushAt*2 {
		*w.buf = (*w.buf)[:0]
		batchPool.Put(w.buf)
	}
	w.buf = nil
	if err == nil {
		// Pongs and close frames written outside a batch have no
		// deadline of their own here (the library bounds them).
		err = w.conn.SetWriteDeadline(time.Time{})
		w.err = err
	}
	return err
}

func (w *batchWriter) flushLocked() error {
	if w.err != nil {
		return w.err
	}
	if len(*w.buf) > 0 {
		_, w.err = w.conn.Write(*w.buf)
		*w.buf = (*w.buf)[:0]
	}
	return w.err
}
