// Package scenario runs real punchd processes in a lab: a rendezvous on the
// lab's "internet" and two daemons behind the NATs under test. The e2e tests,
// `punchd-lab demo` and the connect-time benchmark share it, so what the demo
// shows is exactly what the tests check.
package scenario

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/punchd/punchd/internal/control"
	"github.com/punchd/punchd/internal/identity"
	"github.com/punchd/punchd/internal/lab"
)

// Options describe one run.
type Options struct {
	Binary string      // the punchd binary to run
	NATA   lab.NATType // NAT in front of host A
	NATB   lab.NATType // NAT in front of host B
	// SameNAT puts A and B behind one router of type NATA.
	SameNAT bool
	// UPnPA runs Debian's miniupnpd (UPnP-IGD, NAT-PMP, PCP) on A's
	// router, which checks its external address against the rendezvous'
	// RFC 5780 responder.
	UPnPA bool
	// Dir holds state dirs and logs; a temp dir when empty.
	Dir string
	// Relay chooses the TURN relay: "" (the rendezvous' own, over UDP
	// and TCP), "tls" (the rendezvous' own, TCP relay unreachable so only
	// TLS is left), "coturn" (Debian's coturn with use-auth-secret on a
	// second address of the rendezvous host; the rendezvous' own is off),
	// "coturn-tls" (the same, offered over TLS only), "443" (the
	// rendezvous' own, signaling and TURN over TLS on port 443 alone, as
	// for the https-only firewall).
	Relay string
	// UpArgs are extra flags for both `punchd up`s (e.g. --force-relay).
	UpArgs []string
	// RendezvousArgs are extra flags for `punchd rendezvous`.
	RendezvousArgs []string
	// IPv6 gives the lab routed IPv6 on the internet and every LAN,
	// behind stateful firewalls (lab.Options.IPv6).
	IPv6 bool
	// NoIPv6B starts B without its IPv6 address (its LAN has IPv6 all the
	// same): an IPv4-only host, or one given IPv6 later (Lab.AddIPv6).
	NoIPv6B bool
	// LogLevel of the rendezvous and both daemons; "" is debug, which
	// tests want. Benchmarks use info, as users run them.
	LogLevel string
}

func (o Options) logLevel() string {
	if o.LogLevel == "" {
		return "debug"
	}
	return o.LogLevel
}

const coturnSecret = "lab-coturn-secret"

// Node is one punchd host in the lab.
type Node struct {
	Name     string
	Host     *lab.Host
	StateDir string
	ID       identity.PublicKey
	Overlay4 netip.Addr
	LogPath  string
	cmd      *exec.Cmd
	exited   chan struct{}
	exitErr  error
}

