package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// A lab delay without netem (the lab kernel has no sch_netem): a router
// namespace is put between a public host and the internet bridge. The
// host's veth end moves from the bridge into the router (down0), a new
// veth joins the router to the bridge (up0), and proxy ARP on both makes
// the router invisible: the host keeps its address, gateway and /16.
// Policy routing sends everything the router forwards for the host, in
// both directions, into a TUN device:
//
//	pref 100  iif tun0                  lookup main  (after the delay: on its way)
//	pref 110  iif down0                 lookup 100   (from the host)
//	pref 111  iif up0 to <host address> lookup 100   (to the host)
//	table 100: default dev tun0
//
// A goroutine reads each packet from the TUN, holds it for the one-way
// delay and writes it back into the same TUN, from where the kernel routes
// it on (rule 100). Every packet is delayed once per direction, so a
// round trip through the host takes at least twice the delay.

const (
	delayTable = "100"
	// delayMaxPackets and delayMaxBytes bound what the delay queue holds:
	// at 80 ms, 4096 packets is 51k packets/s, and 16 MiB is 1.6 Gbit/s,
	// more than the lab's relays carry. Beyond them packets are dropped
	// (and counted), as a full router queue drops them.
	delayMaxPackets = 4096
	delayMaxBytes   = 16 << 20
	delayMaxDelay   = 10 * time.Second
)

// Delay is a one-way delay on everything a host sends and receives; the
// lab closes it, or Close does earlier.
type Delay struct {
	Host   *Host
	OneWay time.Duration
	NS     string // the delay router's namespace

	tun     *os.File
	queue   chan delayed
	bytes   atomic.Int64
	dropped atomic.Int64
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	once    sync.Once
}

type delayed struct {
	due time.Time
	pkt []byte
}

// Dropped is how many packets the full queue dropped.
func (d *Delay) Dropped() int64 { return d.dropped.Load() }

