// Package webrtclab runs browser peers in the NAT lab: headless Chromium
// in lab namespaces loads a small peerjs page whose only servers are one
// `punchd rendezvous` (PeerJS signaling at /peerjs, TURN credentials at
// /turn-credentials, its STUN/TURN). The page reports what happened
// (connect-to-open time, echo, the selected candidate pair from
// getStats(), bulk transfer time) to a lab-local HTTP endpoint. The lab
// test and `punchd-lab webrtc` share it.
package webrtclab

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/punchd/punchd/internal/lab"
)

//go:embed page.html
var page []byte

// PeerJSVersion is the npm peerjs client the lab uses.
const PeerJSVersion = "1.5.5"

const (
	signalPort = 8478
	stunPort   = 3478
	pagePort   = 8080
)

// Options configure a lab.
type Options struct {
	Punchd   string // the punchd binary
	Chromium string // default: chromium from PATH
	PeerJS   string // peerjs.min.js (see InstallPeerJS)
	Dir      string // logs and browser profiles; must exist
	// NATs behind which pairs of browsers are placed; each gets its own
	// two routers.
	NATs []lab.NATType
	// RendezvousArgs are extra flags for `punchd rendezvous`.
	RendezvousArgs []string
}

// Lab is a lab with a rendezvous, the page server and browser hosts.
type Lab struct {
	opts  Options
	Lab   *lab.Lab
	R     *lab.Host
	pairs map[lab.NATType][2]*lab.Host
	rv    *exec.Cmd
	rvLog string
	page  *http.Server

	mu      sync.Mutex
	reports map[string]chan Report // by run id

	closeOnce sync.Once
}

// Report is what a page posts.
type Report struct {
	Run, Role, Event string
	Error            string
	Opened, Echo     bool
	OpenMs           float64
	ICEState         string `json:"iceState"`
	Pair             *Pair
	BulkBytes        int64
	BulkMs           float64
}

// Pair is the selected candidate pair.
type Pair struct{ Local, Remote Candidate }

// Candidate is one side of it, from RTCIceCandidateStats.
type Candidate struct {
	Type          string
	Protocol      string
	RelayProtocol string
	Address       string
	Port          int
}

func (c Candidate) String() string {
	s := c.Type + " " + c.Protocol + " " + net.JoinHostPort(c.Address, strconv.Itoa(c.Port))
	if c.RelayProtocol != "" {
		s += " (relayed over " + c.RelayProtocol + ")"
	}
	return s
}

// Relayed reports whether either side of the pair is a TURN relay.
func (p *Pair) Relayed() bool {
	return p != nil && (p.Local.Type == "relay" || p.Remote.Type == "relay")
}

func (p *Pair) String() string {
	if p == nil {
		return "none"
	}
	return p.Local.String() + " <-> " + p.Remote.String()
}

// Start builds the lab: a public host with the rendezvous and the page
// server, and for each NAT type two hosts behind routers of that type.
func Start(ctx context.Context, opts Options) (_ *Lab, err error) {
	if opts.Chromium == "" {
		if opts.Chromium, err = exec.LookPath("chromium"); err != nil {
			return nil, errors.New("chromium not found: install Debian's chromium (scripts/lab-deps.sh does as root)")
		}
	}
	l0, err := lab.New(ctx, lab.Options{})
	if err != nil {
		return nil, fmt.Errorf("build lab: %w", err)
	}
	l := &Lab{opts: opts, Lab: l0, pairs: map[lab.NATType][2]*lab.Host{}, reports: map[string]chan Report{}}
	defer func() {
		if err != nil {
			l.Close()
		}
	}()
	if l.R, err = l0.AddPublicHost("r", 0); err != nil {
		return nil, err
	}
	for i, t := range opts.NATs {
		var pair [2]*lab.Host
		for j := range pair {
			name := fmt.Sprintf("%c%d", 'a'+j, i)
			rt, err := l0.AddNAT("nat"+name, t)
			if err != nil {
				return nil, err
			}
			if pair[j], err = l0.AddHost(name, rt); err != nil {
				return nil, err
			}
		}
		l.pairs[t] = pair
	}
	if err := l.startPageServer(); err != nil {
		return nil, err
	}
	if err := l.startRendezvous(ctx); err != nil {
		return nil, err
	}
	return l, nil
}

// PageOrigin is the origin of the lab page, the rendezvous' --web-origin.
func (l *Lab) PageOrigin() string {
	return "http://" + net.JoinHostPort(l.R.Addr.String(), strconv.Itoa(pagePort))
}

// RendezvousURL is the rendezvous' HTTP address.
func (l *Lab) RendezvousURL() string {
	return "http://" + net.JoinHostPort(l.R.Addr.String(), strconv.Itoa(signalPort))
}

// RendezvousPID is the rendezvous process (for CPU accounting).
func (l *Lab) RendezvousPID() int {
	if l.rv == nil || l.rv.Process == nil {
		return 0
	}
	return l.rv.Process.Pid
}

