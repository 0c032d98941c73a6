package portmap

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
)

// fakeGateway speaks NAT-PMP and PCP on 127.0.0.1:5351 and records the
// mappings it holds, so a test can check the probe deletes what it made.
type fakeGateway struct {
	conn     *net.UDPConn
	pcp      string // "ok", "natpmp-only" (answers PCP in NAT-PMP's format), "refuse"
	mu       sync.Mutex
	natpmp   map[uint16]bool // internal port -> mapped
	pcpMaps  map[uint16]bool
	requests int
	// pcpOffset is added to the internal port to make the external one
	// (2000 when zero): a rebooted gateway may hand out another port.
	pcpOffset uint16
}

var fakeExternal = netip.MustParseAddr("198.18.0.9")

func startFakeGateway(t *testing.T, pcp string) *fakeGateway {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: pcpPort})
	if err != nil {
		t.Skipf("cannot bind 127.0.0.1:%d for a fake gateway: %v", pcpPort, err)
	}
	g := &fakeGateway{conn: c, pcp: pcp, natpmp: map[uint16]bool{}, pcpMaps: map[uint16]bool{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			if out := g.answer(buf[:n]); out != nil {
				_, _ = c.WriteToUDP(out, from)
			}
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return g
}

func (g *fakeGateway) answer(b []byte) []byte {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.requests++
	switch {
	case len(b) == 2 && b[0] == 0 && b[1] == 0: // NAT-PMP external address
		out := make([]byte, 12)
		out[1] = 128
		ip := fakeExternal.As4()
		copy(out[8:], ip[:])
		return out
	case len(b) == 12 && b[0] == 0 && b[1] == 1: // NAT-PMP UDP mapping
		internal := binary.BigEndian.Uint16(b[4:6])
		lifetime := binary.BigEndian.Uint32(b[8:12])
		out := make([]byte, 16)
		out[1] = 129
		binary.BigEndian.PutUint16(out[8:10], internal)
		if lifetime == 0 {
			delete(g.natpmp, internal)
		} else {
			g.natpmp[internal] = true
			binary.BigEndian.PutUint16(out[10:12], internal+1000)
		}
		binary.BigEndian.PutUint32(out[12:16], lifetime)
		return out
	case len(b) >= pcpHeaderSize && b[0] == pcpVersion:
		switch g.pcp {
		case "natpmp-only":
			return []byte{0, 128 + b[1], 0, 1, 0, 0, 0, 1}
		case "refuse":
			out := make([]byte, pcpHeaderSize)
			out[0], out[1], out[3] = pcpVersion, pcpResponseBit|b[1], 2
			return out
		}
		out := make([]byte, len(b))
		copy(out, b)
		out[1] |= pcpResponseBit
		out[2], out[3] = 0, pcpResultOK
		internal := binary.BigEndian.Uint16(b[pcpHeaderSize+16:])
		if binary.BigEndian.Uint32(b[4:8]) == 0 {
			delete(g.pcpMaps, internal)
		} else {
			g.pcpMaps[internal] = true
			off := g.pcpOffset
			if off == 0 {
				off = 2000
			}
			binary.BigEndian.PutUint16(out[pcpHeaderSize+18:], internal+off)
			e := netip.AddrFrom16(fakeExternal.As16()).As16()
			e[10], e[11] = 0xff, 0xff
			copy(out[pcpHeaderSize+20:], e[:])
		}
		copy(out[8:24], make([]byte, 16)) // epoch and reserved
		return out
	}
	return nil
}

func TestProbePortMapping(t *testing.T) {
	tests := []struct {
		pcp       string
		wantPCP   bool
		pcpPort   bool
		pcpErrHas string
	}{
		{"ok", true, true, ""},
		{"natpmp-only", false, false, "NAT-PMP only"},
		{"refuse", true, false, "NOT_AUTHORIZED"},
	}
	for _, tt := range tests {
		t.Run(tt.pcp, func(t *testing.T) {
			g := startFakeGateway(t, tt.pcp)
			var mu sync.Mutex
			var lines []string
			rep := Probe(context.Background(), Config{Gateway: netip.MustParseAddr("127.0.0.1"), noUPnP: true,
				Progress: func(l string) { mu.Lock(); lines = append(lines, l); mu.Unlock() }})
			if rep.Gateway != "127.0.0.1" || rep.Error != "" {
				t.Fatalf("report %+v", rep)
			}
			if !rep.NATPMP.Available || rep.NATPMP.ExternalIP != fakeExternal.String() || rep.NATPMP.ExternalPort == 0 || rep.NATPMP.Error != "" {
				t.Errorf("NAT-PMP %+v", rep.NATPMP)
			}
			if rep.PCP.Available != tt.wantPCP || (rep.PCP.ExternalPort != 0) != tt.pcpPort || !strings.Contains(rep.PCP.Error, tt.pcpErrHas) {
				t.Errorf("PCP %+v", rep.PCP)
			}
			if tt.pcpPort && rep.PCP.ExternalIP != fakeExternal.String() {
				t.Errorf("PCP external IP %q, want %s", rep.PCP.ExternalIP, fakeExternal)
			}
			if !rep.Any() {
				t.Error("Any() false")
			}
			g.mu.Lock()
			defer g.mu.Unlock()
			if len(g.natpmp) != 0 || len(g.pcpMaps) != 0 {
				t.Errorf("mappings left behind: NAT-PMP %v, PCP %v", g.natpmp, g.pcpMaps)
			}
			mu.Lock()
			defer mu.Unlock()
			if all := strings.Join(lines, "\n"); !strings.Contains(all, "NAT-PMP yes") {
				t.Errorf("progress:\n%s", all)
			}
		})
	}
}

func TestProbePortMappingNothingThere(t *testing.T) {
	// Nothing on 127.0.0.1:5351: the refusal comes back at once.
	rep := Probe(context.Background(), Config{Gateway: netip.MustParseAddr("127.0.0.1"), noUPnP: true})
	if rep.Any() || !strings.Contains(rep.NATPMP.Error, "refused") || !strings.Contains(rep.PCP.Error, "refused") {
		t.Fatalf("report %+v", rep)
	}
	var nilReport *Report
	if nilReport.Any() {
		t.Fatal("nil report has port mapping")
	}
}

func TestPCPMapRoundTrip(t *testing.T) {
	req := pcpMap{lifetime: 60, client: netip.MustParseAddr("198.19.1.2"), nonce: pcpNonce(), protocol: pcpProtocolUDP, internalPort: 4000, externalPort: 4000}
	raw := req.marshal()
	if len(raw) != 60 || raw[0] != 2 || raw[1] != pcpOpMap {
		t.Fatalf("request % x", raw)
	}
	if got := netip.AddrFrom16([16]byte(raw[8:24])); got.Unmap() != req.client || !got.Is4In6() {
		t.Fatalf("client address %s", got)
	}
	resp := append([]byte(nil), raw...)
	resp[1] |= pcpResponseBit
	m, err := parsePCPMapResponse(resp)
	if err != nil {
		t.Fatal(err)
	}
	if m.nonce != req.nonce || m.internalPort != 4000 || m.externalPort != 4000 || m.externalIP != netip.IPv4Unspecified() || m.lifetime != 60 {
		t.Fatalf("parsed %+v", m)
	}
	bad := []struct {
		name string
		b    []byte
		want string
	}{
		{"short", raw[:10], "too short"},
		{"odd length", append(append([]byte(nil), resp...), 1), "malformed"},
		{"request, not response", raw, "opcode"},
		{"version 1", append([]byte{1}, resp[1:]...), "version"},
		{"NAT-PMP", []byte{0, 128, 0, 1, 0, 0, 0, 0}, "NAT-PMP"},
		{"success without payload", append([]byte{2, 0x81}, make([]byte, 22)...), "too short"},
	}
	for _, tt := range bad {
		if _, err := parsePCPMapResponse(tt.b); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
}

// FuzzParsePCPMapResponse: a gateway's answer is untrusted input.
func FuzzParsePCPMapResponse(f *testing.F) {
	req := pcpMap{lifetime: 60, client: netip.MustParseAddr("198.19.1.2"), protocol: pcpProtocolUDP, internalPort: 4000}.marshal()
	req[1] |= pcpResponseBit
	f.Add(req)
	f.Add([]byte{0, 128, 0, 1, 0, 0, 0, 0})
	f.Add(append([]byte{2, 0x81, 0, 2}, make([]byte, 20)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parsePCPMapResponse(b)
		if err == nil && m.result == pcpResultOK && len(b) < pcpHeaderSize+pcpMapSize {
			t.Fatalf("success parsed from %d bytes", len(b))
		}
	})
}
