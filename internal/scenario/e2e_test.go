package scenario

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/punchd/punchd/internal/lab"
)

// punchdBinary is built once per test binary run by TestMain.
var punchdBinary string

func TestMain(m *testing.M) {
	code := func() int {
		flag.Parse() // for testing.Short
		if os.Geteuid() != 0 || testing.Short() {
			// The lab tests skip themselves with a message; nothing to build.
			return m.Run()
		}
		dir, err := os.MkdirTemp("", "punchd-e2e-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		punchdBinary = filepath.Join(dir, "punchd")
		build := exec.Command("go", "build", "-o", punchdBinary, "github.com/punchd/punchd/cmd/punchd")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build punchd for e2e tests:", err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

const transferSize = 20 << 20

// TestTunnelAcrossNATs is the acceptance test: two real `punchd up`
// processes behind lab NATs ping each other over the overlay, move 20 MB
// over TCP with a matching sha256, report a direct path, and shut down
// cleanly.
func TestTunnelAcrossNATs(t *testing.T) {
	lab.RequireRoot(t)
	cases := []Options{
		{NATA: lab.NATPortRestricted, NATB: lab.NATPortRestricted},
		{NATA: lab.NATFullCone, NATB: lab.NATSymmetric},
		{NATA: lab.NATPortRestricted, SameNAT: true},
		{NATA: lab.NATNone, NATB: lab.NATPortRestricted},
	}
	for _, opts := range cases {
		t.Run(strings.ReplaceAll(opts.Describe(), " ", "_"), func(t *testing.T) {
			opts.Binary = punchdBinary
			opts.Dir = t.TempDir()
			startCtx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			r, err := Start(startCtx, opts)
			if err != nil {
				t.Fatal(err)
			}
			ctx, stopWatch := r.Watch(startCtx)
			defer stopWatch()
			t.Cleanup(func() {
				if err := r.Close(); err != nil {
					t.Errorf("close: %v", err)
				}
			})
			fail := func(format string, args ...any) {
				t.Helper()
				t.Fatalf(format+"\n%s", append(args, r.Logs())...)
			}

			pingCtx, cancelPing := context.WithTimeout(ctx, 30*time.Second)
			at, err := FirstPing(pingCtx, r.A.Host, r.B.Overlay4, 20*time.Millisecond)
			cancelPing()
			if err != nil {
				fail("A -> B over the overlay: %v", err)
			}
			if testing.Verbose() {
				t.Log(r.Logs())
			}
			t.Logf("%s: first ping answered %s after both daemons started", opts.Describe(), at.Sub(r.Started).Round(time.Millisecond))
			// And the other way round.
			backCtx, cancelBack := context.WithTimeout(ctx, 10*time.Second)
			_, err = FirstPing(backCtx, r.B.Host, r.A.Overlay4, 20*time.Millisecond)
			cancelBack()
			if err != nil {
				fail("B -> A over the overlay: %v", err)
			}

			xferCtx, cancelXfer := context.WithTimeout(ctx, 60*time.Second)
			took, err := Transfer(xferCtx, r.A.Host, r.B.Host, r.B.Overlay4, transferSize)
			cancelXfer()
			if err != nil {
				fail("20 MB over TCP through the tunnel: %v", err)
			}
			t.Logf("20 MB A->B in %s (%.0f Mbit/s)", took.Round(time.Millisecond), float64(transferSize)*8/took.Seconds()/1e6)

			for _, n := range []*Node{r.A, r.B} {
				st, err := r.Status(ctx, n)
				if err != nil {
					fail("%v", err)
				}
				checkStatus(t, n, st, r)
			}
			out, err := r.Ping(ctx, r.A, r.B, 3)
			if err != nil || strings.Count(out, " via direct (") != 3 || !strings.Contains(out, "3 received") {
				fail("punchd ping B from A: want 3 replies via direct, got (%v):\n%s", err, out)
			}
			t.Logf("A$ punchd ping B\n%s", out)

			stopWatch()
			for _, n := range []*Node{r.A, r.B} {
				if err := r.Stop(n, 10*time.Second); err != nil {
					fail("clean shutdown: %v", err)
				}
			}
		})
	}
}
