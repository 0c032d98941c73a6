package rendezvous

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/punchd/punchd/internal/identity"
	"github.com/punchd/punchd/internal/rvclient"
)

// The bounds tests run the server in a child process (this test binary
// again, see TestHelperServerProcess), so that its file descriptors and
// its memory are measured apart from the clients'.

var quiet = slog.New(slog.DiscardHandler)

const helperEnv = "PUNCHD_RENDEZVOUS_HELPER"

type serverProcess struct {
	pid  int
	addr string
}

func startServerProcess(t *testing.T, cfg ServerConfig) *serverProcess {
	t.Helper()
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperServerProcess$")
	cmd.Env = append(os.Environ(), helperEnv+"="+string(b))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close() // the helper exits when its stdin closes
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "ADDR "); ok {
				line <- a
			}
		}
	}()
	select {
	case a := <-line:
		return &serverProcess{pid: cmd.Process.Pid, addr: a}
	case <-time.After(10 * time.Second):
		t.Fatal("server process did not start")
	}
	return nil
}

func (p *serverProcess) url() string { return "http://" + p.addr }

func (p *serverProcess) fds(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(p.pid) + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// status reads a "Vm...:  N kB" line of /proc/PID/status, in bytes.
func (p *serverProcess) status(t *testing.T, field string) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, p.pid)
	return 0
}

// TestHelperServerProcess is the child of startServerProcess; it does
// nothing in a normal test run.
func TestHelperServerProcess(t *testing.T) {
	js := os.Getenv(helperEnv)
	if js == "" {
		t.Skip("helper process for the bounds tests")
	}
	var cfg ServerConfig
	if err := json.Unmarshal([]byte(js), &cfg); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Logger = quiet
	srv := NewServer(cfg)
	hs := NewHTTPServer(srv.Handler(), HTTPLimits{})
	go hs.Serve(LimitListener(ln, HTTPLimits{}))
	fmt.Printf("ADDR %s\n", ln.Addr())
	io.Copy(io.Discard, os.Stdin)
	hs.Close()
	srv.Close()
}

// abortHandshake opens a WebSocket upgrade and gives up in one of three
// ways: right after the request, after reading the challenge, or after
// sending bytes that are no WebSocket frame.
func abortHandshake(addr string, how int) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	req := "GET /v1/ws HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		return err
	}
	switch how {
	case 0:
	case 1:
		r := bufio.NewReader(c)
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			return fmt.Errorf("upgrade: %s", resp.Status)
		}
		hdr := make([]byte, 2) // the challenge frame's header
		if _, err := io.ReadFull(r, hdr); err != nil {
			return err
		}
	case 2:
		_, err = c.Write([]byte("\x81\x7fjunk that is not a frame"))
	}
	return err
}

// connectVia registers key at url (a rendezvous or a proxy in front of
// one) watching watch; it counts presence and messages.
func connectVia(t *testing.T, url string, key identity.PrivateKey, watch []identity.PublicKey, online *atomic.Int64) *rvclient.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := rvclient.Connect(ctx, rvclient.ClientConfig{URL: url, Key: key, Watch: watch, Logger: quiet,
		OnPresence: func(_ identity.PublicKey, on bool) {
			if on && online != nil {
				online.Add(1)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { go c.Close() }) // a stalled client takes seconds to give up; do not wait
	return c
}

func waitCount(t *testing.T, n *atomic.Int64, want int64, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for n.Load() < want {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d of %d", what, n.Load(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func keys(t *testing.T, n int) ([]identity.PrivateKey, []identity.PublicKey) {
	priv := make([]identity.PrivateKey, n)
	pub := make([]identity.PublicKey, n)
	for i := range priv {
		priv[i] = newKey(t)
		pub[i] = priv[i].PublicKey()
	}
	return priv, pub
}

// Every accepted connection is closed on every path: 1,000 aborted
// handshakes and 100 registered clients that stop reading and vanish
// leave the server's fd count where it started.
func TestFDsReturnToBaseline(t *testing.T) {
	srv := startServerProcess(t, ServerConfig{MaxPeersPerIP: 1000, WriteTimeout: 500 * time.Millisecond, PingInterval: time.Second, RegisterTimeout: 2 * time.Second})
	base := srv.fds(t)

	var wg sync.WaitGroup
	var failed atomic.Int64
	next := atomic.Int64{}
	for w := 0; w < 20; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)); i <= 1000; i = int(next.Add(1)) {
				if err := abortHandshake(srv.addr, i%3); err != nil {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d aborted handshakes could not even start", failed.Load())
	}

	proxy := startProxy(t, srv.addr, true)
	sinkKeys, sinks := keys(t, 100)
	senderKey := newKey(t)
	var online atomic.Int64
	sender := connectVia(t, srv.url(), senderKey, sinks, &online)
	for _, k := range sinkKeys {
		connectVia(t, proxy.url(), k, []identity.PublicKey{senderKey.PublicKey()}, nil)
	}
	waitCount(t, &online, int64(len(sinks)), "sinks online")
	proxy.stall()
	payload := make([]byte, 16<<10)
	for round := 0; round < 2; round++ {
		for _, k := range sinks {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = sender.Send(ctx, k, payload)
			cancel()
		}
	}
	sender.Close()

	deadline := time.Now().Add(10 * time.Second)
	for {
		n := srv.fds(t)
		if n <= base+1 {
			t.Logf("fds: %d at start, %d after", base, n)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("server fds: %d at start, still %d after 10 s", base, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// 16 slow sinks and 8 senders, all from one address, cannot make the
// server hold more than its queue budgets.
func TestSlowSinksDoNotPinMemory(t *testing.T) {
	srv := startServerProcess(t, ServerConfig{})
	proxy := startProxy(t, srv.addr, true)
	sinkKeys, sinks := keys(t, 16)
	senderKeys, senderIDs := keys(t, 8)
	var online atomic.Int64
	senders := make([]*rvclient.Client, len(senderKeys))
	for i, k := range senderKeys {
		senders[i] = connectVia(t, srv.url(), k, sinks, &online)
	}
	for _, k := range sinkKeys {
		connectVia(t, proxy.url(), k, senderIDs, nil)
	}
	waitCount(t, &online, int64(len(sinks)*len(senders)), "sinks online at the senders")
	proxy.stall()
	time.Sleep(200 * time.Millisecond)
	before := srv.status(t, "VmRSS")

	payload := make([]byte, 40<<10)
	var wg sync.WaitGroup
	stop := time.Now().Add(4 * time.Second)
	for i, s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := i; time.Now().Before(stop); j++ {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				_ = s.Send(ctx, sinks[j%len(sinks)], payload)
				cancel()
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	peak := srv.status(t, "VmHWM")
	t.Logf("server RSS %d MiB before, peak %d MiB", before>>20, peak>>20)
	if grew := peak - before; grew >= 64<<20 {
		t.Fatalf("slow sinks grew the server's RSS by %d MiB (limit 64)", grew>>20)
	}
}
