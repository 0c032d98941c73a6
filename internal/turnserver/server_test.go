package turnserver

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func startServer(t *testing.T) *Server {
	t.Helper()
	s, err := ListenServer(ServerConfig{STUNListen: "127.0.0.1:0", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestServerAnswersBinding(t *testing.T) {
	s := startServer(t)
	conn, err := net.DialUDP("udp4", nil, s.Addr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	c, err := stun.NewClient(conn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	local := conn.LocalAddr()

	var got stun.XORMappedAddress
	var doErr error
	done := make(chan struct{})
	err = c.Start(stun.MustBuild(stun.TransactionID, stun.BindingRequest), func(ev stun.Event) {
		defer close(done)
		if ev.Error != nil {
			doErr = ev.Error
			return
		}
		doErr = got.GetFrom(ev.Message)
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("no STUN answer within 5s")
	}
	if doErr != nil {
		t.Fatalf("binding: %v", doErr)
	}
	want := local.(*net.UDPAddr)
	if !got.IP.Equal(want.IP) || got.Port != want.Port {
		t.Fatalf("XOR-MAPPED-ADDRESS = %s, want %s", got, want)
	}
}

func TestServerPortInUse(t *testing.T) {
	s := startServer(t)
	_, err := ListenServer(ServerConfig{STUNListen: s.Addr().String(), Logger: quietLogger()})
	if err == nil {
		t.Fatal("second server on the same port started")
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("error does not wrap EADDRINUSE: %v", err)
	}
	for _, want := range []string{"STUN listen " + s.Addr().String(), "address already in use", "--stun-listen"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestServerCloseIdempotent(t *testing.T) {
	s := startServer(t)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