// PID is the daemon's process id (of `ip netns exec`, which execs punchd).
func (n *Node) PID() int {
	if n.cmd == nil || n.cmd.Process == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

// RelayPID is the process relaying in relayed runs: coturn or the rendezvous.
func (r *Run) RelayPID() int {
	if r.coturn != nil {
		return r.coturn.Process.Pid
	}
	if r.rvCmd != nil && r.rvCmd.Process != nil {
		return r.rvCmd.Process.Pid
	}
	return 0
}

// RelayIP is where the relay runs: coturn's address in "coturn" runs.
func (r *Run) RelayIP() netip.Addr {
	if r.opts.Relay == "coturn" || r.opts.Relay == "coturn-tls" {
		return r.R.Extra[0]
	}
	return r.R.Addr
}

// Run is a lab with a rendezvous and two daemons in it.
type Run struct {
	opts    Options
	Lab     *lab.Lab
	R       *lab.Host
	A, B    *Node
	rvCmd   *exec.Cmd
	rvLog   string
	rvURL   string
	rvArgs  []string
	upArgs  []string
	env     []string
	coturn  *exec.Cmd
	upnp    *lab.MiniUPnPd
	rtA     *lab.Router // A's router; nil without NAT
	rtB     *lab.Router // B's router; nil without NAT or with SameNAT
	Started time.Time   // when both daemons had been started
	tempDir string      // opts.Dir when Start made it; removed by Close

	closeOnce sync.Once
	closeErr  error
}

// signalPort is where the rendezvous listens for signaling: 443 when
// signaling and TURN over TLS share it.
func (r *Run) signalPort() string {
	if r.opts.Relay == "443" {
		return "443"
	}
	return signalPort
}

const (
	signalPort = "8478"
	stunPort   = "3478"
)

// Start builds the lab, starts the rendezvous and waits until it answers,
// then starts both daemons as close together as possible and records when.
func Start(ctx context.Context, opts Options) (_ *Run, err error) {
	if opts.Binary == "" {
		return nil, errors.New("scenario: no punchd binary given")
	}
	var tempDir string
	if opts.Dir == "" {
		d, err := os.MkdirTemp("", "punchd-scenario-")
		if err != nil {
			return nil, err
		}
		opts.Dir, tempDir = d, d
	}
	l, err := lab.New(ctx, lab.Options{IPv6: opts.IPv6})
	if err != nil {
		if tempDir != "" {
			_ = os.RemoveAll(tempDir)
		}
		return nil, fmt.Errorf("build lab: %w", err)
	}
	r := &Run{opts: opts, Lab: l, tempDir: tempDir}
	defer func() {
		if err != nil {
			r.Close()
		}
	}()
	if r.R, err = l.AddPublicHost("r", 1); err != nil {
		return nil, err
	}
	if err := r.setupRelay(ctx); err != nil {
		return nil, err
	}
	hostA, hostB, err := r.addHosts()
	if err != nil {
		return nil, err
	}
	if opts.NoIPv6B {
		if err := l.RemoveIPv6(ctx, hostB); err != nil {
			return nil, err
		}
	}
	if err := r.startRendezvous(ctx); err != nil {
		return nil, err
	}
	if opts.UPnPA {
		if r.rtA == nil {
			return nil, errors.New("scenario: UPnPA needs a NAT in front of A")
		}
		if r.upnp, err = r.rtA.StartMiniUPnPd(ctx, netip.AddrPortFrom(r.R.Addr, 3478)); err != nil {
			return nil, err
		}
	}
	if r.A, err = r.newNode(ctx, "a", hostA); err != nil {
		return nil, err
	}
	if r.B, err = r.newNode(ctx, "b", hostB); err != nil {
		return nil, err
	}
	if err := r.startDaemon(r.A, r.B); err != nil {
		return nil, err
	}
	if err := r.startDaemon(r.B, r.A); err != nil {
		return nil, err
	}
	r.Started = time.Now()
	return r, nil
}

func (r *Run) addHosts() (a, b *lab.Host, err error) {
	add := func(name string, t lab.NATType, o lab.RouterOptions) (*lab.Host, *lab.Router, error) {
		if t == lab.NATNone {
			h, err := r.Lab.AddHost(name, nil)
			return h, nil, err
		}
		rt, err := r.Lab.AddNATWith("nat"+name, t, o)
		if err != nil {
			return nil, nil, err
		}
		h, err := r.Lab.AddHost(name, rt)
		return h, rt, err
	}
	var optsA lab.RouterOptions
	if r.opts.UPnPA {
		optsA = lab.RouterOptions{UPnP: true, STUN: append([]netip.Addr{r.R.Addr}, r.R.Extra...)}
	}
	a, rtA, err := add("a", r.opts.NATA, optsA)
	if err != nil {
		return nil, nil, err
	}
	r.rtA = rtA
	if r.opts.SameNAT {
		b, err = r.Lab.AddHost("b", rtA)
		return a, b, err
	}
	b, r.rtB, err = add("b", r.opts.NATB, lab.RouterOptions{})
	return a, b, err
}

func (r *Run) startRendezvous(ctx context.Context) error {
	r.rvLog = filepath.Join(r.opts.Dir, "rendezvous.log")
	logf, err := os.Create(r.rvLog)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := r.R.Command(context.Background(), r.opts.Binary, append([]string{"rendezvous",
		"--listen", net.JoinHostPort(r.R.Addr.String(), r.signalPort()),
		"--stun-listen", net.JoinHostPort(r.R.Addr.String(), stunPort),
		// The lab's internet is the benchmarking range, which relays do
		// not reach by default.
		"--turn-allow-peers", lab.InternetPrefix.String(),
		"--log-level", r.opts.logLevel()}, append(r.rvArgs, r.opts.RendezvousArgs...)...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// No Pdeathsig: it fires when the forking *thread* exits, and Host.Do
	// ends threads. Close (and the lab's namespace deletion) stop these.
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start rendezvous: %w", err)
	}
	r.rvCmd = cmd
	scheme := "http://"
	if r.opts.Relay == "tls" || r.opts.Relay == "443" {
		scheme = "https://"
	}
	r.rvURL = scheme + net.JoinHostPort(r.R.Addr.String(), r.signalPort())
	// Wait for the health endpoint; bounded by count and time.
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < 500 && time.Now().Before(deadline); i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		if r.healthy() {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("rendezvous did not answer on %s within 10s; log: %s", r.rvURL, tail(r.rvLog))
}

// healthy dials the rendezvous from inside its own namespace.
func (r *Run) healthy() bool {
	ok := false
	_ = r.R.Do(func() error {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(r.R.Addr.String(), r.signalPort()), 200*time.Millisecond)
		if err == nil {
			c.Close()
			ok = true
		}
		return nil
	})
	return ok
}

func (r *Run) newNode(ctx context.Context, name string, h *lab.Host) (*Node, error) {
	n := &Node{Name: name, Host: h, StateDir: filepath.Join(r.opts.Dir, name), LogPath: filepath.Join(r.opts.Dir, name+".log")}
	out, err := exec.CommandContext(ctx, r.opts.Binary, "id", "--state-dir", n.StateDir).Output()
	if err != nil {
		return nil, fmt.Errorf("punchd id for %s: %w", name, err)
	}
	if n.ID, err = identity.ParseID(strings.TrimSpace(string(out))); err != nil {
		return nil, fmt.Errorf("punchd id for %s printed %q: %w", name, out, err)
	}
	if n.Overlay4, err = identity.OverlayAddr(identity.DefaultOverlayIPv4, n.ID); err != nil {
		return nil, err
	}
	return n, nil
}

func (r *Run) startDaemon(n, peer *Node) error {
	return r.startUp(n, "--rendezvous", r.rvURL, "--peer", peer.ID.String())
}

// startUp starts `punchd up` on n with args besides the common ones; the
// log is appended to, so a restarted daemon keeps its history.
func (r *Run) startUp(n *Node, args ...string) error {
	logf, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	args = append(append([]string{"up"}, args...), "--state-dir", n.StateDir, "--log-level", r.opts.logLevel())
	cmd := n.Host.Command(context.Background(), r.opts.Binary, append(args, append(r.upArgs, r.opts.UpArgs...)...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), r.env...)
	// No Pdeathsig: it fires when the forking *thread* exits, and Host.Do
	// ends threads. Close (and the lab's namespace deletion) stop these.
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start punchd up on %s: %w", n.Name, err)
	}
	n.cmd = cmd
	n.exited = make(chan struct{})
	go func() {
		n.exitErr = cmd.Wait()
		close(n.exited)
	}()
	return nil
}

// Watch returns a context that is cancelled when ctx is, or as soon as
// either daemon exits: a test waiting for traffic then fails at once with
// the daemon's log instead of at its deadline.
func (r *Run) Watch(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	for _, n := range []*Node{r.A, r.B} {
		go func() {
			select {
			case <-n.exited:
				cancel(fmt.Errorf("punchd up on %s exited: %v", n.Name, n.exitErr))
			case <-ctx.Done():
			}
		}()
	}
	return ctx, func() { cancel(nil) }
}

// Status runs `punchd status --json` inside the node's namespace.
func (r *Run) Status(ctx context.Context, n *Node) (control.Status, error) {
	var st control.Status
	cmd := n.Host.Command(ctx, r.opts.Binary, "status", "--json", "--state-dir", n.StateDir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return st, fmt.Errorf("punchd status on %s: %w: %s", n.Name, err, stderr.String())
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return st, fmt.Errorf("punchd status --json on %s printed bad JSON: %w", n.Name, err)
	}
	return st, nil
}

// Ping runs `punchd ping` for peer inside n's namespace, as an unprivileged
// user would, and returns its output.
func (r *Run) Ping(ctx context.Context, n, peer *Node, count int) (string, error) {
	cmd := n.Host.Command(ctx, r.opts.Binary, "ping", "--state-dir", n.StateDir,
		"-c", fmt.Sprint(count), "-i", "50ms", peer.ID.String()[:10])
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("punchd ping on %s: %w: %s", n.Name, err, out)
	}
	return string(out), nil
}

