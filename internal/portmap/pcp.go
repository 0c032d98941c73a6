package portmap

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/punchd/punchd/internal/udpretry"
)

// PCP (RFC 6887) has no maintained Go library outside larger programs
// (tailscale carries its own), so this is the small part punchd needs: a
// MAP request for one UDP port and its deletion. It is also how a PCP
// server is detected: ANNOUNCE would say "here" but not which address a
// mapping gets.

const (
	pcpPort        = 5351
	pcpVersion     = 2
	pcpOpMap       = 1
	pcpResponseBit = 0x80
	pcpHeaderSize  = 24
	pcpMapSize     = 36
	pcpProtocolUDP = 17
	pcpMaxDatagram = 1100 // RFC 6887 section 7
	pcpResultOK    = 0
)

func pcpResultName(c byte) string {
	names := [...]string{1: "UNSUPP_VERSION", 2: "NOT_AUTHORIZED", 3: "MALFORMED_REQUEST", 4: "UNSUPP_OPCODE",
		5: "UNSUPP_OPTION", 6: "MALFORMED_OPTION", 7: "NETWORK_FAILURE", 8: "NO_RESOURCES",
		9: "UNSUPP_PROTOCOL", 10: "USER_EX_QUOTA", 11: "CANNOT_PROVIDE_EXTERNAL", 12: "ADDRESS_MISMATCH",
		13: "EXCESSIVE_REMOTE_PEERS"}
	if int(c) < len(names) && names[c] != "" {
		return names[c]
	}
	return fmt.Sprintf("result %d", c)
}

// errPCPNATPMPOnly means the gateway answered in NAT-PMP's format: it
// speaks NAT-PMP, not PCP.
var errPCPNATPMPOnly = errors.New("the gateway answered with NAT-PMP (version 0): no PCP")

// pcpMap is a MAP request or response (RFC 6887 sections 7.1, 11.1).
type pcpMap struct {
	result       byte // responses only
	lifetime     uint32
	epoch        uint32 // responses only
	client       netip.Addr
	nonce        [12]byte
	protocol     byte
	internalPort uint16
	externalPort uint16     // suggested (request) or assigned (response)
	externalIP   netip.Addr // likewise
}

// marshal renders a MAP request.
func (m pcpMap) marshal() []byte {
	b := make([]byte, pcpHeaderSize+pcpMapSize)
	b[0], b[1] = pcpVersion, pcpOpMap
	binary.BigEndian.PutUint32(b[4:8], m.lifetime)
	c16 := m.client.As16()
	copy(b[8:24], c16[:])
	p := b[pcpHeaderSize:]
	copy(p[0:12], m.nonce[:])
	p[12] = m.protocol
	binary.BigEndian.PutUint16(p[16:18], m.internalPort)
	binary.BigEndian.PutUint16(p[18:20], m.externalPort)
	ext := netip.IPv4Unspecified()
	if m.externalIP.IsValid() {
		ext = m.externalIP
	}
	e16 := ext.As16()
	copy(p[20:36], e16[:])
	return b
}

// parsePCPMapResponse reads a MAP response; untrusted input.
func parsePCPMapResponse(b []byte) (pcpMap, error) {
	var m pcpMap
	if len(b) >= 4 && b[0] == 0 {
		return m, errPCPNATPMPOnly
	}
	if len(b) < pcpHeaderSize {
		return m, fmt.Errorf("PCP answer of %d bytes is too short", len(b))
	}
	if len(b) > pcpMaxDatagram || len(b)%4 != 0 {
		return m, fmt.Errorf("PCP answer of %d bytes is malformed", len(b))
	}
	if b[0] != pcpVersion {
		return m, fmt.Errorf("PCP answer with version %d", b[0])
	}
	if b[1] != pcpResponseBit|pcpOpMap {
		return m, fmt.Errorf("PCP answer with opcode 0x%02x, want a MAP response", b[1])
	}
	m.result = b[3]
	m.lifetime = binary.BigEndian.Uint32(b[4:8])
	m.epoch = binary.BigEndian.Uint32(b[8:12])
	if len(b) < pcpHeaderSize+pcpMapSize {
		if m.result != pcpResultOK {
			return m, nil // errors may come without the opcode data
		}
		return m, fmt.Errorf("PCP MAP answer of %d bytes is too short", len(b))
	}
	p := b[pcpHeaderSize:]
	copy(m.nonce[:], p[0:12])
	m.protocol = p[12]
	m.internalPort = binary.BigEndian.Uint16(p[16:18])
	m.externalPort = binary.BigEndian.Uint16(p[18:20])
	m.externalIP = netip.AddrFrom16([16]byte(p[20:36])).Unmap()
	return m, nil
}

// pcpMapPort asks the gateway to map UDP port internal of local for
// lifetime seconds (0 deletes) and returns its answer.
func pcpMapPort(ctx context.Context, gw, local netip.Addr, nonce [12]byte, internal uint16, lifetime uint32, timeout time.Duration) (pcpMap, error) {
	req := pcpMap{lifetime: lifetime, client: local, nonce: nonce, protocol: pcpProtocolUDP, internalPort: internal}
	if lifetime > 0 {
		req.externalPort = internal
	}
	c, err := net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 0)), net.UDPAddrFromAddrPort(netip.AddrPortFrom(gw, pcpPort)))
	if err != nil {
		return pcpMap{}, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	raw := req.marshal()
	start := time.Now()
	buf := make([]byte, pcpMaxDatagram+1)
	for i := 0; i < udpretry.Sends; i++ {
		if _, err := c.Write(raw); err != nil {
			return pcpMap{}, err
		}
		wake, _ := udpretry.WakeAfter(start, i, timeout)
		_ = c.SetReadDeadline(wake)
		for {
			n, err := c.Read(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() && ctx.Err() == nil {
					break // next transmission
				}
				if ctx.Err() != nil {
					return pcpMap{}, ctx.Err()
				}
				return pcpMap{}, err // e.g. connection refused: nothing listens
			}
			resp, err := parsePCPMapResponse(buf[:n])
			if err != nil {
				return pcpMap{}, err
			}
			if resp.result == pcpResultOK && resp.nonce != nonce {
				continue // an answer to someone else's request
			}
			return resp, nil
		}
	}
	return pcpMap{}, udpretry.ErrNoAnswer
}

func pcpNonce() [12]byte {
	var n [12]byte
	_, _ = rand.Read(n[:])
	return n
}
