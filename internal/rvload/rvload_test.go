package rvload

import (
	"context"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/punchd/punchd/internal/rendezvous"
)

const helperEnv = "PUNCHD_RVLOAD_HELPER"

// TestHelperServer is the server the load test runs against: this test
// binary again, serving the signaling server as `punchd rendezvous`
// does. It does nothing in a normal test run.
func TestHelperServer(t *testing.T) {
	addr := os.Getenv(helperEnv)
	if addr == "" {
		t.Skip("helper process for TestLoadSmall")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := rendezvous.NewServer(rendezvous.ServerConfig{Logger: slog.New(slog.NewJSONHandler(os.Stderr, nil))})
	hs := rendezvous.NewHTTPServer(srv.Handler(), rendezvous.HTTPLimits{})
	go hs.Serve(rendezvous.LimitListener(ln, rendezvous.HTTPLimits{}))
	// Run until the load stops us (SIGTERM ends the process) or the
	// test's own time runs out.
	time.Sleep(2 * time.Minute)
	hs.Close()
	srv.Close()
}

// The load path end to end, small: 200 peers held, a storm of 200, a
// flood; nobody loses a registration, the server survives and gives its
// fds back, junk is logged at a bounded rate. (Figures come from
// `punchd-lab load`; nothing here is timed.)
func TestLoadSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server process and 400 clients; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	rep, err := Run(ctx, Config{
		Command: func(listen string) *exec.Cmd {
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperServer$")
			cmd.Env = append(os.Environ(), helperEnv+"="+listen)
			return cmd
		},
		Peers: 200, ActivePairs: 20, StormPeers: 200, Flood: true, FloodRate: 100, FloodSpammers: 4,
		Idle: time.Second, Latency: 2 * time.Second, PeersPerSource: 50, StormWatch: time.Second,
	})
	var out strings.Builder
	rep.Print(&out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case rep.RegisterFailed != 0 || rep.StormFailed != 0:
		t.Errorf("registrations failed: %d held, %d in the storm", rep.RegisterFailed, rep.StormFailed)
	case rep.StormLost != 0 || rep.FloodLost != 0:
		t.Errorf("held peers lost their registration: %d in the storm, %d in the flood", rep.StormLost, rep.FloodLost)
	case !rep.ServerAlive:
		t.Error("the server died")
	case rep.AfterFDs > rep.HeldFDs+16:
		t.Errorf("server fds %d after the flood, %d before", rep.AfterFDs, rep.HeldFDs)
	case rep.Quiet.Messages == 0 || rep.Flooded.Messages == 0 || rep.Quiet.Sealed == 0:
		t.Error("no signaling messages measured")
	case rep.FloodConns == 0:
		t.Error("no flood")
	}
	// One line per cause per minute: the run is well under two minutes.
	for cause, n := range rep.JunkLogLinesCaus {
		if n > 2 {
			t.Errorf("%d log lines about %s", n, cause)
		}
	}
	if rep.JunkLogLines == 0 {
		t.Error("the flood left no log line at all")
	}
}