// Logs returns the tails of every process's log, for a failing test.
func (r *Run) Logs() string {
	var b strings.Builder
	for _, p := range []struct{ name, path string }{{"rendezvous", r.rvLog}, {"a", nodeLog(r.A)}, {"b", nodeLog(r.B)}} {
		if p.path == "" {
			continue
		}
		fmt.Fprintf(&b, "---- %s (%s) ----\n%s\n", p.name, p.path, tail(p.path))
	}
	return b.String()
}

func nodeLog(n *Node) string {
	if n == nil {
		return ""
	}
	return n.LogPath
}

// Stop sends SIGTERM to a daemon and waits for it; a clean shutdown exits 0
// and removes the TUN.
func (r *Run) Stop(n *Node, timeout time.Duration) error {
	if n == nil || n.cmd == nil {
		return nil
	}
	select {
	case <-n.exited:
	default:
		_ = n.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-n.exited:
		case <-time.After(timeout):
			_ = n.cmd.Process.Kill()
			<-n.exited
			return fmt.Errorf("punchd up on %s did not exit within %s of SIGTERM", n.Name, timeout)
		}
	}
	if n.exitErr != nil {
		return fmt.Errorf("punchd up on %s exited with %v", n.Name, n.exitErr)
	}
	if out, err := n.Host.Command(context.Background(), "ip", "link", "show", "punch0").CombinedOutput(); err == nil {
		return fmt.Errorf("punch0 still exists on %s after shutdown: %s", n.Name, out)
	}
	return nil
}

