package rendezvous

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// HTTPLimits bound what a stranger can hold of the HTTP side before and
// around the WebSocket upgrade. Zero values get defaults.
type HTTPLimits struct {
	// MaxConns caps TCP connections in total (upgraded or not); further
	// ones wait in the kernel's accept queue. Default 32768.
	MaxConns int
	// ReadHeaderTimeout bounds the request line and headers; default 5 s.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes a keep-alive connection between requests;
	// default 30 s. (Upgraded connections are the signaling server's:
	// see ServerConfig.IdleTimeout.)
	IdleTimeout time.Duration
	// MaxHeaderBytes caps request headers; default 8 KiB (a WebSocket
	// upgrade needs well under 1 KiB).
	MaxHeaderBytes int
}

func (l *HTTPLimits) defaults() {
	setDefault(&l.MaxConns, 32768)
	setDefault(&l.ReadHeaderTimeout, 5*time.Second)
	setDefault(&l.IdleTimeout, 30*time.Second)
	setDefault(&l.MaxHeaderBytes, 8<<10)
}

// NewHTTPServer returns an http.Server for h with the header and idle
// limits; serve it on LimitListener(ln, limits) for the connection cap.
func NewHTTPServer(h http.Handler, limits HTTPLimits) *http.Server {
	limits.defaults()
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: limits.ReadHeaderTimeout,
		// ReadTimeout covers the body of plain requests; net/http clears
		// deadlines when a handler hijacks the connection (WebSocket).
		ReadTimeout:    limits.ReadHeaderTimeout,
		WriteTimeout:   limits.ReadHeaderTimeout,
		IdleTimeout:    limits.IdleTimeout,
		MaxHeaderBytes: limits.MaxHeaderBytes,
	}
}

// LimitListener caps the connections open at once from ln: Accept waits
// (the rest wait in the kernel's accept queue) while MaxConns are open.
// It does what golang.org/x/net/netutil's does, and its connections
// also give the one under them (NetConn), so that the server can ask the
// kernel about the socket (see unreadBytes).
func LimitListener(ln net.Listener, limits HTTPLimits) net.Listener {
	limits.defaults()
	return &limitListener{Listener: ln, sem: make(chan struct{}, limits.MaxConns), done: make(chan struct{})}
}

type limitListener struct {
	net.Listener
	sem  chan struct{}
	once sync.Once
	done chan struct{}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

func (l *limitListener) Close() error {
	err := l.Listener.Close()
	l.once.Do(func() { close(l.done) })
	return err
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// NetConn is the connection under the cap's bookkeeping.
func (c *limitConn) NetConn() net.Conn { return c.Conn }

// smallBuffers hands the WebSocket library a hijacked connection with
// small bufio buffers instead of net/http's 4 KiB reader and writer: ten
// thousand idle peers would otherwise hold 80 MiB of buffers. Frames
// larger than a buffer are read and written past it, so they cost no copy.
type smallBuffers struct {
	http.ResponseWriter
	conn  net.Conn     // the hijacked connection, for closing it within a bound
	batch *batchWriter // under the bufio.Writer: the server's writer batches frames
}

const hijackBuffer = 512

func (w *smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.conn = conn
	w.batch = &batchWriter{conn: conn}
	var r io.Reader = conn
	if n := brw.Reader.Buffered(); n > 0 {
		// The client may have sent its first frame right after the
		// upgrade request: keep those bytes.
		b, _ := brw.Reader.Peek(n)
		r = io.MultiReader(bytes.NewReader(bytes.Clone(b)), conn)
	}
	return conn, bufio.NewReadWriter(bufio.NewReaderSize(r, hijackBuffer), bufio.NewWriterSize(w.batch, hijackBuffer)), nil
}
