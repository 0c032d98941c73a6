package natkind

import "github.com/pion/stun/v4"

// CHANGE-REQUEST flags (RFC 5780 section 7.2): the probe sets them, the
// responder of `punchd rendezvous` obeys them.
const (
	ChangeIP   = 0x4
	ChangePort = 0x2
)

// ChangeRequest is the CHANGE-REQUEST attribute (RFC 5780 section 7.2).
type ChangeRequest struct{ IP, Port bool }

func (c ChangeRequest) AddTo(m *stun.Message) error {
	var v [4]byte
	if c.IP {
		v[3] |= ChangeIP
	}
	if c.Port {
		v[3] |= ChangePort
	}
	m.Add(stun.AttrChangeRequest, v[:])
	return nil
}
