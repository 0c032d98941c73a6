// Package bench measures the tunnel's data path in the lab, side by side
// in one run: punchd direct and relayed (own TURN, coturn), stock
// wireguard-go over the same topology, and the raw path. It drives iperf3
// and reads each daemon's CPU time and memory from /proc.
package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/punchd/punchd/internal/lab"
)

// Test is one iperf3 measurement.
type Test struct {
	Name    string // "tcp1", "tcp4", "udp"
	Streams int
	UDP     bool
}

// Tests are what every path is measured with.
func Tests() []Test {
	return []Test{{"tcp1", 1, false}, {"tcp4", 4, false}, {"udp", 1, true}}
}

// Result is one measurement of one path.
type Result struct {
	Bps      float64       // receiver's bits per second
	CPU      time.Duration // CPU time the daemons used during the test
	Bytes    float64       // bytes received
	RSSIdle  int64         // KiB, the largest daemon's, before the test
	RSSLoad  int64         // KiB, the largest daemon's peak during the test
	Duration time.Duration
	Retrans  int64 // TCP segments the sender retransmitted
}

// CPUPerGB is daemon CPU seconds per gigabyte moved.
func (r Result) CPUPerGB() float64 {
	if r.Bytes == 0 {
		return 0
	}
	return r.CPU.Seconds() / (r.Bytes / 1e9)
}

// Iperf runs an iperf3 client in from toward dst (server in to) and
// samples the given daemon pids around it.
func Iperf(ctx context.Context, from, to *lab.Host, dst netip.Addr, t Test, seconds int, pids []int) (Result, error) {
	srv := to.Command(ctx, "iperf3", "-s", "-1", "-B", dst.String(), "-p", "5201")
	var srvOut lockedBuffer // written by exec's copier while we poll it
	srv.Stdout, srv.Stderr = &srvOut, &srvOut
	if err := srv.Start(); err != nil {
		return Result{}, fmt.Errorf("iperf3 server: %w (apt-get install iperf3)", err)
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	// Wait for the server's port; bounded.
	for i := 0; i < 100; i++ {
		if strings.Contains(srvOut.String(), "listening") {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	args := []string{"-c", dst.String(), "-p", "5201", "-t", strconv.Itoa(seconds), "-J", "-P", strconv.Itoa(t.Streams)}
	if t.UDP {
		// A target well above what any path here carries; the receiver's
		// rate is the measurement (loss shows as a lower rate).
		args = append(args, "-u", "-b", "10G", "-l", "1380")
	}
	before := sample(pids)
	stopRSS := make(chan struct{})
	peak := make(chan int64, 1)
	go func() { peak <- peakRSS(pids, stopRSS) }()
	start := time.Now()
	out, err := from.Command(ctx, "iperf3", args...).Output()
	elapsed := time.Since(start)
	close(stopRSS)
	load := <-peak
	after := sample(pids)
	if err != nil {
		return Result{}, fmt.Errorf("iperf3 client to %s: %w: %s", dst, err, out)
	}
	var rep struct {
		End struct {
			SumReceived struct {
				Bytes float64 `json:"bytes"`
				Bps   float64 `json:"bits_per_second"`
			} `json:"sum_received"`
			SumSent struct {
				Retransmits int64 `json:"retransmits"`
			} `json:"sum_sent"`
			Sum struct {
				Bytes float64 `json:"bytes"`
				Bps   float64 `json:"bits_per_second"`
				Lost  float64 `json:"lost_percent"`
			} `json:"sum"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		return Result{}, fmt.Errorf("iperf3 JSON: %w", err)
	}
	if rep.Error != "" {
		return Result{}, fmt.Errorf("iperf3: %s", rep.Error)
	}
	res := Result{Duration: elapsed, CPU: after.cpu - before.cpu, RSSIdle: before.rss, RSSLoad: max(load, after.rss)}
	if t.UDP {
		// For UDP, "sum" is the receiver's view in iperf3's JSON.
		res.Bps = rep.End.Sum.Bps * (1 - rep.End.Sum.Lost/100)
		res.Bytes = rep.End.Sum.Bytes * (1 - rep.End.Sum.Lost/100)
	} else {
		res.Bps, res.Bytes = rep.End.SumReceived.Bps, rep.End.SumReceived.Bytes
		res.Retrans = rep.End.SumSent.Retransmits
	}
	return res, nil
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type procSample struct {
	cpu time.Duration
	rss int64
}

// sample sums CPU time (user+system) of pids and takes the largest RSS.
func sample(pids []int) procSample {
	var s procSample
	for _, pid := range pids {
		s.cpu += CPUTime(pid)
		s.rss = max(s.rss, RSSKiB(pid))
	}
	return s
}

// peakRSS samples pids' RSS every 200 ms until stop and returns the
// largest seen of any one of them.
func peakRSS(pids []int, stop <-chan struct{}) int64 {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var peak int64
	for {
		select {
		case <-stop:
			return peak
		case <-tick.C:
			peak = max(peak, sample(pids).rss)
		}
	}
}

// clockTicks is USER_HZ, 100 on every Linux this runs on.
const clockTicks = 100

// CPUTime is the user+system CPU time pid has used.
func CPUTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name (which may hold spaces) in parens.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / clockTicks
}

// RSSKiB is pid's resident set size in KiB (0 when it is gone).
func RSSKiB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

// PingRTT is the average round trip of count pings from host to dst,
// 10 ms apart (root may ping that fast).
func PingRTT(ctx context.Context, from *lab.Host, dst netip.Addr, count int) (time.Duration, error) {
	out, err := from.Command(ctx, "ping", "-q", "-n", "-c", strconv.Itoa(count), "-i", "0.01", "-W", "1", dst.String()).Output()
	if err != nil {
		return 0, fmt.Errorf("ping %s: %w: %s", dst, err, out)
	}
	// rtt min/avg/max/mdev = 0.041/0.057/0.101/0.012 ms
	_, rest, ok := strings.Cut(string(out), " = ")
	if !ok {
		return 0, fmt.Errorf("ping %s: no summary in %q", dst, out)
	}
	f := strings.Split(strings.Fields(rest)[0], "/")
	if len(f) < 2 {
		return 0, fmt.Errorf("ping %s: odd summary %q", dst, rest)
	}
	avg, err := strconv.ParseFloat(f[1], 64)
	if err != nil {
		return 0, err
	}
	return time.Duration(avg * float64(time.Millisecond)), nil
}
