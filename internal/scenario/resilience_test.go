package scenario

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/punchd/punchd/internal/lab"
)

// An established tunnel must not depend on the rendezvous: while it is down
// traffic keeps flowing, and when it is back the daemons re-register.
func TestRendezvousRestartKeepsTunnel(t *testing.T) {
	lab.RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := Start(ctx, Options{Binary: punchdBinary, NATA: lab.NATPortRestricted, NATB: lab.NATPortRestricted, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	pingCtx, cancelPing := context.WithTimeout(ctx, 30*time.Second)
	_, err = FirstPing(pingCtx, r.A.Host, r.B.Overlay4, 20*time.Millisecond)
	cancelPing()
	if err != nil {
		t.Fatalf("tunnel did not come up: %v\n%s", err, r.Logs())
	}

	r.StopRendezvous()
	// The daemons notice within their ping interval; the tunnel must not.
	if err := waitRendezvous(ctx, r, false); err != nil {
		t.Fatalf("%v\n%s", err, r.Logs())
	}
	xferCtx, cancelXfer := context.WithTimeout(ctx, 60*time.Second)
	_, err = Transfer(xferCtx, r.A.Host, r.B.Host, r.B.Overlay4, 2<<20)
	cancelXfer()
	if err != nil {
		t.Fatalf("tunnel broke while the rendezvous was down: %v\n%s", err, r.Logs())
	}

	if err := r.RestartRendezvous(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if err := waitRendezvous(ctx, r, true); err != nil {
		t.Fatalf("daemons did not re-register: %v\n%s", err, r.Logs())
	}
	xferCtx, cancelXfer = context.WithTimeout(ctx, 60*time.Second)
	_, err = Transfer(xferCtx, r.B.Host, r.A.Host, r.A.Overlay4, 2<<20)
	cancelXfer()
	if err != nil {
		t.Fatalf("tunnel broke after the rendezvous came back: %v\n%s", err, r.Logs())
	}
}

// waitRendezvous polls both daemons' status until rendezvous_connected is
// want; bounded in time and count.
func waitRendezvous(ctx context.Context, r *Run, want bool) error {
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; i < 200 && time.Now().Before(deadline); i++ {
		ok := true
		for _, n := range []*Node{r.A, r.B} {
			st, err := r.Status(ctx, n)
			if err != nil {
				return err
			}
			ok = ok && st.Self.RendezvousConnected == want
		}
		if ok {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return context.DeadlineExceeded
}

// The errors a user meets first must say what is wrong and what to do.
func TestUpErrors(t *testing.T) {
	lab.RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h := loneHost(ctx, t)
	peerID := idFor(t, t.TempDir())
	state := t.TempDir()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"rendezvous unreachable", []string{"up", "--rendezvous", "http://198.18.0.250:8478", "--peer", peerID},
			"rendezvous unreachable"},
		{"bad peer ID", []string{"up", "--rendezvous", "http://198.18.0.250:8478", "--peer", "not-a-peer"},
			`bad --peer "not-a-peer"`},
		{"no rendezvous", []string{"up", "--peer", peerID}, "--rendezvous"},
		{"bad config", []string{"up", "--config", "/nonexistent.yaml"}, "config file /nonexistent.yaml not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append(tt.args, "--state-dir", state)
			cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
			defer ccancel()
			out, err := h.Command(cctx, punchdBinary, args...).CombinedOutput()
			if err == nil {
				t.Fatalf("punchd %v succeeded; want an error", args)
			}
			if !strings.Contains(string(out), tt.want) {
				t.Fatalf("output lacks %q:\n%s", tt.want, out)
			}
			// Nothing may be left behind by a failed start.
			if _, err := h.Command(ctx, "ip", "link", "show", "punch0").CombinedOutput(); err == nil {
				t.Fatalf("punch0 left behind after a failed start")
			}
		})
	}
}

// Without CAP_NET_ADMIN `punchd up` must say so, not fail obscurely.
func TestUpWithoutPrivilege(t *testing.T) {
	lab.RequireRoot(t)
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv (util-linux) not installed")
	}
	// Not t.TempDir: its parent is 0700, closed to the unprivileged user.
	state, err := os.MkdirTemp("", "punchd-unpriv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(state) })
	if err := os.Chmod(state, 0o777); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h := loneHost(ctx, t)
	out, err := h.Command(ctx, setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
		punchdBinary, "up", "--rendezvous", "http://198.18.0.250:8478", "--peer", idFor(t, t.TempDir()),
		"--state-dir", state).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "needs root or CAP_NET_ADMIN") {
		t.Fatalf("unprivileged punchd up: want the CAP_NET_ADMIN hint, got %v:\n%s", err, out)
	}
}

func TestRendezvousPortInUse(t *testing.T) {
	lab.RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := Start(ctx, Options{Binary: punchdBinary, NATA: lab.NATNone, NATB: lab.NATNone, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	for _, args := range [][]string{
		{"rendezvous", "--listen", r.R.Addr.String() + ":" + signalPort, "--stun-listen", r.R.Addr.String() + ":13478"},
		{"rendezvous", "--listen", r.R.Addr.String() + ":18478", "--stun-listen", r.R.Addr.String() + ":" + stunPort},
	} {
		cctx, ccancel := context.WithTimeout(ctx, 20*time.Second)
		out, err := r.R.Command(cctx, punchdBinary, args...).CombinedOutput()
		ccancel()
		if err == nil || !strings.Contains(string(out), "address already in use") {
			t.Errorf("punchd %v: want a port-in-use error, got %v:\n%s", args, err, out)
		}
	}
}

func idFor(t *testing.T, stateDir string) string {
	t.Helper()
	out, err := exec.Command(punchdBinary, "id", "--state-dir", stateDir).Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// loneHost is a lab with one public host and nothing else: no rendezvous
// answers at the lab's addresses.
func loneHost(ctx context.Context, t *testing.T) *lab.Host {
	t.Helper()
	l, err := lab.New(ctx, lab.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	h, err := l.AddHost("a", nil)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
