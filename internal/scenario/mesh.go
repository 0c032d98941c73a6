package scenario

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/punchd/punchd/internal/control"
	"github.com/punchd/punchd/internal/lab"
)

// MemberSpec is one member of a mesh: its NAT, or the member whose NAT
// router it shares.
type MemberSpec struct {
	Name string
	NAT  lab.NATType
	// Behind names an earlier member whose router this one sits behind
	// (two hosts behind one NAT); NAT is then ignored.
	Behind string
	// Delay is a one-way delay on everything the member sends and
	// receives (lab.AddDelay); public members (NAT none) only.
	Delay time.Duration
}

// LANParty is eight members behind five NAT types, two of them behind one
// NAT: what the mesh test and `punchd-lab mesh` run. The grid predicts
// direct paths among a-e (d and e share a NAT) and between f, g and a-c;
// relays for symmetric x port-restricted/symmetric and for h (no UDP).
func LANParty() []MemberSpec {
	return []MemberSpec{
		{Name: "a", NAT: lab.NATNone},
		{Name: "b", NAT: lab.NATFullCone},
		{Name: "c", NAT: lab.NATRestricted},
		{Name: "d", NAT: lab.NATPortRestricted},
		{Name: "e", Behind: "d"},
		{Name: "f", NAT: lab.NATSymmetric},
		{Name: "g", NAT: lab.NATSymmetric},
		{Name: "h", NAT: lab.NATUDPBlocked},
	}
}

// MeshOptions describe a network of N members behind lab NATs.
type MeshOptions struct {
	Binary   string
	Members  []MemberSpec
	Dir      string
	LogLevel string
	UpArgs   []string
	// Env is extra environment for the daemons (e.g. NOTIFY_SOCKET).
	Env []string
	// RendezvousArgs are extra flags for `punchd rendezvous`.
	RendezvousArgs []string
	// RendezvousDelay is a one-way delay on everything the rendezvous
	// host sends and receives, its TURN relay's traffic included: "the
	// rendezvous on another continent".
	RendezvousDelay time.Duration
}

// Mesh is a lab with a rendezvous and N daemons that joined one network
// with one code.
type Mesh struct {
	*Run
	Nodes   []*Node
	Specs   map[string]MemberSpec
	Code    string    // the code the members were started with
	Started time.Time // when the last daemon was started
	nodeNAT map[string]lab.NATType
	router  map[string]*lab.Router
}

// StartMesh builds the lab, starts the rendezvous, makes a network code and
// starts every member with it.
func StartMesh(ctx context.Context, opts MeshOptions) (_ *Mesh, err error) {
	if opts.Binary == "" {
		return nil, errors.New("scenario: no punchd binary given")
	}
	var tempDir string
	if opts.Dir == "" {
		if tempDir, err = os.MkdirTemp("", "punchd-mesh-"); err != nil {
			return nil, err
		}
		opts.Dir = tempDir
	}
	l, err := lab.New(ctx, lab.Options{})
	if err != nil {
		if tempDir != "" {
			_ = os.RemoveAll(tempDir)
		}
		return nil, fmt.Errorf("build lab: %w", err)
	}
	m := &Mesh{
		Run:     &Run{opts: Options{Binary: opts.Binary, Dir: opts.Dir, LogLevel: opts.LogLevel, UpArgs: opts.UpArgs, RendezvousArgs: opts.RendezvousArgs}, Lab: l, tempDir: tempDir, env: opts.Env},
		Specs:   make(map[string]MemberSpec),
		nodeNAT: make(map[string]lab.NATType),
		router:  make(map[string]*lab.Router),
	}
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	if m.R, err = l.AddPublicHost("r", 1); err != nil {
		return nil, err
	}
	if opts.RendezvousDelay > 0 {
		if _, err := l.AddDelay(m.R, opts.RendezvousDelay); err != nil {
			return nil, err
		}
	}
	for _, spec := range opts.Members {
		h, err := m.addMember(spec)
		if err != nil {
			return nil, fmt.Errorf("add member %s: %w", spec.Name, err)
		}
		if spec.Delay > 0 {
			if _, err := l.AddDelay(h, spec.Delay); err != nil {
				return nil, fmt.Errorf("member %s: %w", spec.Name, err)
			}
		}
		n, err := m.newNode(ctx, spec.Name, h)
		if err != nil {
			return nil, err
		}
		m.Nodes = append(m.Nodes, n)
		m.Specs[spec.Name] = spec
	}
	if err := m.startRendezvous(ctx); err != nil {
		return nil, err
	}
	if m.Code, err = m.NewCode(ctx); err != nil {
		return nil, err
	}
	for _, n := range m.Nodes {
		if err := m.StartMember(n, m.Code); err != nil {
			return nil, err
		}
	}
	m.Started = time.Now()
	return m, nil
}

func (m *Mesh) addMember(spec MemberSpec) (*lab.Host, error) {
	if spec.Behind != "" {
		rt, ok := m.router[spec.Behind]
		if !ok {
			return nil, fmt.Errorf("member %s is behind %s, which has no NAT router", spec.Name, spec.Behind)
		}
		m.nodeNAT[spec.Name] = m.nodeNAT[spec.Behind]
		m.router[spec.Name] = rt
		return m.Lab.AddHost(spec.Name, rt)
	}
	m.nodeNAT[spec.Name] = spec.NAT
	if spec.NAT == lab.NATNone {
		return m.Lab.AddHost(spec.Name, nil)
	}
	rt, err := m.Lab.AddNAT("nat"+spec.Name, spec.NAT)
	if err != nil {
		return nil, err
	}
	m.router[spec.Name] = rt
	return m.Lab.AddHost(spec.Name, rt)
}

