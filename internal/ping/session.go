package ping

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/punchd/punchd/internal/control"
)

// SessionConfig is one `punchd ping`.
type SessionConfig struct {
	ControlSocket string
	Peer          string // a peer ID, a unique prefix of one, or an alias
	Count         int    // probes to send; at least 1
	Interval      time.Duration
	Timeout       time.Duration // per probe
	Size          int
	Out           io.Writer // one line per probe and a summary
}

// Summary is what a session found.
type Summary struct {
	Sent, Received int
	Min, Avg, Max  time.Duration
}

// Run pings the peer through the tunnel, saying for each reply which path
// (direct or relay, and the candidate pair) carried it. It returns an error
// when no probe was answered.
func Run(ctx context.Context, cfg SessionConfig) (Summary, error) {
	var sum Summary
	if cfg.Count < 1 {
		return sum, fmt.Errorf("ping count %d: give at least 1", cfg.Count)
	}
	if cfg.Interval <= 0 || cfg.Timeout <= 0 {
		return sum, errors.New("ping interval and timeout must be positive")
	}
	st, err := control.GetStatus(ctx, cfg.ControlSocket)
	if err != nil {
		return sum, err
	}
	peer, err := findPeer(st.Peers, cfg.Peer)
	if err != nil {
		return sum, err
	}
	dst, err := netip.ParseAddr(peer.OverlayIPv4)
	if err != nil {
		return sum, fmt.Errorf("peer %s has no overlay IPv4 address in the daemon's status", peer.Name())
	}
	p, err := NewPinger(dst)
	if err != nil {
		return sum, err
	}
	defer p.Close()
	fmt.Fprintf(cfg.Out, "PING %s (%s) through the tunnel, %d bytes\n", peer.Name(), dst, max(cfg.Size, headerLen))
	var total time.Duration
	for seq := 1; seq <= cfg.Count; seq++ {
		if seq > 1 {
			select {
			case <-ctx.Done():
				return sum, summarize(cfg.Out, &sum, total)
			case <-time.After(cfg.Interval):
			}
		}
		pctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		rtt, err := p.Ping(pctx, uint32(seq), cfg.Size)
		cancel()
		sum.Sent++
		if err != nil {
			if ctx.Err() != nil {
				sum.Sent--
				return sum, summarize(cfg.Out, &sum, total)
			}
			fmt.Fprintf(cfg.Out, "seq=%d: %v; %s\n", seq, err, pathNow(ctx, cfg.ControlSocket, peer.ID))
			continue
		}
		sum.Received++
		total += rtt
		if sum.Min == 0 || rtt < sum.Min {
			sum.Min = rtt
		}
		sum.Max = max(sum.Max, rtt)
		fmt.Fprintf(cfg.Out, "reply from %s: seq=%d time=%s via %s\n", dst, seq, ms(rtt), pathNow(ctx, cfg.ControlSocket, peer.ID))
	}
	return sum, summarize(cfg.Out, &sum, total)
}

func summarize(out io.Writer, sum *Summary, total time.Duration) error {
	loss := 100.0
	if sum.Sent > 0 {
		loss = 100 * float64(sum.Sent-sum.Received) / float64(sum.Sent)
	}
	fmt.Fprintf(out, "%d sent, %d received, %.0f%% lost", sum.Sent, sum.Received, loss)
	if sum.Received > 0 {
		sum.Avg = total / time.Duration(sum.Received)
		fmt.Fprintf(out, "; rtt min/avg/max %s/%s/%s", ms(sum.Min), ms(sum.Avg), ms(sum.Max))
	}
	fmt.Fprintln(out)
	if sum.Received == 0 {
		return errors.New("no reply through the tunnel: see `punchd status` for the peer's state")
	}
	return nil
}

// pathNow describes the peer's path as the daemon reports it now.
func pathNow(ctx context.Context, socket, id string) string {
	st, err := control.GetStatus(ctx, socket)
	if err != nil {
		return "path unknown (" + err.Error() + ")"
	}
	for _, p := range st.Peers {
		if p.ID != id {
			continue
		}
		if p.Path == "none" || p.LocalCandidate == nil || p.RemoteCandidate == nil {
			return "no path (" + p.State + ")"
		}
		s := fmt.Sprintf("%s (%s %s -> %s %s)", p.Path, p.LocalCandidate.Type, p.LocalCandidate.Address,
			p.RemoteCandidate.Type, p.RemoteCandidate.Address)
		if p.Path == "relay" && p.Relay != "" {
			s += " relay " + p.Relay
		}
		return s
	}
	return "peer gone from the daemon"
}

// findPeer matches want against the daemon's peers: whole ID, alias, or a
// prefix of an ID that only one peer has.
func findPeer(peers []control.PeerStatus, want string) (control.PeerStatus, error) {
	want = strings.TrimSpace(want)
	if want == "" {
		return control.PeerStatus{}, errors.New("give the peer to ping: its ID, alias or the start of its ID (see `punchd status`)")
	}
	var prefixed []control.PeerStatus
	for _, p := range peers {
		if p.ID == want || (p.Alias != "" && p.Alias == want) {
			return p, nil
		}
		if strings.HasPrefix(p.ID, want) {
			prefixed = append(prefixed, p)
		}
	}
	switch len(prefixed) {
	case 1:
		return prefixed[0], nil
	case 0:
		var known []string
		for _, p := range peers {
			known = append(known, p.Name())
		}
		return control.PeerStatus{}, fmt.Errorf("no peer %q in the running daemon (its peers: %s)", want, strings.Join(known, ", "))
	default:
		return control.PeerStatus{}, fmt.Errorf("%q starts %d peers' IDs; give more of it", want, len(prefixed))
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }
