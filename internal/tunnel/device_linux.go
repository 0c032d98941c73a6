package tunnel

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/punchd/punchd/internal/fanout"
	"github.com/punchd/punchd/internal/identity"
)

// DeviceConfig describes the tunnel interface.
type DeviceConfig struct {
	Interface  string
	MTU        int // 0: DefaultMTU
	PrivateKey identity.PrivateKey
	ListenPort uint16 // 0: any free port
	// Addresses carry the whole overlay's prefix length, so every peer is
	// on-link, as on a LAN.
	Addresses []netip.Prefix
	Logger    *slog.Logger
}

// Device is a wireguard-go device on a TUN interface.
type Device struct {
	log    *slog.Logger
	name   string
	bind   *Bind
	wg     *device.Device
	fanout *fanout.TUN
	port   uint16
	close  sync.Once
}

// keepaliveSeconds keeps NAT mappings and the handshake warm; ICE consent
// checks also keep the mapping, this covers relays and idle links.
const keepaliveSeconds = 25

// NewDevice creates the TUN, starts WireGuard on bind and configures the
// addresses. On error nothing is left behind.
func NewDevice(cfg DeviceConfig, bind *Bind) (_ *Device, err error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if cfg.MTU == 0 {
		cfg.MTU = DefaultMTU
	}
	if err := checkInterfaceName(cfg.Interface); err != nil {
		return nil, err
	}
	if bind == nil {
		return nil, errors.New("create tunnel: no Bind given (tunnel.NewBind)")
	}
	if _, err := os.Stat("/dev/net/tun"); errors.Is(err, os.ErrNotExist) {
		return nil, errors.New("create TUN: /dev/net/tun does not exist: load the tun module: modprobe tun (in a container, pass the device in: --device /dev/net/tun)")
	}
	// TUNSETIFF would attach to a leftover persistent TUN of that name, or
	// fail with a bare EINVAL/EBUSY for other links; say what is going on.
	if _, err := netlink.LinkByName(cfg.Interface); err == nil {
		return nil, errInterfaceExists(cfg.Interface)
	}
	// CreateTUN turns on the offloads (vnet header, TSO/USO) itself.
	tdev, err := tun.CreateTUN(cfg.Interface, cfg.MTU)
	if err != nil {
		return nil, tunError(cfg.Interface, err)
	}
	bind.setExcludeInterface(cfg.Interface)
	d := &Device{log: log, name: cfg.Interface, bind: bind}
	d.fanout = fanout.New(tdev, cfg.Addresses, log)
	d.wg = device.NewDevice(d.fanout, bind, wgLogger(log))
	defer func() {
		if err != nil {
			// Removes the TUN and closes the socket; the Bind itself is
			// not shut down, it is still the caller's.
			d.wg.Close()
		}
	}()
	// Before any peer exists: the Bind, not roaming, picks endpoints.
	d.wg.DisableSomeRoamingForBrokenMobileSemantics()
	uapi := fmt.Sprintf("private_key=%s\nlisten_port=%d\n", cfg.PrivateKey.Hex(), cfg.ListenPort)
	if err := d.wg.IpcSet(uapi); err != nil {
		return nil, fmt.Errorf("configure wireguard: %w", err)
	}
	if err := d.wg.Up(); err != nil {
		return nil, fmt.Errorf("bring wireguard up: %w", err)
	}
	d.port = bind.LocalPort()
	if err := configureLink(log, cfg.Interface, cfg.Addresses); err != nil {
		return nil, err
	}
	return d, nil
}

