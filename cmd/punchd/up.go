package main

import (
	"fmt"
	"net/netip"
	"os"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/punchd/punchd/internal/birthday"
	"github.com/punchd/punchd/internal/daemon"
	"github.com/punchd/punchd/internal/identity"
	"github.com/punchd/punchd/internal/network"
	"github.com/punchd/punchd/internal/tunnel"
)

func newUpCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "up {--network CODE | --rendezvous URL --peer ID [--peer ID...]}",
		Short: "Run the daemon: meet peers at the rendezvous, punch through NATs, bring up the tunnel",
		Args:  cobra.NoArgs,
		RunE:  runUp,
	}
	fs := cmd.Flags()
	addCommonFlags(fs)
	addStateFlags(fs)
	fs.String("rendezvous", "", "rendezvous URL, e.g. http://rendezvous.example:8478 (https:// for TLS)")
	fs.StringArray("peer", nil, "peer to link with: its ID (from `punchd id`) or an alias from the config file's peers map; repeatable")
	fs.String("network", "", "join the network of this code (from `punchd network new`); its members need no --peer")
	fs.String("name", "", "name shown to the network's members (default: the host name)")
	fs.Bool("peer-relay", true, "carry traffic between two peers this host reaches directly when they cannot punch, and send through such a peer when it beats the TURN relay")
	fs.Bool("no-peer-relay", false, "neither relay for peers nor through them (same as --peer-relay=false)")
	fs.String("interface", "punch0", "name of the tunnel interface")
	fs.StringSlice("overlay-prefix", []string{identity.DefaultOverlayIPv4.String(), identity.DefaultOverlayIPv6.String()},
		"overlay prefixes (one IPv4 and/or one IPv6); addresses inside are derived from the keys")
	fs.Uint16("listen-port", 0, "UDP port of the tunnel socket (0: any free port)")
	fs.Int("mtu", tunnel.DefaultMTU, "tunnel MTU (the default fits WireGuard and a TURN relay reached over IPv6 in 1500-byte links)")
	fs.StringArray("stun", nil, "extra STUN server (HOST:PORT or stun:HOST:PORT); repeatable")
	fs.Bool("pin-ice-servers", false, "use only the --stun and --turn servers, none of those the rendezvous offers")
	fs.StringArray("turn", nil, "extra TURN server (turn:HOST:PORT[?transport=tcp], turns:HOST:PORT), e.g. a coturn; repeatable")
	fs.String("turn-secret", "", "shared secret of the --turn servers (coturn use-auth-secret); visible in ps: prefer --turn-secret-file or PUNCHD_TURN_SECRET")
	fs.String("turn-secret-file", "", "file holding the shared secret of the --turn servers (mode 0600)")
	fs.String("turn-user", "", "user name for the --turn servers (instead of --turn-secret)")
	fs.String("turn-password", "", "password for the --turn servers; visible in ps: prefer --turn-password-file or PUNCHD_TURN_PASSWORD")
	fs.String("turn-password-file", "", "file holding the password for the --turn servers (mode 0600)")
	fs.String("debug-listen", "", "serve Go's pprof profiles on this address (e.g. 127.0.0.1:6060); off by default")
	fs.String("metrics-listen", "", "serve Prometheus metrics on this address at /metrics (e.g. 127.0.0.1:9478); off by default")
	fs.Bool("force-relay", false, "use relay candidates only (testing relays; hides the hosts' addresses from each other)")
	fs.Bool("birthday", true, "birthday punching between a symmetric and a port-restricted NAT (bounded; the relay carries the tunnel meanwhile)")
	fs.Int("birthday-sockets", birthday.DefaultSockets, fmt.Sprintf("birthday punching: sockets the symmetric side opens (at most %d)", birthday.MaxSockets))
	fs.Int("birthday-probes", birthday.DefaultProbes, fmt.Sprintf("birthday punching: probes the port-restricted side sends per attempt (at most %d)", birthday.MaxProbes))
	fs.Int("birthday-rate", birthday.DefaultRate, fmt.Sprintf("birthday punching: packets per second either side sends (at most %d)", birthday.MaxRate))
	fs.Duration("birthday-cooldown", birthday.DefaultCooldown, "birthday punching: wait this long after a miss before trying the same peer again")
	fs.Bool("port-mapping", true, "map the tunnel port on the gateway (PCP, NAT-PMP, UPnP-IGD) and offer it to peers as a candidate")
	return cmd
}

