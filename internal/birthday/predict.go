package birthday

// maxStride is the largest step between consecutive mappings still taken
// for a pattern: beyond it the NAT is as good as random for prediction.
const maxStride = 64

// Pattern is how a symmetric NAT hands out ports to new mappings, learnt
// from consecutive mappings of fresh sockets (the RFC 5780 probe's).
type Pattern struct {
	// Sequential: each new mapping got the port of the last plus Stride
	// (with gaps where other traffic took ports in between).
	Sequential bool
	Stride     int
	// Exact: every step was exactly Stride, no gaps.
	Exact bool
}

// LearnPattern looks at the public ports of consecutive new mappings (in
// the order they were made, at least three) and says whether they follow a
// sequence: every step the same non-zero stride of at most maxStride
// (exact), or every step positive and small, the smallest taken as the
// stride (other hosts or flows took ports in between).
func LearnPattern(ports []uint16) Pattern {
	if len(ports) < 3 {
		return Pattern{}
	}
	steps := make([]int, 0, len(ports)-1)
	for i := 1; i < len(ports); i++ {
		steps = append(steps, int(ports[i])-int(ports[i-1]))
	}
	exact := true
	smallest := steps[0]
	for _, d := range steps {
		if d != steps[0] {
			exact = false
		}
		if d == 0 || d > maxStride || d < -maxStride || (d < 0) != (steps[0] < 0) {
			return Pattern{}
		}
		if abs(d) < abs(smallest) {
			smallest = d
		}
	}
	return Pattern{Sequential: true, Stride: smallest, Exact: exact}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// Predict lists the ports the next n mappings should get after the one at
// last, for a sequential pattern, with slack for mappings others take in
// between: n+slack ports, last+Stride onwards. Nothing for other patterns.
func (p Pattern) Predict(last uint16, n, slack int) []uint16 {
	if !p.Sequential || p.Stride == 0 {
		return nil
	}
	out := make([]uint16, 0, n+slack)
	port := int(last)
	for range n + slack {
		port += p.Stride
		if port < lowestPort || port > 65535 {
			break
		}
		out = append(out, uint16(port))
	}
	return out
}

func (p Pattern) String() string {
	switch {
	case !p.Sequential:
		return "random"
	case p.Exact:
		return "sequential"
	}
	return "sequential with gaps"
}
