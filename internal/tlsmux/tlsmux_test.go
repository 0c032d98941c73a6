package tlsmux

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// testCert is a self-signed certificate for 127.0.0.1 and a pool that
// trusts it.
func testCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tlsmux test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

func newMux(t *testing.T, cfg Config) (*Mux, *x509.CertPool) {
	t.Helper()
	cert, pool := testCert(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	m, err := New(ln, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); m.Close() })
	return m, pool
}

// stunBinding is a STUN Binding request header (no attributes).
func stunBinding() []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint16(b[0:], 0x0001)
	binary.BigEndian.PutUint32(b[4:], stunMagicCookie)
	copy(b[8:], "txid-twelve!")
	return b
}

// Each client kind lands on its side, with every byte it sent.
func TestDispatch(t *testing.T) {
	tests := []struct {
		name  string
		alpn  []string
		first []byte
		want  Protocol
	}{
		{"STUN without ALPN", nil, stunBinding(), ProtoTURN},
		{"HTTP without ALPN", nil, []byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"), ProtoHTTP},
		{"ALPN stun.turn", []string{"stun.turn"}, []byte("anything at all"), ProtoTURN},
		{"ALPN http/1.1", []string{"http/1.1"}, stunBinding(), ProtoHTTP},
		{"ALPN h2 and http/1.1", []string{"h2", "http/1.1"}, []byte("GET / HTTP/1.1\r\n\r\n"), ProtoHTTP},
	}
	m, pool := newMux(t, Config{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tls.Dial("tcp", m.Addr().String(), &tls.Config{RootCAs: pool, NextProtos: tt.alpn})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(tt.first); err != nil {
				t.Fatal(err)
			}
			got := make(chan Protocol, 2)
			data := make(chan []byte, 2)
			for _, p := range []Protocol{ProtoHTTP, ProtoTURN} {
				go func() {
					sc, err := m.Listener(p).Accept()
					if err != nil {
						return
					}
					defer sc.Close()
					b := make([]byte, len(tt.first))
					_ = sc.SetReadDeadline(time.Now().Add(2 * time.Second))
					if _, err := io.ReadFull(sc, b); err == nil {
						data <- b
					}
					got <- p
				}()
			}
			select {
			case p := <-got:
				if p != tt.want {
					t.Fatalf("went to %s, want %s", p, tt.want)
				}
			case <-time.After(3 * time.Second):
				t.Fatal("no side accepted the connection")
			}
			select {
			case b := <-data:
				if string(b) != string(tt.first) {
					t.Fatalf("received %q, sent %q", b, tt.first)
				}
			default:
				t.Fatal("the accepted connection lost the first bytes")
			}
			// Unblock the other side's Accept for the next case.
			c2, err := tls.Dial("tcp", m.Addr().String(), &tls.Config{RootCAs: pool, NextProtos: []string{map[Protocol]string{ProtoHTTP: "stun.turn", ProtoTURN: "http/1.1"}[tt.want]}})
			if err == nil {
				_, _ = c2.Write(make([]byte, len(tt.first)))
				<-got
				c2.Close()
			}
		})
	}
}