// NewCode runs `punchd network new` and returns the last line of its output.
func (m *Mesh) NewCode(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, m.opts.Binary, "network", "new", "--rendezvous", m.rvURL).Output()
	if err != nil {
		return "", fmt.Errorf("punchd network new: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(lines[len(lines)-1]), nil
}

// StartMember starts `punchd up --network code` on n.
func (m *Mesh) StartMember(n *Node, code string) error {
	return m.startUp(n, "--network", code, "--name", "member-"+n.Name)
}

// StopMember stops n's daemon cleanly.
func (m *Mesh) StopMember(n *Node) error {
	err := m.Stop(n, 10*time.Second)
	n.cmd = nil
	return err
}

// Node returns the member called name.
func (m *Mesh) Node(name string) *Node {
	for _, n := range m.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// ExpectedPath is what the grid predicts between two members.
func (m *Mesh) ExpectedPath(a, b *Node) string {
	ra, rb := m.router[a.Name], m.router[b.Name]
	return ExpectedPath(m.nodeNAT[a.Name], m.nodeNAT[b.Name], ra != nil && ra == rb)
}

// PathAsPredicted reports whether path (as Pair has it) is what the grid
// predicts for a and b: a relayed pair may also have gone direct by
// birthday punching (symmetric x port-restricted), the grid's hard cells.
func (m *Mesh) PathAsPredicted(a, b *Node, path string) bool {
	want := m.ExpectedPath(a, b)
	if path == want {
		return true
	}
	na, nb := m.nodeNAT[a.Name], m.nodeNAT[b.Name]
	hardCell := na == lab.NATSymmetric && nb == lab.NATPortRestricted || nb == lab.NATSymmetric && na == lab.NATPortRestricted
	return want == "relay" && hardCell && strings.HasPrefix(path, "direct (")
}

// PeerStatus reads n's status over its control socket (a unix socket in
// the file system, reachable from outside the namespace).
func (m *Mesh) PeerStatus(ctx context.Context, n *Node) (control.Status, error) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return control.GetStatus(cctx, filepath.Join(n.StateDir, "punchd.sock"))
}

// Pair is two members and the path between them, as the first of them
// (the one with the smaller name) reports it.
type Pair struct {
	A, B *Node
	Path string
}

// WaitConnected polls the members' status until every pair among nodes is
// connected from both ends, bounded by timeout; it returns the pairs with
// their paths, and what is missing on timeout.
func (m *Mesh) WaitConnected(ctx context.Context, nodes []*Node, timeout time.Duration) ([]Pair, error) {
	deadline := time.Now().Add(timeout)
	var missing []string
	for i := 0; i < 10000 && time.Now().Before(deadline); i++ {
		pairs, miss, err := m.pairs(ctx, nodes)
		if err == nil && len(miss) == 0 {
			return pairs, nil
		}
		missing = miss
		if err != nil {
			missing = append(missing, err.Error())
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil, fmt.Errorf("not all %d pairs connected within %s; missing: %s", len(nodes)*(len(nodes)-1)/2, timeout, strings.Join(missing, "; "))
}

func (m *Mesh) pairs(ctx context.Context, nodes []*Node) ([]Pair, []string, error) {
	paths := make(map[[2]string]string)
	var missing []string
	for _, n := range nodes {
		st, err := m.PeerStatus(ctx, n)
		if err != nil {
			return nil, nil, fmt.Errorf("status of %s: %w", n.Name, err)
		}
		byID := make(map[string]control.PeerStatus, len(st.Peers))
		for _, p := range st.Peers {
			byID[p.ID] = p
		}
		for _, o := range nodes {
			if o == n {
				continue
			}
			p, ok := byID[o.ID.String()]
			if !ok || p.State != "connected" || p.Path == "none" {
				missing = append(missing, fmt.Sprintf("%s->%s (%s)", n.Name, o.Name, p.State))
				continue
			}
			path := p.Path
			if p.Via != "" {
				path += " (" + p.Via + ")" // birthday punching, prediction, port mapping
			}
			paths[[2]string{n.Name, o.Name}] = path
		}
	}
	var out []Pair
	for i, a := range nodes {
		for _, b := range nodes[i+1:] {
			out = append(out, Pair{A: a, B: b, Path: paths[[2]string{a.Name, b.Name}]})
		}
	}
	return out, missing, nil
}

// Close stops every member, then the rendezvous and the lab.
func (m *Mesh) Close() error {
	var errs []error
	for _, n := range m.Nodes {
		if n.cmd != nil {
			errs = append(errs, m.StopMember(n))
		}
	}
	errs = append(errs, m.Run.Close())
	return errors.Join(errs...)
}

// MeshLogs returns the tails of every member's log.
func (m *Mesh) MeshLogs() string {
	var b strings.Builder
	b.WriteString(m.Logs())
	for _, n := range m.Nodes {
		fmt.Fprintf(&b, "---- %s (%s) ----\n%s\n", n.Name, n.LogPath, tail(n.LogPath))
	}
	return b.String()
}
