package birthday

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/punchd/punchd/internal/lab"
)

// labPair is a hard host behind a NAT of the given type, an easy host
// behind a port-restricted NAT, and a STUN server on a public host.
type labPair struct {
	l                *lab.Lab
	hard, easy, pub  *lab.Host
	hardNAT, easyNAT *lab.Router
	reflector        netip.AddrPort
}

func newLabPair(t *testing.T, hardType lab.NATType) *labPair {
	t.Helper()
	lab.RequireRoot(t)
	if testing.Short() {
		t.Skip("lab test: skipped with -short")
	}
	l, err := lab.New(context.Background(), lab.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	p := &labPair{l: l}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	p.pub, err = l.AddPublicHost("pub", 0)
	must(err)
	p.hardNAT, err = l.AddNAT("hardnat", hardType)
	must(err)
	p.easyNAT, err = l.AddNAT("easynat", lab.NATPortRestricted)
	must(err)
	p.hard, err = l.AddHost("hard", p.hardNAT)
	must(err)
	p.easy, err = l.AddHost("easy", p.easyNAT)
	must(err)
	var rc *net.UDPConn
	must(p.pub.Do(func() error {
		rc, err = net.ListenUDP("udp4", &net.UDPAddr{IP: p.pub.Addr.AsSlice(), Port: 3478})
		return err
	}))
	t.Cleanup(func() { rc.Close() })
	p.reflector = rc.LocalAddr().(*net.UDPAddr).AddrPort()
	go serveSTUN(rc)
	return p
}

type attempt struct {
	hardHit, easyHit *Hit
	hardErr, easyErr error
	elapsed          time.Duration
	hardSent         int // counted at the hard side's router: packets to the easy side
	easyProbes       int // counted at the easy side's router: packets to the hard side
}

// run makes one attempt: the hard side learns its pattern (predict) or
// not, sprays, then the easy side probes. wrongPort makes the hard side
// spray at a port the easy side does not use, so no probe can ever hit.
func (p *labPair) run(t *testing.T, cfg Config, predict, wrongPort bool) attempt {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	key, _ := NewKey()
	sess, _ := NewSession()

	var ec *net.UDPConn
	if err := p.easy.Do(func() (err error) {
		ec, err = net.ListenUDP("udp4", &net.UDPAddr{IP: p.easy.Addr.AsSlice()})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ec.Close()
	// Port-restricted keeps the port: this is the easy side's public address.
	easyPublic := netip.AddrPortFrom(p.easyNAT.WANAddr, ec.LocalAddr().(*net.UDPAddr).AddrPort().Port())
	sprayTo := easyPublic
	if wrongPort {
		sprayTo = netip.AddrPortFrom(easyPublic.Addr(), easyPublic.Port()+1)
	}
	hardOut, err := p.hardNAT.CountForwarded(ctx, "to_easy", fmt.Sprintf(`iifname "lan0" ip daddr %s udp dport %d`, sprayTo.Addr(), sprayTo.Port()))
	if err != nil {
		t.Fatal(err)
	}
	easyOut, err := p.easyNAT.CountForwarded(ctx, "to_hard", fmt.Sprintf(`iifname "lan0" ip daddr %s`, p.hardNAT.WANAddr))
	if err != nil {
		t.Fatal(err)
	}

	var h *Hard
	if err := p.hard.Do(func() (err error) {
		h, err = ListenHard(cfg, key, sess, p.hard.Addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var predicted []uint16
	if predict {
		// Three fresh mappings (sockets 0-2 to the reflector) show the
		// pattern; the spray's mappings come right after the last.
		ports, err := h.Learn(ctx, p.reflector, 3)
		if err != nil {
			t.Fatal(err)
		}
		pat := LearnPattern(ports)
		t.Logf("reflected ports %v: %s, stride %d", ports, pat, pat.Stride)
		if !pat.Sequential {
			t.Fatalf("the sequential NAT's mappings %v do not look sequential", ports)
		}
		predicted = pat.Predict(ports[len(ports)-1], h.Len(), 16)
	}

	easy := NewEasy(cfg, key, sess, func(b []byte, to netip.AddrPort) error {
		_, err := ec.WriteToUDPAddrPort(b, to)
		return err
	})
	go deliverFrom(ec, easy)

	var a attempt
	start := time.Now()
	sprayed := make(chan struct{})
	hardDone := make(chan struct{})
	go func() {
		defer close(hardDone)
		a.hardHit, a.hardErr = h.Run(ctx, sprayTo, func() { close(sprayed) })
	}()
	select {
	case <-sprayed:
	case <-hardDone:
		t.Fatalf("hard side ended before its spray was out: %v", a.hardErr)
	}
	a.easyHit, a.easyErr = easy.Run(ctx, p.hardNAT.WANAddr, predicted)
	if a.easyErr != nil {
		// The hard side waits for its timeout; no need to wait that long.
		cancel()
	}
	<-hardDone
	a.elapsed = time.Since(start)
	if a.hardHit != nil {
		defer a.hardHit.Conn.Close()
	}
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()
	if a.hardSent, err = hardOut.Packets(cctx); err != nil {
		t.Fatal(err)
	}
	if a.easyProbes, err = easyOut.Packets(cctx); err != nil {
		t.Fatal(err)
	}
	// The path carries traffic both ways, through both NATs.
	if a.hardHit != nil && a.easyHit != nil {
		if _, err := a.hardHit.Conn.WriteToUDPAddrPort([]byte("over the hit"), a.hardHit.Remote); err != nil {
			t.Fatal(err)
		}
	}
	return a
}

// Birthday punching through the lab's NATs, with the packets each side
// sends counted by its router (nft counters), not by the code under test.
func TestBirthdayThroughLabNATs(t *testing.T) {
	tests := []struct {
		name      string
		hard      lab.NATType
		cfg       Config
		predict   bool
		wrongPort bool
		wantHit   bool
		maxProbes int // for a hit
	}{
		// 256 mappings out of 64,512 ports and 2,048 probes: a miss has
		// odds of (1-256/64512)^2048, about 3 in 10,000.
		{"symmetric x port-restricted, random ports", lab.NATSymmetric,
			Config{Sockets: 256, Probes: 2048, Rate: 300}, false, false, true, 2048},
		// The sequential NAT's next ports are known: the first prediction hits.
		{"sequential symmetric x port-restricted, predicted", lab.NATSymmetricSequential,
			Config{Sockets: 256, Probes: 2048, Rate: 300}, true, false, true, 4},
		// Nothing can hit; every cap is reached and none is passed.
		{"caps when nothing hits", lab.NATSymmetric,
			Config{Sockets: 64, Probes: 600, Rate: 300, Timeout: 10 * time.Second}, false, true, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newLabPair(t, tt.hard)
			a := p.run(t, tt.cfg, tt.predict, tt.wrongPort)
			t.Logf("%s: hard hit %+v err %v; easy hit %+v err %v; counted at the routers: %d packets hard->easy, %d easy->hard; %v",
				tt.name, a.hardHit, a.hardErr, a.easyHit, a.easyErr, a.hardSent, a.easyProbes, a.elapsed)
			cfg := tt.cfg.Limits()
			// Caps, as the routers counted: one spray per socket plus
			// the acks, and no more probes than the cap.
			if a.hardSent > cfg.Sockets+3 {
				t.Errorf("hard side sent %d packets to the easy side, cap %d sockets + 3 acks", a.hardSent, cfg.Sockets)
			}
			if a.easyProbes > cfg.Probes {
				t.Errorf("easy side sent %d probes, cap %d", a.easyProbes, cfg.Probes)
			}
			// Rate: no more than cfg.Rate per second over the attempt (+1
			// for the first packet, which goes at once).
			if limit := int(a.elapsed.Seconds()*float64(cfg.Rate)) + 1; a.easyProbes > limit || a.hardSent > limit+3 {
				t.Errorf("rate above %d/s: %d probes, %d sprays in %v", cfg.Rate, a.easyProbes, a.hardSent, a.elapsed)
			}
			if !tt.wantHit {
				if !errors.Is(a.easyErr, ErrMiss) || a.hardHit != nil {
					t.Fatalf("want a miss: easy %v, hard hit %+v", a.easyErr, a.hardHit)
				}
				if a.easyProbes != cfg.Probes || a.hardSent != cfg.Sockets {
					t.Errorf("a miss should send exactly the caps: %d probes (cap %d), %d sprays (cap %d)", a.easyProbes, cfg.Probes, a.hardSent, cfg.Sockets)
				}
				return
			}
			if a.easyErr != nil || a.hardErr != nil {
				t.Fatalf("no hit: easy %v, hard %v", a.easyErr, a.hardErr)
			}
			if a.easyHit.Remote.Addr() != p.hardNAT.WANAddr || a.hardHit.Remote.Addr() != p.easyNAT.WANAddr {
				t.Fatalf("path %v <-> %v is not between the two NATs' public addresses", a.easyHit.Remote, a.hardHit.Remote)
			}
			if a.easyHit.Probes > tt.maxProbes {
				t.Errorf("hit after %d probes, want at most %d", a.easyHit.Probes, tt.maxProbes)
			}
		})
	}
}
