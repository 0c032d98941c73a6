package scenario

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"

	"github.com/punchd/punchd/internal/lab"
)

// FirstPing sends ICMP echo requests from inside host every interval until
// one from dst answers, and returns when it did. Send errors (no route yet,
// because punch0 is not up) are expected early on and just retried. Bounded
// by ctx and by a count of attempts.
func FirstPing(ctx context.Context, from *lab.Host, dst netip.Addr, interval time.Duration) (time.Time, error) {
	var conn *icmp.PacketConn
	if err := from.Do(func() error {
		var err error
		conn, err = icmp.ListenPacket("ip4:icmp", "0.0.0.0")
		return err
	}); err != nil {
		return time.Time{}, fmt.Errorf("icmp socket in %s: %w", from.Name, err)
	}
	defer conn.Close()

	id := os.Getpid() & 0xffff
	buf := make([]byte, 1500)
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(60 * time.Second)
	}
	maxAttempts := int(time.Until(deadline)/interval) + 1
	var lastErr error
	for seq := 1; seq <= maxAttempts && time.Now().Before(deadline); seq++ {
		msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("punchd-lab")}}
		wb, err := msg.Marshal(nil)
		if err != nil {
			return time.Time{}, err
		}
		if _, err := conn.WriteTo(wb, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
			lastErr = err
		}
		// Read replies until the next send is due.
		next := time.Now().Add(interval)
		for time.Now().Before(next) {
			_ = conn.SetReadDeadline(next)
			n, src, err := conn.ReadFrom(buf)
			if err != nil {
				break
			}
			at := time.Now()
			if ip, ok := src.(*net.IPAddr); !ok || !ip.IP.Equal(dst.AsSlice()) {
				continue
			}
			rm, err := icmp.ParseMessage(1, buf[:n])
			if err != nil || rm.Type != ipv4.ICMPTypeEchoReply {
				continue
			}
			if echo, ok := rm.Body.(*icmp.Echo); ok && echo.ID == id {
				return at, nil
			}
		}
		if err := ctx.Err(); err != nil {
			break
		}
	}
	return time.Time{}, fmt.Errorf("no ping answer from %s within the deadline (last send error: %v)", dst, lastErr)
}

// Transfer moves size random bytes over TCP from host `from` to `dst` (an
// address of host `to`, e.g. its overlay address) and checks that the
// SHA-256 of what arrived matches what was sent.
func Transfer(ctx context.Context, from, to *lab.Host, dst netip.Addr, size int64) (time.Duration, error) {
	return TransferAt(ctx, from, to, dst, size, 0)
}

// TransferAt is Transfer sending at most rate bytes per second (0: as fast
// as TCP goes), so that a transfer can be in flight while a test breaks and
// heals the path under it.
func TransferAt(ctx context.Context, from, to *lab.Host, dst netip.Addr, size, rate int64) (time.Duration, error) {
	var ln net.Listener
	if err := to.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", net.JoinHostPort(dst.String(), "0"))
		return err
	}); err != nil {
		return 0, fmt.Errorf("listen in %s on %s: %w", to.Name, dst, err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port

	type result struct {
		sum [32]byte
		n   int64
		err error
	}
	got := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- result{err: err}
			return
		}
		defer c.Close()
		h := sha256.New()
		n, err := io.Copy(h, c)
		var r result
		copy(r.sum[:], h.Sum(nil))
		r.n, r.err = n, err
		got <- r
	}()

	var c net.Conn
	if err := from.Do(func() error {
		d := net.Dialer{Timeout: 10 * time.Second}
		var err error
		c, err = d.DialContext(ctx, "tcp", net.JoinHostPort(dst.String(), fmt.Sprint(port)))
		return err
	}); err != nil {
		return 0, fmt.Errorf("dial %s from %s: %w", dst, from.Name, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	start := time.Now()
	h := sha256.New()
	var src io.Reader = rand.Reader
	if rate > 0 {
		src = &pacedReader{r: rand.Reader, rate: rate, start: start}
	}
	if _, err := io.CopyN(io.MultiWriter(c, h), src, size); err != nil {
		c.Close()
		return 0, fmt.Errorf("send %d bytes to %s: %w", size, dst, err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		c.Close()
		return 0, err
	}
	var r result
	select {
	case r = <-got:
	case <-ctx.Done():
		c.Close()
		ln.Close()
		return 0, ctx.Err()
	}
	c.Close()
	elapsed := time.Since(start)
	if r.err != nil {
		return 0, fmt.Errorf("receive on %s: %w", to.Name, r.err)
	}
	if r.n != size {
		return 0, fmt.Errorf("received %d of %d bytes", r.n, size)
	}
	var sent [32]byte
	copy(sent[:], h.Sum(nil))
	if sent != r.sum {
		return 0, errors.New("sha256 of received data differs from what was sent")
	}
	return elapsed, nil
}

// pacedReader reads no faster than rate bytes per second since start.
type pacedReader struct {
	r     io.Reader
	rate  int64
	start time.Time
	n     int64
}

func (p *pacedReader) Read(b []byte) (int, error) {
	const chunk = 16 << 10
	if len(b) > chunk {
		b = b[:chunk]
	}
	due := p.start.Add(time.Duration(p.n * int64(time.Second) / p.rate))
	if wait := time.Until(due); wait > 0 {
		time.Sleep(wait) // pacing is the point: there is no event to await
	}
	n, err := p.r.Read(b)
	p.n += int64(n)
	return n, err
}