func configureLink(log *slog.Logger, name string, addrs []netip.Prefix) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find interface %s: %w", name, err)
	}
	for _, a := range addrs {
		nl := &netlink.Addr{IPNet: netlinkPrefix(a)}
		if a.Addr().Is6() {
			// No DAD on a point-to-multipoint tunnel: the address is ours by
			// construction, and DAD would delay it by a second or more.
			nl.Flags = 0x80 // IFA_F_NODAD
		}
		if err := netlink.AddrAdd(link, nl); err != nil {
			if a.Addr().Is6() && ipv6Disabled() {
				// Many hosts turn IPv6 off; the IPv4 overlay still works.
				log.Warn("IPv6 is disabled on this host; the tunnel carries IPv4 only", "skipped", a.String())
				continue
			}
			return fmt.Errorf("add address %s to %s: %w", a, name, err)
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

// ListenPort is the UDP port of the shared socket.
func (d *Device) ListenPort() uint16 { return d.port }

// AddPeer adds a WireGuard peer whose endpoint is the Bind's logical
// endpoint for it; allowedIPs are its overlay host routes.
func (d *Device) AddPeer(pub identity.PublicKey, allowedIPs []netip.Prefix) error {
	var b strings.Builder
	fmt.Fprintf(&b, "public_key=%s\nendpoint=%s\npersistent_keepalive_interval=%d\nreplace_allowed_ips=true\n",
		pub.Hex(), d.bind.EndpointFor(pub), keepaliveSeconds)
	for _, p := range allowedIPs {
		fmt.Fprintf(&b, "allowed_ip=%s\n", p)
	}
	if err := d.wg.IpcSet(b.String()); err != nil {
		return fmt.Errorf("add wireguard peer %s: %w", pub.Short(), err)
	}
	d.fanout.SetPeer(pub, allowedIPs)
	return nil
}

// RemovePeer removes a peer from WireGuard and drops its path and held
// packets in the Bind.
func (d *Device) RemovePeer(pub identity.PublicKey) error {
	if err := d.wg.IpcSet(fmt.Sprintf("public_key=%s\nremove=true\n", pub.Hex())); err != nil {
		return fmt.Errorf("remove wireguard peer %s: %w", pub.Short(), err)
	}
	d.bind.forgetPath(pub)
	d.fanout.RemovePeer(pub)
	return nil
}

// Drops are the packets the Bind dropped on full queues.
func (d *Device) Drops() Drops { return d.bind.Drops() }

// PeerStats are WireGuard's counters for one peer.
type PeerStats struct {
	RxBytes, TxBytes uint64
	LastHandshake    time.Time
}

// Stats reads every peer's counters.
func (d *Device) Stats() (map[identity.PublicKey]PeerStats, error) {
	text, err := d.wg.IpcGet()
	if err != nil {
		return nil, fmt.Errorf("read wireguard state: %w", err)
	}
	return parseStats(text)
}

func parseStats(text string) (map[identity.PublicKey]PeerStats, error) {
	out := make(map[identity.PublicKey]PeerStats)
	var cur *identity.PublicKey
	var st PeerStats
	var sec, nsec int64
	flush := func() {
		if cur != nil {
			if sec != 0 || nsec != 0 {
				st.LastHandshake = time.Unix(sec, nsec)
			}
			out[*cur] = st
		}
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		switch k {
		case "public_key":
			flush()
			key, err := parseHexKey(v)
			if err != nil {
				return nil, fmt.Errorf("wireguard state: bad public_key %q: %w", v, err)
			}
			cur, st, sec, nsec = &key, PeerStats{}, 0, 0
		case "rx_bytes":
			st.RxBytes, _ = strconv.ParseUint(v, 10, 64)
		case "tx_bytes":
			st.TxBytes, _ = strconv.ParseUint(v, 10, 64)
		case "last_handshake_time_sec":
			sec, _ = strconv.ParseInt(v, 10, 64)
		case "last_handshake_time_nsec":
			nsec, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	flush()
	return out, sc.Err()
}

// Close stops WireGuard, closes the Bind's socket, shuts the Bind down for
// good (STUNConn reads end with net.ErrClosed) and removes the TUN
// (closing it deletes the interface, and with it its addresses and
// routes). Idempotent.
func (d *Device) Close() error {
	d.close.Do(func() {
		d.wg.Close()
		d.bind.Shutdown()
	})
	return nil
}

// wgLogger routes wireguard-go's printf logging to slog; its verbose lines
// are debug, its errors are warnings (it logs recoverable ones too).
func wgLogger(log *slog.Logger) *device.Logger {
	ctx := context.Background()
	return &device.Logger{
		Verbosef: func(format string, args ...any) {
			// Formatting is the cost; skip it when debug is off.
			if log.Enabled(ctx, slog.LevelDebug) {
				log.Debug(fmt.Sprintf(format, args...))
			}
		},
		Errorf: func(format string, args ...any) { log.Warn(fmt.Sprintf(format, args...)) },
	}
}

// checkInterfaceName rejects names the kernel would refuse with a bare
// EINVAL: empty, longer than IFNAMSIZ-1, "." or "..", or with '/', ':' or
// white space.
func checkInterfaceName(name string) error {
	bad := name == "" || len(name) > 15 || name == "." || name == ".." ||
		strings.ContainsFunc(name, func(r rune) bool { return r == '/' || r == ':' || r <= ' ' || r == 0x7f })
	if bad {
		return fmt.Errorf("create TUN: bad interface name %q: 1-15 characters, no '/', ':' or spaces (e.g. punch0)", name)
	}
	return nil
}

func errInterfaceExists(name string) error {
	return fmt.Errorf("create TUN: interface %s already exists; is another punchd running? use --interface to pick another name", name)
}

// tunError turns CreateTUN's bare errnos into what to do about them.
func tunError(name string, err error) error {
	switch {
	case errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EACCES), errors.Is(err, os.ErrPermission):
		return fmt.Errorf("create TUN %s: %w: needs root or CAP_NET_ADMIN (run punchd up as root, or setcap cap_net_admin+ep on the binary)", name, err)
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ENODEV), errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("create TUN %s: %w: load the tun module: modprobe tun", name, err)
	case errors.Is(err, syscall.EBUSY), errors.Is(err, syscall.EEXIST):
		return fmt.Errorf("%w (%w)", errInterfaceExists(name), err)
	case errors.Is(err, syscall.EINVAL):
		return fmt.Errorf("create TUN %s: %w: the name is taken by an interface that is not a TUN; use --interface to pick another name", name, err)
	default:
		return fmt.Errorf("create TUN %s: %w", name, err)
	}
}

func ipv6Disabled() bool {
	b, err := os.ReadFile("/proc/sys/net/ipv6/conf/all/disable_ipv6")
	return err == nil && strings.TrimSpace(string(b)) == "1"
}
