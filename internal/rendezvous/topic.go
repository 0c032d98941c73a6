package rendezvous

import (
	"strconv"

	"github.com/punchd/punchd/internal/signalwire"

	"golang.org/x/time/rate"
)

// Group topics carry the announcements of punchd networks (see package
// network). To the server a topic is an opaque id and an announcement
// opaque bytes: it passes each announcement to the other connections
// subscribed to the topic and learns nothing else. What a stranger can
// make it hold is bounded: topics per connection, members per topic,
// announcement size and rate.

func newAnnounceLimiter(cfg ServerConfig) *rate.Limiter {
	return rate.NewLimiter(rate.Limit(cfg.AnnouncesPerSecond), cfg.AnnounceBurst)
}

// shareTopic reports whether a and b joined one topic; callers hold s.mu.
func shareTopic(a, b *serverClient) bool {
	small, other := a.topics, b.topics
	if len(other) < len(small) {
		small, other = other, small
	}
	for t := range small {
		if _, ok := other[t]; ok {
			return true
		}
	}
	return false
}

// join replaces the topics c is subscribed to. A full topic is refused
// with an error frame; the other topics are still joined.
func (s *Server) join(c *serverClient, topics []string) {
	var full []string
	s.mu.Lock()
	s.leaveTopicsLocked(c)
	for _, t := range topics {
		if _, dup := c.topics[t]; dup {
			continue
		}
		m := s.topics[t]
		if len(m) >= s.cfg.MaxTopicMembers {
			full = append(full, t)
			continue
		}
		if m == nil {
			m = make(map[*serverClient]struct{})
			s.topics[t] = m
		}
		m[c] = struct{}{}
		c.topics[t] = struct{}{}
	}
	s.mu.Unlock()
	for _, t := range full {
		s.enqueue(c, signalwire.Encode(signalwire.Frame{Type: signalwire.TypeError, Code: signalwire.CodeTopicFull, Topic: t,
			Message: "topic has " + strconv.Itoa(s.cfg.MaxTopicMembers) + " members already"}))
	}
}

func (s *Server) leaveTopicsLocked(c *serverClient) {
	for t := range c.topics {
		if m := s.topics[t]; m != nil {
			delete(m, c)
			if len(m) == 0 {
				delete(s.topics, t)
			}
		}
		delete(c.topics, t)
	}
}

// announce passes f's payload to every other subscriber of its topic.
func (s *Server) announce(c *serverClient, f signalwire.Frame) {
	if !c.announces.Allow() {
		s.refuse(c, signalwire.Frame{Type: signalwire.TypeError, Code: signalwire.CodeRateLimited, Topic: f.Topic, Message: "announcing too often; announcement dropped"})
		return
	}
	s.mu.Lock()
	_, joined := c.topics[f.Topic]
	var dst []*serverClient
	if joined {
		for m := range s.topics[f.Topic] {
			if m != c {
				dst = append(dst, m)
			}
		}
	}
	s.mu.Unlock()
	if !joined {
		s.refuse(c, signalwire.Frame{Type: signalwire.TypeError, Code: signalwire.CodeNotJoined, Topic: f.Topic, Message: "announce on a topic you have not joined"})
		return
	}
	b := signalwire.Encode(signalwire.Frame{Type: signalwire.TypeAnnounced, Topic: f.Topic, Payload: f.Payload})
	for _, m := range dst {
		s.enqueue(m, b)
	}
}

// TopicMembers reports how many connections are subscribed to topic.
func (s *Server) TopicMembers(topic string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.topics[topic])
}