// Close stops everything and removes the lab; it is idempotent.
func (r *Run) Close() error {
	r.closeOnce.Do(func() {
		var errs []error
		for _, n := range []*Node{r.A, r.B} {
			if n != nil && n.cmd != nil {
				if err := r.Stop(n, 10*time.Second); err != nil {
					errs = append(errs, err)
				}
			}
		}
		lab.Terminate(r.rvCmd, 5*time.Second)
		if r.coturn != nil {
			_ = r.coturn.Process.Kill()
			_ = r.coturn.Wait()
		}
		if r.upnp != nil {
			r.upnp.Stop()
		}
		if r.Lab != nil {
			errs = append(errs, r.Lab.Close())
		}
		if r.tempDir != "" {
			// Logs of a run that made its own directory go with it; the
			// demo and the tests print them while they still exist.
			errs = append(errs, os.RemoveAll(r.tempDir))
		}
		r.closeErr = errors.Join(errs...)
	})
	return r.closeErr
}

func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	const max = 6000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}

// Describe names the run's NAT pairing for tables.
func (o Options) Describe() string {
	a := string(o.NATA)
	if o.UPnPA {
		a += "+upnp"
	}
	if o.SameNAT {
		return a + " (same NAT)"
	}
	return a + " x " + string(o.NATB)
}

// RestartRendezvous kills the rendezvous and starts a new one on the same
// address, as an operator's restart (or a crash and systemd) would.
func (r *Run) RestartRendezvous(ctx context.Context, down time.Duration) error {
	if r.rvCmd != nil {
		_ = r.rvCmd.Process.Kill()
		_ = r.rvCmd.Wait()
	}
	timer := time.NewTimer(down)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	return r.startRendezvous(ctx)
}

// StopRendezvous kills the rendezvous without restarting it.
func (r *Run) StopRendezvous() {
	if r.rvCmd != nil {
		_ = r.rvCmd.Process.Kill()
		_ = r.rvCmd.Wait()
		r.rvCmd = nil
	}
}
