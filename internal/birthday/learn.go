package birthday

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/pion/stun/v4"
)

// learnTimeout bounds one STUN binding of Learn.
const learnTimeout = 1500 * time.Millisecond

// Learn asks server (a STUN server) for the public port of sockets 0..n-1,
// one after the other, so that each makes one new mapping in order. On a
// sequential NAT the spray's mappings come right after the last of them:
// LearnPattern(ports) and Predict(ports[n-1], ...) give the easy side the
// ports to probe first. Call it before Run.
func (h *Hard) Learn(ctx context.Context, server netip.AddrPort, n int) ([]uint16, error) {
	n = min(n, len(h.conns))
	ports := make([]uint16, 0, n)
	buf := make([]byte, 1500)
	for i := range n {
		c := h.conns[i]
		req, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
		if err != nil {
			return nil, fmt.Errorf("birthday: build STUN request: %w", err)
		}
		if _, err := c.WriteToUDPAddrPort(req.Raw, server); err != nil {
			return nil, fmt.Errorf("birthday: STUN to %s from socket %d: %w", server, i, err)
		}
		deadline := time.Now().Add(learnTimeout)
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		_ = c.SetReadDeadline(deadline)
		port, err := readMapped(c.ReadFromUDPAddrPort, buf, req.TransactionID, server)
		_ = c.SetReadDeadline(time.Time{})
		if err != nil {
			return nil, fmt.Errorf("birthday: STUN answer from %s to socket %d: %w", server, i, err)
		}
		ports = append(ports, port)
	}
	return ports, nil
}

// readMapped reads until the STUN answer to tid from server arrives, and
// returns the mapped port.
func readMapped(read func([]byte) (int, netip.AddrPort, error), buf []byte, tid [stun.TransactionIDSize]byte, server netip.AddrPort) (uint16, error) {
	for {
		n, from, err := read(buf)
		if err != nil {
			return 0, err
		}
		if netip.AddrPortFrom(from.Addr().Unmap(), from.Port()) != server || !stun.IsMessage(buf[:n]) {
			continue
		}
		m := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
		if err := m.Decode(); err != nil || m.TransactionID != tid {
			continue
		}
		var xor stun.XORMappedAddress
		if err := xor.GetFrom(m); err != nil {
			return 0, fmt.Errorf("answer without XOR-MAPPED-ADDRESS: %w", err)
		}
		return uint16(xor.Port), nil
	}
}
