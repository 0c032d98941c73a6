package rvclient

import (
	"context"
	"slices"

	"github.com/coder/websocket"

	"github.com/punchd/punchd/internal/identity"
	"github.com/punchd/punchd/internal/signalwire"
)

// Group topics carry the announcements of punchd networks (see package
// network); to the server a topic is an opaque id. A client joins
// ClientConfig.Topics on every registration.

// Announce hands a sealed announcement to the rendezvous for topic, one
// of ClientConfig.Topics.
func (c *Client) Announce(ctx context.Context, topic string, payload []byte) error {
	conn := c.conn.Load()
	if conn == nil {
		return ErrNotConnected
	}
	return conn.Write(ctx, websocket.MessageText, signalwire.Encode(signalwire.Frame{Type: signalwire.TypeAnnounce, Topic: topic, Payload: payload}))
}

// SetWatch replaces the peers whose presence we want (members of a
// network come and go); it holds across reconnects.
func (c *Client) SetWatch(ctx context.Context, peers []identity.PublicKey) error {
	c.watchMu.Lock()
	c.watch = slices.Clone(peers)
	c.watchMu.Unlock()
	conn := c.conn.Load()
	if conn == nil {
		return nil // sent on registering
	}
	return conn.Write(ctx, websocket.MessageText, c.watchFrame())
}

func (c *Client) watchFrame() []byte {
	c.watchMu.Lock()
	defer c.watchMu.Unlock()
	ids := make([]string, len(c.watch))
	for i, k := range c.watch {
		ids[i] = k.String()
	}
	return signalwire.Encode(signalwire.Frame{Type: signalwire.TypeWatch, IDs: ids})
}
