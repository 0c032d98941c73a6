package scenario

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/punchd/punchd/internal/lab"
)

// TestSystemdReady: run as systemd runs a Type=notify unit, `punchd up`
// says READY=1 once punch0 is up and it is registered at the rendezvous,
// and STOPPING=1 on SIGTERM.
func TestSystemdReady(t *testing.T) {
	lab.RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	sock := filepath.Join(dir, "notify")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	m, err := StartMesh(ctx, MeshOptions{Binary: punchdBinary, Dir: dir, Env: []string{"NOTIFY_SOCKET=" + sock},
		Members: []MemberSpec{{Name: "a", NAT: lab.NATPortRestricted}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	a := m.Node("a")
	read := func(want string) {
		t.Helper()
		buf := make([]byte, 256)
		_ = ln.SetReadDeadline(time.Now().Add(20 * time.Second))
		n, err := ln.Read(buf)
		if err != nil || string(buf[:n]) != want {
			t.Fatalf("systemd got %q, %v; want %s\n%s", buf[:n], err, want, m.MeshLogs())
		}
	}
	read("READY=1")
	if out, err := a.Host.Command(ctx, "ip", "link", "show", "punch0").CombinedOutput(); err != nil {
		t.Fatalf("READY=1 before punch0 exists: %v %s", err, out)
	}
	st, err := m.PeerStatus(ctx, a)
	if err != nil || !st.Self.RendezvousConnected {
		t.Fatalf("READY=1 before registering at the rendezvous: %+v, %v", st.Self, err)
	}
	if err := m.StopMember(a); err != nil {
		t.Fatal(err)
	}
	read("STOPPING=1")
}
