package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync"

	"github.com/punchd/punchd/internal/natprobe"
	"github.com/punchd/punchd/internal/portmap"
	"github.com/spf13/cobra"
)

func newNATCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "nat [--server HOST[:PORT]] [--json]",
		Short: "Tell which NAT this host is behind (RFC 5780 mapping and filtering, port mapping) and what it means for punchd",
		Long: `punchd nat runs the RFC 5780 NAT behaviour tests against a STUN server
with an alternate address (punchd rendezvous with --stun-alt-ip, or coturn with
two listening IPs and --alt-listening-port) and asks the default gateway for
UPnP-IGD, NAT-PMP and PCP. It reports the external address, mapping and
filtering behaviour, the classic NAT name, port preservation, hairpinning,
whether UDP is blocked, and which paths punchd will get. Progress goes to
stderr; the whole run takes under 5 seconds.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := loadSettings(cmd)
			if err != nil {
				return err
			}
			server, err := natServer(s.str("server"), s.str("rendezvous"))
			if err != nil {
				return err
			}
			asJSON := s.v.GetBool("json")
			var mu sync.Mutex
			progress := func(line string) {
				mu.Lock()
				defer mu.Unlock()
				fmt.Fprintln(cmd.ErrOrStderr(), "punchd nat:", line)
			}
			rep, runErr := natprobe.Check(cmd.Context(), natprobe.CheckConfig{
				Discover:  natprobe.DiscoverConfig{Server: server, Progress: progress},
				PortMap:   portmap.Config{Progress: progress},
				NoPortMap: s.v.GetBool("no-port-mapping"),
			})
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else if err := rep.WriteText(cmd.OutOrStdout()); err != nil {
				return err
			}
			return runErr
		},
	}
	fs := cmd.Flags()
	addCommonFlags(fs)
	fs.String("server", "", "RFC 5780 STUN server HOST[:PORT] (default: the --rendezvous host, port 3478)")
	fs.String("rendezvous", "", "rendezvous URL, e.g. http://rendezvous.example:8478: its host is the default --server")
	fs.Bool("json", false, "print JSON instead of a table (progress still goes to stderr)")
	fs.Bool("no-port-mapping", false, "do not ask the gateway for UPnP-IGD, NAT-PMP or PCP")
	return cmd
}

// natServer picks the STUN server: --server, else the rendezvous host on
// the STUN port.
func natServer(server, rendezvous string) (string, error) {
	if server != "" {
		return server, nil
	}
	if rendezvous == "" {
		return "", fmt.Errorf("no server to test against: give --server HOST[:PORT] (an RFC 5780 STUN server) or --rendezvous URL (or set rendezvous: in %s)", defaultConfigFile)
	}
	u, err := url.Parse(rendezvous)
	if err != nil || u.Hostname() == "" {
		return "", fmt.Errorf("bad --rendezvous %q: want a URL like http://HOST:8478", rendezvous)
	}
	return net.JoinHostPort(u.Hostname(), strconv.Itoa(natprobe.DefaultSTUNPort)), nil
}
