package lab

import (
	"bufio"
	"context"
	"net"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The lab's NATs must be what they claim, as judged by a third party:
// coturn's RFC 5780 NAT discovery (turnutils_natdiscovery) against a coturn
// with an alternate address, run from a host behind each NAT type.
func TestNATTypesMatchCoturnDiscovery(t *testing.T) {
	RequireRoot(t)
	for _, tool := range []string{"turnserver", "turnutils_natdiscovery"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (apt-get install coturn; `sudo make test` does it)", tool)
		}
	}
	tests := []struct {
		nat                NATType
		mapping, filtering string // as natdiscovery names them; "" = blocked
	}{
		{NATNone, "independent", "independent"},
		{NATFullCone, "independent", "independent"},
		{NATRestricted, "independent", "address dependent"},
		{NATPortRestricted, "independent", "address and port dependent"},
		{NATSymmetric, "address and port dependent", "address and port dependent"},
		{NATUDPBlocked, "", ""},
	}
	for _, tt := range tests {
		t.Run(string(tt.nat), func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			l, err := New(ctx, Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			srv, err := l.AddPublicHost("stun", 1)
			if err != nil {
				t.Fatal(err)
			}
			var r *Router
			if tt.nat != NATNone {
				if r, err = l.AddNAT("nat", tt.nat); err != nil {
					t.Fatal(err)
				}
			}
			client, err := l.AddHost("client", r)
			if err != nil {
				t.Fatal(err)
			}
			stopCoturn := startCoturn(ctx, t, srv)
			defer stopCoturn()

			mapping, filtering, out := natDiscovery(ctx, t, client, srv.Addr.String())
			t.Logf("%s\nturnutils_natdiscovery -m -f %s (from %s):\n%s", l.Describe(), srv.Addr, client.Addr, out)
			if tt.mapping == "" {
				// UDP blocked: no binding response at all, in either test.
				if mapping != "" || filtering != "" || reflexiveRe.MatchString(out) ||
					strings.Count(out, "STUN receive timeout") < 2 {
					t.Fatalf("udp-blocked: natdiscovery should time out in both tests, got mapping %q filtering %q:\n%s", mapping, filtering, out)
				}
				return
			}
			if mapping != tt.mapping || filtering != tt.filtering {
				t.Fatalf("%s: natdiscovery says mapping %q, filtering %q; want %q, %q\n%s",
					tt.nat, mapping, filtering, tt.mapping, tt.filtering, out)
			}
			// The address the server saw: the host itself without NAT,
			// the router's WAN address behind one; with an endpoint-
			// independent mapping also the host's own port (masquerade
			// preserves it), which is what makes the lab's EIM NATs
			// behave like home routers.
			m := reflexiveRe.FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("no reflexive address in natdiscovery output:\n%s", out)
			}
			wantIP := client.Addr
			if r != nil {
				wantIP = r.WANAddr
			}
			if m[1] != wantIP.String() {
				t.Errorf("reflexive address %s:%s, want IP %s", m[1], m[2], wantIP)
			}
			if tt.mapping == "independent" && m[2] != m[3] {
				t.Errorf("mapping moved the port: reflexive %s, local %s", m[2], m[3])
			}
		})
	}
}

// startCoturn runs a STUN-only coturn on both of srv's addresses (RFC 5780
// needs an alternate IP and port) and waits until it answers.
func startCoturn(ctx context.Context, t *testing.T, srv *Host) func() {
	t.Helper()
	args := []string{"-n", "--no-cli", "--no-tls", "--no-dtls", "--stun-only", "--no-auth",
		"--listening-port", "3478", "--alt-listening-port", "3479", "--log-file", "stdout", "--simple-log",
		"-L", srv.Addr.String(), "-L", srv.Extra[0].String()}
	cmd := srv.Command(context.Background(), "turnserver", args...)
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var log strings.Builder
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
		}
	}()
	stop := func() {
		_ = cmd.Process.Kill()
		<-done
		_ = cmd.Wait()
	}
	// Ready when both UDP ports are bound in its namespace: a bind
	// attempt there fails with "address in use".
	deadline := time.Now().Add(15 * time.Second)
	for i := 0; i < 300 && time.Now().Before(deadline); i++ {
		inUse := 0
		_ = srv.Do(func() error {
			for _, a := range []string{srv.Addr.String() + ":3478", srv.Extra[0].String() + ":3479"} {
				c, err := net.ListenPacket("udp4", a)
				if err != nil {
					inUse++
					continue
				}
				c.Close()
			}
			return nil
		})
		if inUse == 2 {
			return stop
		}
		if ctx.Err() != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	t.Fatalf("coturn did not start:\n%s", log.String())
	return nil
}

var (
	mappingRe   = regexp.MustCompile(`(?i)NAT with (.*?) mapping`)
	filteringRe = regexp.MustCompile(`(?i)NAT with (.*?) filtering`)
	noNATRe     = regexp.MustCompile(`(?i)no NAT`)
	// First response: reflexive ip, port, then the local port.
	reflexiveRe = regexp.MustCompile(`UDP reflexive addr: ([0-9.]+):(\d+)\s+.*Local addr: : [0-9.]+:(\d+)`)
)

// natDiscovery runs the RFC 5780 mapping and filtering tests from host and
// returns what coturn's tool concluded ("" when it got no answer at all).
func natDiscovery(ctx context.Context, t *testing.T, host *Host, server string) (mapping, filtering, out string) {
	t.Helper()
	cctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	b, _ := host.Command(cctx, "turnutils_natdiscovery", "-m", "-f", server).CombinedOutput()
	out = string(b)
	if m := mappingRe.FindStringSubmatch(out); m != nil {
		mapping = normalize(m[1])
	}
	if m := filteringRe.FindStringSubmatch(out); m != nil {
		filtering = normalize(m[1])
	}
	if noNATRe.MatchString(out) {
		// natdiscovery says "No NAT" for an endpoint-independent public address.
		if mapping == "" {
			mapping = "independent"
		}
		if filtering == "" {
			filtering = "independent"
		}
	}
	return mapping, filtering, out
}

func normalize(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	s = strings.TrimPrefix(s, "endpoint ")
	s = strings.TrimPrefix(s, "endpoint-")
	return strings.ReplaceAll(s, "-", " ")
}