// A real HTTPS client and server on the HTTP side, as signaling uses it.
func TestHTTPServer(t *testing.T) {
	m, pool := newMux(t, Config{})
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}), ReadHeaderTimeout: time.Second}
	go func() { _ = hs.Serve(m.Listener(ProtoHTTP)) }()
	defer hs.Close()
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 5 * time.Second}
	resp, err := cl.Get("https://" + m.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "ok" {
		t.Fatalf("body %q", b)
	}
	// Closing the HTTP side leaves the TURN side serving.
	hs.Close()
	c, err := tls.Dial("tcp", m.Addr().String(), &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write(stunBinding())
	done := make(chan error, 1)
	go func() {
		sc, err := m.Listener(ProtoTURN).Accept()
		if err == nil {
			sc.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("TURN side after the HTTP side closed: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("TURN side did not accept after the HTTP side closed")
	}
}

// What a stranger can make the Mux hold is bounded: a connection that
// never handshakes is closed after the timeout, one that handshakes and
// says nothing too, handshakes beyond the cap are refused at once, and so
// are connections beyond a side's backlog.
func TestBounds(t *testing.T) {
	t.Run("silent before the handshake", func(t *testing.T) {
		m, _ := newMux(t, Config{HandshakeTimeout: 200 * time.Millisecond})
		c, err := net.Dial("tcp", m.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if !closedWithin(c, 2*time.Second) {
			t.Fatal("a connection that never handshakes is still open")
		}
	})
	t.Run("silent after the handshake", func(t *testing.T) {
		m, pool := newMux(t, Config{HandshakeTimeout: 300 * time.Millisecond})
		c, err := tls.Dial("tcp", m.Addr().String(), &tls.Config{RootCAs: pool})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if !closedWithin(c, 2*time.Second) {
			t.Fatal("a connection that handshakes and sends nothing is still open")
		}
	})
	t.Run("handshakes in flight", func(t *testing.T) {
		m, _ := newMux(t, Config{HandshakeTimeout: 5 * time.Second, MaxHandshakes: 2})
		var held []net.Conn
		for i := 0; i < 2; i++ {
			c, err := net.Dial("tcp", m.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, c)
			defer c.Close()
		}
		time.Sleep(100 * time.Millisecond) // both are in their handshakes
		c, err := net.Dial("tcp", m.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if !closedWithin(c, time.Second) {
			t.Fatal("a handshake beyond the cap was not refused")
		}
		if m.Dropped() == 0 {
			t.Error("the refusal was not counted")
		}
		for _, h := range held {
			h.Close()
		}
	})
	t.Run("backlog", func(t *testing.T) {
		m, pool := newMux(t, Config{Backlog: 1})
		var conns []*tls.Conn
		for i := 0; i < 2; i++ {
			c, err := tls.Dial("tcp", m.Addr().String(), &tls.Config{RootCAs: pool, NextProtos: []string{"stun.turn"}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			conns = append(conns, c)
		}
		// Nobody accepts: the first waits in the backlog, the second is closed.
		if !closedWithin(conns[1], 2*time.Second) {
			t.Fatal("a connection beyond the backlog is still open")
		}
		if closedWithin(conns[0], 200*time.Millisecond) {
			t.Fatal("the connection in the backlog was closed")
		}
	})
}

// closedWithin reports whether the peer closes c within d.
func closedWithin(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := bufio.NewReader(c).ReadByte()
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return err != nil
}

func TestSniff(t *testing.T) {
	tests := []struct {
		name string
		head []byte
		want Protocol
	}{
		{"STUN binding", stunBinding()[:8], ProtoTURN},
		{"STUN allocate", []byte{0x00, 0x03, 0x00, 0x10, 0x21, 0x12, 0xa4, 0x42}, ProtoTURN},
		{"GET", []byte("GET / HT"), ProtoHTTP},
		{"POST", []byte("POST /re"), ProtoHTTP},
		{"cookie but top bits set", []byte{0x40, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42}, ProtoHTTP},
		{"no cookie", []byte{0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}, ProtoHTTP},
		{"short", []byte{0x00, 0x01}, ProtoHTTP},
	}
	for _, tt := range tests {
		if got := Sniff(tt.head); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
		}
	}
	if !strings.Contains(ProtoTURN.String()+ProtoHTTP.String(), "turnhttp") {
		t.Error("Protocol names")
	}
}

func FuzzSniff(f *testing.F) {
	f.Add(stunBinding())
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p := Sniff(b)
		if p == ProtoTURN && (len(b) < 8 || binary.BigEndian.Uint32(b[4:8]) != stunMagicCookie) {
			t.Fatalf("TURN without a STUN header: %x", b)
		}
	})
}
