package scenario

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/punchd/punchd/internal/control"
	"github.com/punchd/punchd/internal/lab"
)

type gridRow struct {
	opts          Options
	path          string
	local, remote string
	nat           string // A's NAT type as its daemon found it / B's as B told A
	via           string // how a direct path was made where ICE alone relays
	connect       time.Duration
	err           error
}

// TestGrid connects every pair of NAT types and checks the path each takes.
func TestGrid(t *testing.T) {
	lab.RequireRoot(t)
	if testing.Short() {
		t.Skip("the NAT grid takes a minute; skipped with -short")
	}
	var rows []gridRow
	t.Cleanup(func() { t.Log("\n" + gridTable(rows)) })
	for _, opts := range GridCases() {
		t.Run(strings.ReplaceAll(opts.Describe(), " ", "_"), func(t *testing.T) {
			row := runCell(t, opts)
			rows = append(rows, row)
			if row.err != nil {
				t.Fatalf("%s: %v", opts.Describe(), row.err)
			}
		})
	}
}

func runCell(t *testing.T, opts Options) (row gridRow) {
	row.opts = opts
	if opts.UPnPA {
		if err := lab.MiniUPnPdInstalled(); err != nil {
			t.Skip(err)
		}
	}
	opts.Binary = punchdBinary
	opts.Dir = t.TempDir()
	startCtx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	r, err := Start(startCtx, opts)
	if err != nil {
		row.err = err
		return row
	}
	defer func() {
		if err := r.Close(); err != nil && row.err == nil {
			row.err = err
		}
	}()
	ctx, stop := r.Watch(startCtx)
	defer stop()
	fail := func(format string, args ...any) gridRow {
		row.err = fmt.Errorf(format+"\n%s", append(args, r.Logs())...)
		return row
	}
	pingCtx, cancelPing := context.WithTimeout(ctx, 30*time.Second)
	at, err := FirstPing(pingCtx, r.A.Host, r.B.Overlay4, 10*time.Millisecond)
	cancelPing()
	if err != nil {
		return fail("A -> B: %v", err)
	}
	row.connect = at.Sub(r.Started)
	xferCtx, cancelXfer := context.WithTimeout(ctx, 60*time.Second)
	_, err = Transfer(xferCtx, r.A.Host, r.B.Host, r.B.Overlay4, 4<<20)
	cancelXfer()
	if err != nil {
		return fail("4 MB over TCP through the tunnel: %v", err)
	}
	wantPath, wantVia := ExpectedCell(opts)
	if wantVia != "" {
		// The relay carried the first ping and the transfer; the direct
		// path comes seconds later.
		if _, _, err := r.WaitStatus(ctx, r.A, 40*time.Second, "direct via "+wantVia, func(st control.Status) bool {
			p, ok := OnePeer(st)
			return ok && p.Path == "direct" && p.Via == wantVia
		}); err != nil {
			return fail("%v", err)
		}
	}
	st, err := r.Status(ctx, r.A)
	if err != nil || len(st.Peers) != 1 {
		return fail("status on A: %v", err)
	}
	p := st.Peers[0]
	row.via = p.Via
	row.path = p.Path
	if p.LocalCandidate != nil {
		row.local = p.LocalCandidate.Type
	}
	if p.RemoteCandidate != nil {
		row.remote = p.RemoteCandidate.Type
	}
	if p.Path == "relay" && (p.Relay == "" || p.Reason == "") {
		return fail("relayed path without relay address or reason: %+v", p)
	}
	if p.Path != wantPath || p.Via != wantVia {
		return fail("path %s via %q (local %s, remote %s), want %s via %q", p.Path, p.Via, row.local, row.remote, wantPath, wantVia)
	}
	if lc := p.LocalCandidate; lc != nil && lc.Type == "relay" && opts.NATA != lab.NATUDPBlocked && lc.RelayProtocol != "udp" {
		// TURN over TCP would carry the tunnel's TCP inside TCP.
		return fail("A has UDP but its relay is reached over %q", lc.RelayProtocol)
	}
	// Each daemon probes its NAT in the background (RFC 5780 against the
	// rendezvous), must find the lab's type and tells its peer; a relayed
	// path's reason then says why, from both.
	st, _, err = waitStatus(ctx, r, r.A, 10*time.Second, "own and peer's NAT type", func(st control.Status) bool {
		p, ok := onePeer(st)
		return ok && st.Self.NAT != nil && p.NAT != ""
	})
	if err != nil {
		return fail("%v", err)
	}
	natB := opts.NATB
	if opts.SameNAT {
		natB = opts.NATA
	}
	if self, peer := st.Self.NAT.Type, st.Peers[0].NAT; self != string(wantType(opts.NATA)) || peer != string(wantType(natB)) {
		return fail("status on A: own NAT %s, peer's %s; want %s and %s", self, peer, string(wantType(opts.NATA)), string(wantType(natB)))
	}
	row.nat = st.Self.NAT.Type + " / " + st.Peers[0].NAT
	if p := st.Peers[0]; p.Path == "relay" {
		want := "no direct path exists between this host's " + string(wantType(opts.NATA)) + " NAT and the peer's " + string(wantType(natB))
		switch {
		case opts.NATA == lab.NATUDPBlocked:
			want = "UDP is blocked here"
		case natB == lab.NATUDPBlocked:
			want = "the peer has no UDP"
		}
		if !strings.Contains(p.Reason, want) {
			return fail("relayed, reason %q: want it to say %q", p.Reason, want)
		}
	}
	stop()
	for _, n := range []*Node{r.A, r.B} {
		if err := r.Stop(n, 10*time.Second); err != nil {
			return fail("clean shutdown: %v", err)
		}
	}
	return row
}

func gridTable(rows []gridRow) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAT A\tNAT B\tPATH\tEXPECTED\tLOCAL\tREMOTE\tFIRST PING\tA SAYS: OWN / PEER'S NAT")
	for _, r := range rows {
		natA, natB := string(r.opts.NATA), string(r.opts.NATB)
		if r.opts.UPnPA {
			natA += "+miniupnpd"
		}
		if r.opts.SameNAT {
			natB = "(same NAT)"
		}
		res := r.connect.Round(time.Millisecond).String()
		if r.err != nil {
			res = "FAILED"
		}
		wantPath, wantVia := ExpectedCell(r.opts)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", natA, natB, withVia(r.path, r.via),
			withVia(wantPath, wantVia), r.local, r.remote, res, r.nat)
	}
	tw.Flush()
	return b.String()
}

func withVia(path, via string) string {
	if via == "" {
		return path
	}
	return path + " (" + via + ")"
}
