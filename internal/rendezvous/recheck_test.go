package rendezvous

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// proxy forwards TCP to target. With blackhole set it swallows
// everything in both directions without closing anything, as a NAT that
// forgot the connection's mapping does. After stall it reads nothing in
// either direction and closes nothing, as a client that stopped reading
// and then vanished; with smallBuffers its upstream sockets have small
// receive buffers, so the server's writes block soon.
type proxy struct {
	ln        net.Listener
	blackhole atomic.Bool
	stalled   chan struct{}
	stallOnce sync.Once
	quit      chan struct{}
	wg        sync.WaitGroup
	mu        sync.Mutex
	conns     []net.Conn
}

func startProxy(t *testing.T, target string, smallBuffers bool) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, stalled: make(chan struct{}), quit: make(chan struct{})}
	var d net.Dialer
	if smallBuffers {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) {
				_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
			})
		}
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := d.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			for _, dir := range [][2]net.Conn{{c, up}, {up, c}} {
				p.wg.Add(1)
				go func() {
					defer p.wg.Done()
					p.pipe(dir[1], dir[0])
				}()
			}
		}
	}()
	t.Cleanup(func() {
		close(p.quit)
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) stall() { p.stallOnce.Do(func() { close(p.stalled) }) }

func (p *proxy) url() string { return "http://" + p.ln.Addr().String() }

func (p *proxy) pipe(dst io.Writer, src io.Reader) {
	buf := make([]byte, 4096)
	for {
		if p.waitIfStalled() {
			return
		}
		n, err := src.Read(buf)
		if err != nil || p.waitIfStalled() {
			return
		}
		if p.blackhole.Load() {
			continue
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

// waitIfStalled blocks a stalled pipe until the test ends, and says so.
func (p *proxy) waitIfStalled() bool {
	select {
	case <-p.stalled:
		<-p.quit
		return true
	default:
		return false
	}
}

// clientPing is rvclient's ping pace after Recheck (its clientPing: two
// seconds, as docs/rendezvous.md says), written down here rather than
// read from the client under test.
const clientPing = 2 * time.Second

// Recheck on a healthy connection changes nothing and never blocks; on a
// connection that silently died it ends in a reconnect.
func TestRecheck(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", ServerConfig{})
	proxy := startProxy(t, s.ln.Addr().String(), false)
	ka := newKey(t)
	ina := newInbox()
	a := connect(t, proxy.url(), ka, nil, ina)
	waitFor(t, ina.regs, "registration")

	for i := 0; i < 100; i++ {
		a.Recheck()
	}
	// Two ping timeouts: had a recheck ping failed, the client would be
	// reconnecting by now.
	time.Sleep(2 * clientPing)
	if !a.Connected() {
		t.Fatal("rechecks dropped a healthy connection")
	}
	select {
	case <-ina.regs:
		t.Fatal("rechecks made a healthy client register again")
	default:
	}

	proxy.blackhole.Store(true)
	a.Recheck()
	deadline := time.Now().Add(3 * clientPing)
	for a.Connected() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if a.Connected() {
		t.Fatal("a recheck of a dead connection did not notice it")
	}
	proxy.blackhole.Store(false)
	waitFor(t, ina.regs, "re-registration after the dead connection")
}

// The keepalive pace scales: an idle client does not ping for many
// seconds; after Recheck it pings at once and then every clientPing.
func TestKeepalivePace(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", ServerConfig{})
	in := newInbox()
	c := connect(t, s.url(), newKey(t), nil, in)
	waitFor(t, in.regs, "registration")
	time.Sleep(clientPing + clientPing/2)
	if n := s.srv.Stats().Pings; n != 0 {
		t.Fatalf("an idle client pinged %d times in %s", n, clientPing+clientPing/2)
	}
	c.Recheck()
	time.Sleep(clientPing + clientPing/2)
	if n := s.srv.Stats().Pings; n != 2 {
		t.Fatalf("%d pings in %s after Recheck, want 2 (at once, then after %s)", n, clientPing+clientPing/2, clientPing)
	}
}