func runUp(cmd *cobra.Command, _ []string) error {
	s, err := loadSettings(cmd)
	if err != nil {
		return err
	}
	log, err := s.logger(os.Stderr)
	if err != nil {
		return err
	}
	url := s.str("rendezvous")
	var code *network.Code
	name := s.str("name")
	if raw := s.str("network"); raw != "" {
		c, err := network.Parse(raw)
		if err != nil {
			return fmt.Errorf("bad --network: %w", err)
		}
		code = &c
		if url == "" {
			url = c.Rendezvous
		}
		if name == "" {
			if name, err = os.Hostname(); err != nil {
				return fmt.Errorf("no --name given and the host name is unknown: %w", err)
			}
		}
	}
	if url == "" {
		return fmt.Errorf("no rendezvous: give --network CODE, or --rendezvous URL (e.g. http://HOST:8478 where `punchd rendezvous` runs)")
	}
	var peers []daemon.Peer
	if args := s.list("peer"); len(args) > 0 || code == nil {
		if peers, err = resolvePeers(args, s.v.GetStringMapString("peers")); err != nil {
			return err
		}
	}
	prefixes, err := parseOverlayPrefixes(s.list("overlay-prefix"))
	if err != nil {
		return err
	}
	mtu := s.v.GetInt("mtu")
	if mtu < 1280 || mtu > 65535 {
		return fmt.Errorf("bad --mtu %d: use 1280..65535 (%d suits most links)", mtu, tunnel.DefaultMTU)
	}
	turnSecret, warnings, err := s.secret(cmd, "turn-secret")
	if err != nil {
		return err
	}
	turnPassword, more, err := s.secret(cmd, "turn-password")
	if err != nil {
		return err
	}
	for _, w := range append(warnings, more...) {
		log.Warn(w)
	}
	var turns []daemon.ExternalTURN
	for _, u := range s.list("turn") {
		t := daemon.ExternalTURN{URL: u, Secret: turnSecret, Username: s.str("turn-user"), Password: turnPassword}
		if err := t.Validate(); err != nil {
			return err
		}
		turns = append(turns, t)
	}
	var stuns []string
	for _, u := range s.list("stun") {
		v, err := daemon.ParseSTUN(u)
		if err != nil {
			return err
		}
		stuns = append(stuns, v)
	}
	key, created, err := identity.LoadOrCreate(s.stateDir())
	if err != nil {
		return err
	}
	if created {
		log.Info("created a new key", "state_dir", s.stateDir(), "id", key.PublicKey().String())
	}
	s.warnKeyFile(log)
	return daemon.Run(cmd.Context(), daemon.Config{
		Key:             key,
		Interface:       s.str("interface"),
		MTU:             mtu,
		ListenPort:      uint16(s.v.GetUint("listen-port")),
		OverlayPrefixes: prefixes,
		RendezvousURL:   url,
		Peers:           peers,
		Network:         code,
		Name:            name,
		PeerRelay:       s.v.GetBool("peer-relay") && !s.v.GetBool("no-peer-relay"),
		ControlSocket:   s.controlSocket(),
		TURN:            turns,
		STUN:            stuns,
		PinICEServers:   s.v.GetBool("pin-ice-servers"),
		ForceRelay:      s.v.GetBool("force-relay"),
		NoBirthday:      !s.v.GetBool("birthday"),
		Birthday: birthday.Config{
			Sockets:  s.v.GetInt("birthday-sockets"),
			Probes:   s.v.GetInt("birthday-probes"),
			Rate:     s.v.GetInt("birthday-rate"),
			Cooldown: s.v.GetDuration("birthday-cooldown"),
		},
		NoPortMapping: !s.v.GetBool("port-mapping"),
		DebugListen:   s.str("debug-listen"),
		MetricsListen: s.str("metrics-listen"),
		Logger:        log,
	})
}

// resolvePeers turns --peer values into keys: an ID is taken as is, any
// other word must be an alias from the config file's peers map.
func resolvePeers(args []string, aliases map[string]string) ([]daemon.Peer, error) {
	if len(args) == 0 {
		return nil, fmt.Errorf("no peers: give --peer ID (run `punchd id` on the other host to get its ID) or --network CODE (from `punchd network new`)")
	}
	var peers []daemon.Peer
	for _, a := range args {
		if id, ok := aliases[strings.ToLower(a)]; ok {
			k, err := identity.ParseID(id)
			if err != nil {
				return nil, fmt.Errorf("config peers.%s: bad peer ID %q: %w", a, id, err)
			}
			peers = append(peers, daemon.Peer{Key: k, Alias: a})
			continue
		}
		k, err := identity.ParseID(a)
		if err != nil {
			known := make([]string, 0, len(aliases))
			for name := range aliases {
				known = append(known, name)
			}
			sort.Strings(known)
			hint := "no aliases are configured"
			if len(known) > 0 {
				hint = "known aliases: " + strings.Join(known, ", ")
			}
			return nil, fmt.Errorf("bad --peer %q: not a peer ID (%w) and not an alias (%s)", a, err, hint)
		}
		peers = append(peers, daemon.Peer{Key: k})
	}
	return peers, nil
}

func parseOverlayPrefixes(vals []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	var have4, have6 bool
	for _, v := range vals {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return nil, fmt.Errorf("bad --overlay-prefix %q: %w (e.g. 10.188.0.0/16 or fd50:756e:6368::/48)", v, err)
		}
		if p != p.Masked() {
			return nil, fmt.Errorf("bad --overlay-prefix %q: host bits set; did you mean %s?", v, p.Masked())
		}
		if p.Addr().Is4() && have4 || p.Addr().Is6() && have6 {
			return nil, fmt.Errorf("bad --overlay-prefix %q: give at most one IPv4 and one IPv6 prefix", v)
		}
		have4 = have4 || p.Addr().Is4()
		have6 = have6 || p.Addr().Is6()
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no --overlay-prefix: give an IPv4 and/or IPv6 prefix")
	}
	return out, nil
}
