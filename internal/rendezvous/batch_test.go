package rendezvous

import (
	"bufio"
	"net"
	"testing"
	"time"
)

// writeCounter is a net.Conn that records its writes.
type writeCounter struct {
	net.Conn // nil: only Write and SetWriteDeadline are used
	writes   []int
	deadline time.Time
}

func (c *writeCounter) Write(p []byte) (int, error) {
	c.writes = append(c.writes, len(p))
	return len(p), nil
}

func (c *writeCounter) SetWriteDeadline(t time.Time) error { c.deadline = t; return nil }

func TestBatchWriter(t *testing.T) {
	tests := []struct {
		name      string
		batch     bool
		frames    []int // payload sizes written through the 512-byte bufio.Writer after a 4-byte header, each flushed (as the WebSocket library does)
		maxWrites int
		minWrites int
	}{
		// Without a batch the small buffer splits a 1 KiB frame.
		{"no batch, one 1100-byte frame", false, []int{1100}, 3, 2},
		{"batch, one 1100-byte frame", true, []int{1100}, 1, 1},
		{"batch, 20 frames", true, []int{1100, 300, 40, 2000, 1100, 1100, 1100, 1100, 1100, 1100, 1100, 1100, 1100, 1100, 1100, 1100, 1100, 1100, 1100, 1100}, 1, 1},
		// The batch's buffer is bounded: 200 KiB leave in a few writes
		// of at most about batchFlushAt.
		{"batch, 200 KiB", true, []int{50 << 10, 50 << 10, 50 << 10, 50 << 10}, 4, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &writeCounter{}
			w := &batchWriter{conn: c}
			bw := bufio.NewWriterSize(w, hijackBuffer)
			if tt.batch {
				w.begin(time.Second)
				if c.deadline.IsZero() {
					t.Fatal("a batch sets no write deadline")
				}
			}
			total := 0
			for _, n := range tt.frames {
				bw.Write(make([]byte, 4))
				bw.Write(make([]byte, n))
				bw.Flush()
				total += 4 + n
			}
			if tt.batch {
				if err := w.end(); err != nil {
					t.Fatal(err)
				}
				if !c.deadline.IsZero() {
					t.Fatal("the write deadline stays set after the batch")
				}
			}
			sum := 0
			for _, n := range c.writes {
				sum += n
				if n > batchFlushAt+50<<10 {
					t.Fatalf("a write of %d bytes: the batch buffer is not bounded", n)
				}
			}
			if sum != total {
				t.Fatalf("%d bytes written, want %d", sum, total)
			}
			if len(c.writes) < tt.minWrites || len(c.writes) > tt.maxWrites {
				t.Fatalf("%d writes (%v), want %d..%d", len(c.writes), c.writes, tt.minWrites, tt.maxWrites)
			}
		})
	}
}
