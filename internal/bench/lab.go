package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/punchd/punchd/internal/lab"
)

// Namespace is anything that runs a function inside a lab namespace (a
// host or a router).
type Namespace interface{ Do(func() error) error }

// UDPDrops reads, per namespace, how many datagrams the kernel dropped
// because a UDP socket's receive or send buffer was full (RcvbufErrors
// and SndbufErrors in /proc/net/snmp): the drops that become TCP
// retransmits inside a tunnel.
func UDPDrops(nss map[string]Namespace) (map[string]int64, error) {
	out := make(map[string]int64, len(nss))
	for name, ns := range nss {
		err := ns.Do(func() error {
			// thread-self: this thread is the one inside the namespace.
			b, err := os.ReadFile("/proc/thread-self/net/snmp")
			if err != nil {
				return err
			}
			out[name], err = udpBufErrors(b)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("read UDP counters of %s: %w", name, err)
		}
	}
	return out, nil
}

// udpBufErrors reads RcvbufErrors+SndbufErrors from /proc/net/snmp's two
// "Udp:" lines (names, then values).
func udpBufErrors(snmp []byte) (int64, error) {
	var names []string
	sc := bufio.NewScanner(bytes.NewReader(snmp))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "Udp: ")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if names == nil {
			names = f
			continue
		}
		var sum int64
		for _, k := range []string{"RcvbufErrors", "SndbufErrors"} {
			i := slices.Index(names, k)
			if i < 0 || i >= len(f) {
				return 0, fmt.Errorf("/proc/net/snmp has no Udp %s", k)
			}
			v, err := strconv.ParseInt(f[i], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/net/snmp Udp %s: %w", k, err)
			}
			sum += v
		}
		return sum, nil
	}
	return 0, fmt.Errorf("/proc/net/snmp has no Udp lines")
}

// FetchProfile saves a CPU profile of seconds from the pprof server at
// addr (a daemon's --debug-listen) inside host's namespace to path.
func FetchProfile(ctx context.Context, host *lab.Host, addr string, seconds int, path string) error {
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, seconds)
	ctx, cancel := context.WithTimeout(ctx, time.Duration(seconds+30)*time.Second)
	defer cancel()
	out, err := host.Command(ctx, "curl", "-sS", "-f", "-o", path, url).CombinedOutput()
	if err != nil {
		return fmt.Errorf("fetch profile %s in %s: %w: %s (apt-get install curl)", url, host.NS, err, out)
	}
	return nil
}

// Median is the middle value (the mean of the two middle ones for an
// even count); 0 for none.
func Median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
