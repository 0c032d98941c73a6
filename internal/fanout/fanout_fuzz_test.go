package fanout

import (
	"bytes"
	"net/netip"
	"testing"
)

// FuzzFanoutRead: what the kernel hands the TUN reader (anything a local
// program sends) comes out to wireguard-go with every packet that is not a
// group packet unchanged and in order, and every group packet as exactly
// one envelope per peer that carries it unchanged; nothing else, nothing
// lost.
func FuzzFanoutRead(f *testing.F) {
	hosts := newFanoutHosts(&testing.T{}, 3)
	a := hosts[0]
	f.Add(ipv4UDP("10.188.0.1", "10.188.255.255", "lobby"), ipv4UDP("10.188.0.1", "10.188.0.2", "x"), ipv6Packet("fd50::1", "ff02::fb", 17, "12345678q"))
	f.Add([]byte{0x45}, []byte{}, ipv4UDP("10.188.0.1", "224.0.0.251", "q"))
	f.Add(appendEnvelope(nil, a.v4.Addr(), hosts[1].v4.Addr(), []byte("e")), []byte{0x60}, []byte{})
	f.Fuzz(func(t *testing.T, p1, p2, p3 []byte) {
		var in [][]byte
		for _, p := range [][]byte{p1, p2, p3} {
			in = append(in, p[:min(len(p), 1400)]) // the TUN's MTU bounds what it reads
		}
		a.fake.reads = [][][]byte{in}
		out := readAll(t, a.f)
		var plain, group [][]byte
		for _, p := range in {
			if isGroupPacket(p, a.f.bcast) {
				group = append(group, p)
			} else {
				plain = append(plain, p)
			}
		}
		if want := len(plain) + len(group)*(len(hosts)-1); len(out) != want {
			t.Fatalf("%d packets out, want %d (%d plain, %d group to %d peers)", len(out), want, len(plain), len(group), len(hosts)-1)
		}
		// Plain packets first (they leave with the read that found them),
		// then the queued envelopes.
		for i, p := range plain {
			if !bytes.Equal(out[i], p) {
				t.Fatalf("packet %d changed: %x, was %x", i, out[i], p)
			}
		}
		envs := out[len(plain):]
		for gi, g := range group {
			for _, peer := range hosts[1:] {
				n := 0
				for _, e := range envs {
					if isEnvelope(e, peer.v4.Addr()) && bytes.Equal(e[envelopeLen:], g) &&
						netip.AddrFrom4([4]byte(e[12:16])) == a.v4.Addr() {
						n++
					}
				}
				// Equal group packets share envelopes; count them.
				same := 0
				for _, o := range group {
					if bytes.Equal(o, g) {
						same++
					}
				}
				if n != same {
					t.Fatalf("group packet %d: %d envelopes to %s, want %d", gi, n, peer.v4.Addr(), same)
				}
			}
		}
	})
}