// RendezvousLog is the rendezvous' log so far.
func (l *Lab) RendezvousLog() string {
	b, _ := os.ReadFile(l.rvLog)
	return string(b)
}

func (l *Lab) startPageServer() error {
	mux := http.NewServeMux()
	mux.HandleFunc("/page.html", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(page)
	})
	mux.HandleFunc("/peerjs.min.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		http.ServeFile(w, r, l.opts.PeerJS)
	})
	mux.HandleFunc("/favicon.ico", http.NotFound)
	mux.HandleFunc("/report", func(w http.ResponseWriter, r *http.Request) {
		var rep Report
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&rep); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		l.mu.Lock()
		ch := l.reports[rep.Run]
		l.mu.Unlock()
		if ch != nil {
			select {
			case ch <- rep:
			default:
			}
		}
		w.WriteHeader(http.StatusNoContent)
	})
	var ln net.Listener
	if err := l.R.Do(func() (err error) {
		ln, err = net.Listen("tcp", net.JoinHostPort(l.R.Addr.String(), strconv.Itoa(pagePort)))
		return err
	}); err != nil {
		return fmt.Errorf("page server: %w", err)
	}
	l.page = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = l.page.Serve(ln) }() // ends with Close
	return nil
}

func (l *Lab) startRendezvous(ctx context.Context) error {
	l.rvLog = filepath.Join(l.opts.Dir, "rendezvous.log")
	logf, err := os.Create(l.rvLog)
	if err != nil {
		return err
	}
	defer logf.Close()
	args := append([]string{"rendezvous",
		"--listen", net.JoinHostPort(l.R.Addr.String(), strconv.Itoa(signalPort)),
		"--stun-listen", net.JoinHostPort(l.R.Addr.String(), strconv.Itoa(stunPort)),
		"--stun-alt-ip", "none",
		"--web-origin", l.PageOrigin(),
		// The lab's "internet" is a benchmark range, which a TURN relay
		// refuses by default.
		"--turn-allow-peers", lab.InternetPrefix.String(),
		"--log-level", "info"}, l.opts.RendezvousArgs...)
	cmd := l.R.Command(context.Background(), l.opts.Punchd, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start rendezvous: %w", err)
	}
	l.rv = cmd
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < 200 && time.Now().Before(deadline); i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		up := false
		_ = l.R.Do(func() error {
			c, err := net.DialTimeout("tcp", net.JoinHostPort(l.R.Addr.String(), strconv.Itoa(signalPort)), 200*time.Millisecond)
			if err == nil {
				c.Close()
				up = true
			}
			return nil
		})
		if up {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("rendezvous did not answer within 10s; log:\n%s", l.RendezvousLog())
}

// Case is one browser-to-browser attempt.
type Case struct {
	NAT lab.NATType // both browsers sit behind a NAT of this type
	// ICE: "turn" (STUN and TURN over UDP and TCP, as /turn-credentials
	// gives them), "stun" (STUN only), "relay-tcp" / "relay-udp" (only
	// that TURN transport, iceTransportPolicy 'relay').
	ICE string
	// Wait bounds connect() to open inside the page.
	Wait time.Duration
	// Bulk, when > 0, is sent over the data channel after the echo;
	// OnBulkStart, when set, is called just before the first byte.
	Bulk        int64
	OnBulkStart func()
}

// Run runs c: the listening page first, then, once it is registered,
// the connecting one; it returns the connecting page's result.
func (l *Lab) Run(ctx context.Context, c Case) (Report, error) {
	pair, ok := l.pairs[c.NAT]
	if !ok {
		return Report{}, fmt.Errorf("no hosts behind %s NATs in this lab", c.NAT)
	}
	if c.Wait <= 0 {
		c.Wait = 10 * time.Second
	}
	run := strings.ReplaceAll(uuid.NewString(), "-", "")[:12]
	ch := make(chan Report, 16)
	l.mu.Lock()
	l.reports[run] = ch
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.reports, run)
		l.mu.Unlock()
	}()
	url := func(role, me, peer string) string {
		return fmt.Sprintf("%s/page.html?run=%s&role=%s&me=%s&peer=%s&ice=%s&rv=%s&rvport=%d&wait=%d&bulk=%d",
			l.PageOrigin(), run, role, me, peer, c.ICE, l.R.Addr, signalPort, c.Wait.Milliseconds(), c.Bulk)
	}
	lis, con := "l"+run, "c"+run
	stopL, err := l.browser(pair[0], run+"-listen", url("listen", lis, ""))
	if err != nil {
		return Report{}, err
	}
	defer stopL()
	if _, err := l.await(ctx, ch, "listen", "open", 30*time.Second, nil); err != nil {
		return Report{}, fmt.Errorf("listening page: %w", err)
	}
	stopC, err := l.browser(pair[1], run+"-connect", url("connect", con, lis))
	if err != nil {
		return Report{}, err
	}
	defer stopC()
	bulkTime := time.Duration(0)
	if c.Bulk > 0 {
		bulkTime = 120 * time.Second
	}
	return l.await(ctx, ch, "connect", "result", c.Wait+30*time.Second+bulkTime, c.OnBulkStart)
}

