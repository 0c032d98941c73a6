package rvload

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"time"
)

// reasons counts why held clients dropped their connection, from the
// client's own log lines ("rendezvous ping failed", "lost the
// rendezvous"): a lost registration is then the client's doing (its ping
// went unanswered in time) or the server's (it closed the connection),
// and the server's log (Config.ServerLog) says why it did.
type reasons struct {
	mu sync.Mutex
	m  map[string]int
}

// maxReasons bounds the distinct reasons kept; more are counted as one.
const maxReasons = 64

func (r *reasons) add(why string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[string]int{}
	}
	if _, ok := r.m[why]; !ok && len(r.m) >= maxReasons {
		why = "(other)"
	}
	r.m[why]++
}

func (r *reasons) snapshot() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int, len(r.m))
	for k, v := range r.m {
		out[k] = v
	}
	return out
}

// since lists the reasons counted after before was taken, most frequent
// first, at most n.
func (r *reasons) since(before map[string]int, n int) []string {
	type kv struct {
		k string
		v int
	}
	var l []kv
	for k, v := range r.snapshot() {
		if d := v - before[k]; d > 0 {
			l = append(l, kv{k, d})
		}
	}
	slices.SortFunc(l, func(a, b kv) int { return b.v - a.v })
	var out []string
	for _, e := range l[:min(n, len(l))] {
		out = append(out, fmt.Sprintf("%d× %s", e.v, e.k))
	}
	return out
}

// handler is the slog.Handler the held clients log to: it keeps only
// the lines that say why a connection went.
type reasonHandler struct{ r *reasons }

func (h reasonHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelDebug }

func (h reasonHandler) Handle(_ context.Context, rec slog.Record) error {
	switch rec.Message {
	case "rendezvous ping failed", "lost the rendezvous; reconnecting (tunnels stay up)":
	default:
		return nil
	}
	why := rec.Message
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == "err" {
			why += ": " + normalise(a.Value.String())
		}
		return true
	})
	h.r.add(why)
	return nil
}

func (h reasonHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h reasonHandler) WithGroup(string) slog.Handler      { return h }

// normalise drops what differs between connections (ports, addresses),
// so that one cause is one line.
func normalise(s string) string {
	var b strings.Builder
	digits := false
	for _, c := range s {
		if c >= '0' && c <= '9' || c == '.' && digits {
			if !digits {
				b.WriteByte('#')
			}
			digits = true
			continue
		}
		digits = false
		b.WriteRune(c)
	}
	out := b.String()
	if len(out) > 160 {
		out = out[:160] + "…"
	}
	return out
}

// schedProbe measures this process's own scheduling delay while a
// latency window runs: a goroutine asks to sleep 1 ms, again and again,
// and records by how much each wake-up was late. A message's latency is
// the server's plus the sending and receiving clients' delays, and on a
// shared machine the load's own delay is what this shows.
type schedProbe struct {
	stop chan struct{}
	done chan struct{}
	late []time.Duration
}

func startSchedProbe() *schedProbe {
	p := &schedProbe{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		const tick = time.Millisecond
		for {
			t0 := time.Now()
			select {
			case <-p.stop:
				return
			case <-time.After(tick):
			}
			if len(p.late) < 1<<20 {
				p.late = append(p.late, time.Since(t0)-tick)
			}
		}
	}()
	return p
}

// end stops the probe and returns the p50 and p99 of the late wake-ups.
func (p *schedProbe) end() (p50, p99 time.Duration) {
	close(p.stop)
	<-p.done
	if len(p.late) == 0 {
		return 0, 0
	}
	slices.Sort(p.late)
	return p.late[len(p.late)/2], p.late[len(p.late)*99/100]
}

// startProfile profiles this process's CPU into path (nothing when path
// is empty) until the returned function is called.
func startProfile(path string, log *slog.Logger) func() {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		log.Warn("no CPU profile", "err", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		log.Warn("no CPU profile", "err", err)
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}
