package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"strings"
	"time"
)

// Coturn is a STUN-only coturn on a public host's two addresses: an RFC
// 5780 server (primary port 3478, alternate 3479), the third-party
// reference for NAT discovery.
type Coturn struct{ *proc }

// CoturnInstalled says what to install when coturn's tools are missing.
func CoturnInstalled() error {
	for _, tool := range []string{"turnserver", "turnutils_natdiscovery"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not installed (apt-get install coturn; `make test` as root does it)", tool)
		}
	}
	return nil
}

// StartCoturn runs coturn on srv (which needs an extra address) and waits
// until both of its UDP ports are bound.
func StartCoturn(ctx context.Context, srv *Host) (*Coturn, error) {
	if len(srv.Extra) == 0 {
		return nil, errors.New("coturn for RFC 5780 needs a host with an extra address: AddPublicHost(name, 1)")
	}
	args := []string{"-n", "--no-cli", "--no-tls", "--no-dtls", "--stun-only", "--no-auth",
		"--listening-port", "3478", "--alt-listening-port", "3479", "--log-file", "stdout", "--simple-log",
		"-L", srv.Addr.String(), "-L", srv.Extra[0].String()}
	p, err := startProc(srv.Command(context.Background(), "turnserver", args...), nil)
	if err != nil {
		return nil, fmt.Errorf("start coturn: %w", err)
	}
	c := &Coturn{p}
	if err := WaitUDPBound(ctx, srv, srv.Addr.String()+":3478", srv.Extra[0].String()+":3479"); err != nil {
		c.Stop()
		return nil, fmt.Errorf("coturn did not start: %w\n%s", err, c.Log())
	}
	return c, nil
}

// Stop kills coturn and waits for it; idempotent.
func (c *Coturn) Stop() { c.stop(0) }

// WaitUDPBound waits (bounded in tries and time) until something in h's
// namespace has bound every addr: then binding it ourselves fails.
func WaitUDPBound(ctx context.Context, h *Host, addrs ...string) error {
	deadline := time.Now().Add(15 * time.Second)
	for i := 0; i < 300 && time.Now().Before(deadline); i++ {
		inUse := 0
		_ = h.Do(func() error {
			for _, a := range addrs {
				c, err := net.ListenPacket("udp4", a)
				if err != nil {
					inUse++
					continue
				}
				c.Close()
			}
			return nil
		})
		if inUse == len(addrs) {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not bound in %s within 15s", strings.Join(addrs, ", "), h.Name)
}

// Discovery is what coturn's turnutils_natdiscovery concluded, in its own
// words normalised: "independent", "address dependent", "address and port
// dependent", or "" when it got no answer.
type Discovery struct {
	Mapping, Filtering string
	// From its first answer: the reflexive address and the local port.
	ReflexiveIP, ReflexivePort, LocalPort string
	Output                                string
}

var (
	mappingRe   = regexp.MustCompile(`(?i)NAT with (.*?) mapping`)
	filteringRe = regexp.MustCompile(`(?i)NAT with (.*?) filtering`)
	noNATRe     = regexp.MustCompile(`(?i)no NAT`)
	// First response: reflexive ip, port, then the local port.
	reflexiveRe = regexp.MustCompile(`UDP reflexive addr: ([0-9.]+):(\d+)\s+.*Local addr: : [0-9.]+:(\d+)`)
)

// NATDiscovery runs `turnutils_natdiscovery -m -f server` (the RFC 5780
// mapping and filtering tests) from host.
func NATDiscovery(ctx context.Context, host *Host, server string) Discovery {
	cctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	b, _ := host.Command(cctx, "turnutils_natdiscovery", "-m", "-f", server).CombinedOutput()
	return parseNATDiscovery(string(b))
}

func parseNATDiscovery(out string) Discovery {
	d := Discovery{Output: out}
	if m := mappingRe.FindStringSubmatch(out); m != nil {
		d.Mapping = normalizeBehaviour(m[1])
	}
	if m := filteringRe.FindStringSubmatch(out); m != nil {
		d.Filtering = normalizeBehaviour(m[1])
	}
	if noNATRe.MatchString(out) {
		// natdiscovery says "No NAT" for an endpoint-independent public address.
		if d.Mapping == "" {
			d.Mapping = "independent"
		}
		if d.Filtering == "" {
			d.Filtering = "independent"
		}
	}
	if m := reflexiveRe.FindStringSubmatch(out); m != nil {
		d.ReflexiveIP, d.ReflexivePort, d.LocalPort = m[1], m[2], m[3]
	}
	return d
}

// Blocked reports whether natdiscovery got no answer at all, in either
// test.
func (d Discovery) Blocked() bool {
	return d.Mapping == "" && d.Filtering == "" && d.ReflexiveIP == "" &&
		strings.Count(d.Output, "STUN receive timeout") >= 2
}

// RFC5780 renders natdiscovery's words the way RFC 5780 (and `punchd
// nat`) name the behaviours.
func RFC5780(natdiscovery string) string {
	switch natdiscovery {
	case "independent":
		return "endpoint-independent"
	case "address dependent":
		return "address-dependent"
	case "address and port dependent":
		return "address-and-port-dependent"
	case "":
		return "unknown"
	}
	return natdiscovery
}

func normalizeBehaviour(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	s = strings.TrimPrefix(s, "endpoint ")
	s = strings.TrimPrefix(s, "endpoint-")
	return strings.ReplaceAll(s, "-", " ")
}