// await returns the first report of role with event, failing on an error
// report from either page; onBulk is called on a bulk-start report.
func (l *Lab) await(ctx context.Context, ch <-chan Report, role, event string, d time.Duration, onBulk func()) (Report, error) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return Report{}, ctx.Err()
		case <-t.C:
			return Report{}, fmt.Errorf("no %q report from the %s page within %s", event, role, d)
		case r := <-ch:
			switch {
			case r.Role == role && r.Event == event:
				return r, nil
			case r.Event == "bulk-start" && onBulk != nil:
				onBulk()
			case r.Event == "error" || r.Event == "peer-error":
				return Report{}, fmt.Errorf("%s page: %s: %s", r.Role, r.Event, r.Error)
			}
		}
	}
}

// browser starts headless Chromium in h's namespace on url with a fresh
// profile; stop kills its whole process group and removes the profile.
func (l *Lab) browser(h *lab.Host, name, url string) (stop func(), err error) {
	profile, err := os.MkdirTemp(l.opts.Dir, "chromium-"+name+"-")
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(l.opts.Dir, "chromium-"+name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := h.Command(context.Background(), l.opts.Chromium,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--disable-breakpad", "--disable-extensions", "--no-default-browser-check",
		"--enable-logging=stderr", "--user-data-dir="+profile, url)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Chromium leaves a directory with its singleton socket in $TMPDIR:
	// give it one of its own that stop removes (short: the socket's path
	// must fit a sockaddr_un, the profile's would not).
	tmp, err := os.MkdirTemp("", "pdl-chromium-")
	if err != nil {
		logf.Close()
		return nil, err
	}
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start chromium: %w", err)
	}
	return func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		logf.Close()
		_ = os.RemoveAll(profile)
		_ = os.RemoveAll(tmp)
	}, nil
}

// Close stops the rendezvous and the page server and removes the lab;
// idempotent.
func (l *Lab) Close() {
	l.closeOnce.Do(func() {
		lab.Terminate(l.rv, 5*time.Second)
		if l.page != nil {
			_ = l.page.Close()
		}
		_ = l.Lab.Close()
	})
}

// InstallPeerJS makes sure the peerjs client is in cacheDir (installing
// it from the npm registry at PeerJSVersion when missing) and returns the
// path of its browser bundle.
func InstallPeerJS(ctx context.Context, cacheDir string) (string, error) {
	dir := filepath.Join(cacheDir, "peerjs-"+PeerJSVersion)
	bundle := filepath.Join(dir, "node_modules", "peerjs", "dist", "peerjs.min.js")
	if _, err := os.Stat(bundle); err == nil {
		return bundle, nil
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return "", errors.New("npm not found: install Debian's npm (scripts/lab-deps.sh does as root)")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "install", "--prefix", dir, "--no-audit", "--no-fund", "--ignore-scripts", "--no-save", "--no-package-lock", "peerjs@"+PeerJSVersion)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("npm install peerjs@%s: %w\n%s", PeerJSVersion, err, out)
	}
	if _, err := os.Stat(bundle); err != nil {
		return "", fmt.Errorf("npm installed peerjs@%s but %s is missing: %w", PeerJSVersion, bundle, err)
	}
	return bundle, nil
}

// CacheDir is where InstallPeerJS keeps the client: $PUNCHD_LAB_CACHE, else
// the user's cache directory.
func CacheDir() string {
	if d := os.Getenv("PUNCHD_LAB_CACHE"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "punchd-lab")
	}
	return filepath.Join(os.TempDir(), "punchd-lab-cache")
}

// Addr is the rendezvous host's address.
func (l *Lab) Addr() netip.Addr { return l.R.Addr }

// NamedCase is a case with the name tables print.
type NamedCase struct {
	Name string
	Case
}

// MeasuredCases are the cases `punchd-lab webrtc` times: the lab test's
// four.
func MeasuredCases() []NamedCase {
	return []NamedCase{
		{"symmetric x symmetric, STUN+TURN", Case{NAT: lab.NATSymmetric, ICE: "turn"}},
		{"symmetric x symmetric, STUN only", Case{NAT: lab.NATSymmetric, ICE: "stun", Wait: 8 * time.Second}},
		{"symmetric x symmetric, TURN/TCP relay-only", Case{NAT: lab.NATSymmetric, ICE: "relay-tcp"}},
		{"port-restricted x port-restricted, STUN+TURN", Case{NAT: lab.NATPortRestricted, ICE: "turn"}},
	}
}
