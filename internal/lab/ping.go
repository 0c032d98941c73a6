package lab

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Ping pings addr from inside the host's namespace, one echo request every
// 50 ms, until the first reply or until timeout (or ctx) ends. It returns
// the time from the call to that first reply, which is what "time to first
// ping" measures when a tunnel is still coming up; it includes a few
// milliseconds of starting ping(8), so it is not an RTT.
func (h *Host) Ping(ctx context.Context, addr netip.Addr, timeout time.Duration) (time.Duration, error) {
	if timeout <= 0 {
		return 0, errors.New("ping: timeout must be positive")
	}
	if !addr.IsValid() {
		return 0, errors.New("ping: no address")
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// ping's -w takes whole seconds; the context ends it on time.
	secs := int(math.Ceil(timeout.Seconds()))
	args := []string{"-n", "-q", "-c", "1", "-i", "0.05", "-w", strconv.Itoa(secs)}
	if addr.Is6() && !addr.Is4In6() {
		args = append(args, "-6")
	} else {
		args = append(args, "-4")
	}
	args = append(args, addr.Unmap().String())
	start := time.Now()
	out, err := h.Command(ctx, "ping", args...).CombinedOutput()
	d := time.Since(start)
	if err == nil {
		return d, nil
	}
	if parent.Err() != nil {
		return 0, fmt.Errorf("ping %s from %s: %w", addr, h.Name, parent.Err())
	}
	if ctx.Err() != nil || strings.Contains(string(out), " 0 received") {
		return 0, fmt.Errorf("ping %s from %s (%s): no reply within %s", addr, h.Name, h.Addr, timeout.Round(time.Millisecond))
	}
	return 0, fmt.Errorf("ping %s from %s (%s): %w: %s", addr, h.Name, h.Addr, err, strings.TrimSpace(string(out)))
}
