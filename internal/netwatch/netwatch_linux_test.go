package netwatch

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/punchd/punchd/internal/lab"
)

// In a lab host: an address added to its interface is a change, with the
// address in the new snapshot; a change to an excluded interface is none;
// a new default route is one.
func TestWatchLab(t *testing.T) {
	lab.RequireRoot(t)
	if testing.Short() {
		t.Skip("lab test; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l, err := lab.New(ctx, lab.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	r, err := l.AddNAT("nat", lab.NATPortRestricted)
	if err != nil {
		t.Fatal(err)
	}
	h, err := l.AddHost("h", r)
	if err != nil {
		t.Fatal(err)
	}
	ip := func(args ...string) {
		t.Helper()
		if out, err := h.Command(ctx, "ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	ip("link", "add", "punch0", "type", "veth", "peer", "name", "punch0p") // no dummy module everywhere
	ip("link", "set", "punch0", "up")
	changes := make(chan Snapshot, 8)
	var w *Watcher
	if err := h.Do(func() (err error) {
		w, err = Open(Config{Exclude: []string{"punch0"}, Quiet: 50 * time.Millisecond,
			OnChange: func(_, after Snapshot) { changes <- after }})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	t.Cleanup(func() { w.Close(); w.Close(); <-done })
	time.Sleep(100 * time.Millisecond) // Run has read its first snapshot

	expect := func(what, want string) {
		t.Helper()
		select {
		case s := <-changes:
			if !strings.Contains(s.String(), want) {
				t.Fatalf("%s: snapshot lacks %q: %v", what, want, s)
			}
		case <-time.After(3 * time.Second):
			t.Fatalf("%s: no change reported", what)
		}
	}
	none := func(what string) {
		t.Helper()
		select {
		case s := <-changes:
			t.Fatalf("%s: reported a change: %v", what, s)
		case <-time.After(500 * time.Millisecond):
		}
	}
	ip("addr", "add", "198.19.1.77/24", "dev", "eth0")
	expect("address added", "eth0 198.19.1.77/24")
	ip("addr", "add", "10.99.0.1/16", "dev", "punch0")
	none("address on the excluded interface")
	ip("route", "replace", "default", "via", "198.19.1.1", "dev", "eth0", "metric", "5")
	expect("default route added", "default via 198.19.1.1 dev eth0")
}
