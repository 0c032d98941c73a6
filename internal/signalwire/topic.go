package signalwire

// A group topic, as the server sees it, is an opaque id; these bound what
// a stranger can make the server hold per connection (see rendezvous/topic.go).

const (
	// MaxTopicsPerClient bounds the topics one connection joins.
	MaxTopicsPerClient = 4
	// MaxAnnounceBytes bounds one announcement (a valid one is ~200).
	MaxAnnounceBytes = 512
	// topicLen is a topic id: 32 bytes in hex.
	topicLen = 64
)

// validTopic: a topic is 64 lower-case hex digits, nothing else.
func validTopic(t string) bool {
	if len(t) != topicLen {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