// AddDelay delays every packet to and from the public host h by oneWay,
// so that its round trip to anyone grows by at least 2*oneWay. Call it
// before starting what h runs: moving h's link drops what is in flight.
// One delay per host; hosts behind a NAT are not supported (delay the
// public host they talk to instead).
func (l *Lab) AddDelay(h *Host, oneWay time.Duration) (*Delay, error) {
	if h == nil || h.Router != nil {
		return nil, errors.New("AddDelay: only public hosts (lab.AddPublicHost) can be delayed")
	}
	if oneWay <= 0 || oneWay > delayMaxDelay {
		return nil, fmt.Errorf("AddDelay on %s: delay %s: use more than 0 and at most %s", h.Name, oneWay, delayMaxDelay)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l.mu.Lock()
	for _, d := range l.delays {
		if d.Host == h {
			l.mu.Unlock()
			return nil, fmt.Errorf("AddDelay on %s: the host already has a delay of %s", h.Name, d.OneWay)
		}
	}
	l.mu.Unlock()
	d := &Delay{Host: h, OneWay: oneWay, NS: l.nsName("dl" + h.Name), queue: make(chan delayed, delayMaxPackets)}
	if err := l.addNS(ctx, d.NS); err != nil {
		return nil, err
	}
	routerAddr := l.nextPublic() // source of the router's own ARP requests
	if err := runAll(ctx,
		[]string{"ip", "-n", l.wan, "link", "set", h.uplink, "nomaster"},
		[]string{"ip", "-n", l.wan, "link", "set", h.uplink, "netns", d.NS, "name", "down0"},
		[]string{"ip", "-n", d.NS, "link", "set", "down0", "up"},
	); err != nil {
		return nil, fmt.Errorf("AddDelay on %s: move its link: %w", h.Name, err)
	}
	if _, err := l.link(ctx, d.NS, "up0", l.wan, "br0"); err != nil {
		return nil, fmt.Errorf("AddDelay on %s: %w", h.Name, err)
	}
	if err := d.openTUN(); err != nil {
		return nil, fmt.Errorf("AddDelay on %s: %w", h.Name, err)
	}
	cmds := [][]string{
		{"ip", "-n", d.NS, "addr", "add", routerAddr.String() + "/16", "dev", "up0"},
		{"ip", "-n", d.NS, "link", "set", "tun0", "up"},
		{"ip", "-n", d.NS, "route", "add", "default", "via", wanBridgeAddr, "dev", "up0"},
		{"ip", "-n", d.NS, "route", "add", "default", "dev", "tun0", "table", delayTable},
		{"ip", "-n", d.NS, "rule", "add", "pref", "100", "iif", "tun0", "lookup", "main"},
		{"ip", "-n", d.NS, "rule", "add", "pref", "110", "iif", "down0", "lookup", delayTable},
	}
	for _, a := range append([]string{h.Addr.String()}, addrStrings(h)...) {
		cmds = append(cmds,
			[]string{"ip", "-n", d.NS, "route", "add", a + "/32", "dev", "down0"},
			[]string{"ip", "-n", d.NS, "rule", "add", "pref", "111", "iif", "up0", "to", a + "/32", "lookup", delayTable})
	}
	for _, kv := range []string{
		"net.ipv4.ip_forward=1",
		"net.ipv4.conf.all.rp_filter=0",
		"net.ipv4.conf.default.rp_filter=0",
		"net.ipv4.conf.up0.rp_filter=0",
		"net.ipv4.conf.down0.rp_filter=0",
		"net.ipv4.conf.tun0.rp_filter=0",
		"net.ipv4.conf.all.send_redirects=0",
		// Proxy ARP answers for the host on the bridge and for everyone
		// else towards the host; without proxy_delay=0 each broadcast
		// request waits up to 0.8 s for its answer.
		"net.ipv4.conf.up0.proxy_arp=1",
		"net.ipv4.conf.down0.proxy_arp=1",
		"net.ipv4.neigh.up0.proxy_delay=0",
		"net.ipv4.neigh.down0.proxy_delay=0",
	} {
		cmds = append(cmds, []string{"ip", "netns", "exec", d.NS, "sysctl", "-qw", kv})
	}
	if err := runAll(ctx, cmds...); err != nil {
		_ = d.tun.Close()
		return nil, fmt.Errorf("AddDelay on %s: %w", h.Name, err)
	}
	// The host learnt its neighbours' MACs and they learnt its own; now
	// the router's MAC stands for both: forget the old ones so that every
	// side asks again and proxy ARP answers.
	_ = run(ctx, "ip", "-n", h.NS, "neigh", "flush", "dev", "eth0")
	l.mu.Lock()
	nss := append([]string(nil), l.nss...)
	l.mu.Unlock()
	for _, ns := range nss {
		if ns == h.NS || ns == d.NS {
			continue
		}
		for _, a := range append([]string{h.Addr.String()}, addrStrings(h)...) {
			_ = run(ctx, "ip", "-n", ns, "neigh", "flush", "to", a)
		}
	}
	runCtx, stop := context.WithCancel(context.Background())
	d.cancel = stop
	d.wg.Add(2)
	go d.read(runCtx)
	go d.write(runCtx)
	l.mu.Lock()
	l.delays = append(l.delays, d)
	l.mu.Unlock()
	return d, nil
}

func addrStrings(h *Host) []string {
	s := make([]string, len(h.Extra))
	for i, a := range h.Extra {
		s[i] = a.String()
	}
	return s
}

// openTUN creates tun0 in the router's namespace: a TUN device belongs to
// the namespace of the thread that creates it. Raw /dev/net/tun without
// packet info or virtio headers: one read, one IP packet.
func (d *Delay) openTUN() error {
	return doInNS(d.NS, func() error {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open /dev/net/tun (is the tun module loaded?): %w", err)
		}
		ifr, err := unix.NewIfreq("tun0")
		if err != nil {
			unix.Close(fd)
			return err
		}
		ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(fd)
			return fmt.Errorf("create tun0: %w", err)
		}
		// Non-blocking, so that the runtime poller serves it and Close
		// ends a pending Read.
		if err := unix.SetNonblock(fd, true); err != nil {
			unix.Close(fd)
			return err
		}
		d.tun = os.NewFile(uintptr(fd), "tun0")
		return nil
	})
}

func (d *Delay) read(ctx context.Context) {
	defer d.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, err := d.tun.Read(buf)
		if err != nil {
			return // closed
		}
		if d.bytes.Load()+int64(n) > delayMaxBytes {
			d.dropped.Add(1)
			continue
		}
		p := delayed{due: time.Now().Add(d.OneWay), pkt: append([]byte(nil), buf[:n]...)}
		select {
		case d.queue <- p:
			d.bytes.Add(int64(n))
		case <-ctx.Done():
			return
		default:
			d.dropped.Add(1)
		}
	}
}

// write sends the packets back into the TUN when they are due. The delay
// is one constant, so the order they arrived in is the order they fall
// due in: a FIFO is the time-ordered queue.
func (d *Delay) write(ctx context.Context) {
	defer d.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var p delayed
		select {
		case p = <-d.queue:
		case <-ctx.Done():
			return
		}
		if wait := time.Until(p.due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
				return
			}
		}
		d.bytes.Add(-int64(len(p.pkt)))
		// A write error (a packet the kernel refuses) loses that packet
		// only, as on a real link.
		_, _ = d.tun.Write(p.pkt)
	}
}

// Close stops the delay's goroutines and removes its TUN device (the
// router namespace goes with the lab); idempotent. With the device its
// route in table 100 goes, the rules fall through to the main table, and
// the router forwards the host's traffic undelayed.
func (d *Delay) Close() error {
	var err error
	d.once.Do(func() {
		d.cancel()
		err = d.tun.Close()
		d.wg.Wait()
	})
	return err
}
